"""Schemathesis over the whole API, against the service as it runs in production.

    python -m tests.contract.schemathesis_run [--max-examples N] [--max-time SECONDS] [--seed N]

Starts the site in production mode (PC_ENV=production, real secrets) under gunicorn on a fresh PostgreSQL
database (127.0.0.1:5432, user postgres, trust auth; dropped afterwards), creates an admin API token (webhooks need one) and a few
topics, checks a few raw-socket cases the test client cannot send (a real chunked body over the limit, deep
nesting), then runs schemathesis with the token over every operation of /api/v1/openapi.json, in all four
phases (examples, coverage, fuzzing, stateful). It fails on any server error, any answer that does not fit
the document (schema, status code or content type), and any input outside the document that is accepted.

The broker is PC_BROKER_URL when set (CI: Redis), else an SQLite broker in a scratch folder: nothing consumes
it, the API only enqueues. Exit status: schemathesis's (0 when everything passed).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
CONFIG = Path(__file__).resolve().parent / "schemathesis.toml"
# Server errors, answers outside the document (schema, status, content type), schema-violating input accepted,
# and three stateful ones: a token is always needed, an erased contact is gone, a created thing can be read.
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "negative_data_rejection", "ignored_auth", "use_after_free",
          "ensure_resource_availability")
TOPICS = {
    "news": {"name": "News", "kind": "marketing", "legal_basis": "consent"},
    "tips": {"name": "Tips", "kind": "marketing", "legal_basis": "legitimate_interest",
             "default_relationships": ["customer"]},
    "orders": {"name": "Orders", "kind": "system"},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=25, help="test cases per operation and phase")
    parser.add_argument("--max-time", type=int, default=240, help="time budget of the schemathesis run (s)")
    parser.add_argument("--seed", type=int, default=None, help="for a reproducible run")
    parser.add_argument("--admin-url", default=os.environ.get("PC_SCHEMATHESIS_ADMIN_URL", ADMIN_URL),
                        help="a PostgreSQL URL allowed to create and drop databases")
    parser.add_argument("--keep", action="store_true", help="keep the database and the scratch folder")
    parser.add_argument("--phases", default="examples,coverage,fuzzing,stateful")
    args = parser.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="pc-schemathesis-"))
    database = f"pc_schemathesis_{uuid.uuid4().hex[:10]}"
    admin = create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ,
           "PC_ENV": "production",
           "PC_SECRET_KEYS": secrets.token_urlsafe(32),
           "PC_SUPPRESSION_KEY": secrets.token_urlsafe(32),
           "PC_DATABASE_URL": make_url(args.admin_url).set(database=database).render_as_string(hide_password=False),
           "PC_BROKER_URL": os.environ.get("PC_BROKER_URL") or f"sqla+sqlite:///{scratch / 'broker.sqlite3'}",
           "PC_INSTANCE_PATH": str(scratch / "instance"),
           "PC_BASE_URL": base,
           "PC_MAIL_TRANSPORT": "outbox",
           # gunicorn's access log (below) lists the requests; the server's own log keeps warnings and errors.
           "PC_LOG_LEVEL": "WARNING"}
    server = None
    started = time.monotonic()
    log = (scratch / "gunicorn.log").open("wb")
    try:
        _run([str(BIN / "preference-center"), "db", "upgrade"], env)
        token = _run([str(BIN / "preference-center"), "create-token", "schemathesis", "--admin"], env).strip().splitlines()[-1]
        server = subprocess.Popen(
            [str(BIN / "gunicorn"), "--workers", "2", "--bind", f"127.0.0.1:{port}", "--timeout", "60",
             "--graceful-timeout", "5", "--access-logfile", "-",
             "--access-logformat", '%(m)s %(U)s %(s)s %(b)s %(L)ss', "wsgi:app"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        _wait_for(f"{base}/api/v1/openapi.json", server)
        for key, body in TOPICS.items():
            status, answer = _call("PUT", f"{base}/api/v1/topics/{key}", token, body)
            assert status == 201, (status, answer)
        _raw_socket_checks(port, token)
        print(f"service ready in {time.monotonic() - started:.1f}s: {base} (gunicorn, PostgreSQL {database})",
              flush=True)
        command = [str(BIN / "schemathesis"), "--config-file", str(CONFIG), "run", f"{base}/api/v1/openapi.json",
                   "--header", f"Authorization: Bearer {token}",
                   "--checks", ",".join(CHECKS),
                   "--phases", args.phases,
                   "--max-examples", str(args.max_examples),
                   "--max-time", str(args.max_time),
                   "--request-timeout", "30",
                   # One worker: with two, hypothesis describes filter lambdas with ast.parse from two threads
                   # at once, which CPython 3.11 can fail ("AST constructor recursion depth mismatch").
                   "--workers", "1",
                   "--no-color",
                   "--generation-database", "none",
                   "--report", "junit", "--report-dir", str(scratch / "report")]
        if args.seed is not None:
            command += ["--seed", str(args.seed)]
        ran = time.monotonic()
        result = subprocess.run(command, cwd=scratch, env=env, check=False)
        print(f"schemathesis finished in {time.monotonic() - ran:.0f}s with exit status {result.returncode}",
              flush=True)
        if result.returncode != 0:
            log.flush()
            print("the server's errors (gunicorn log without its access lines):", flush=True)
            print(_errors((scratch / "gunicorn.log").read_text(errors="replace"))[-20_000:], flush=True)
        return result.returncode
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        log.close()
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            print(f"kept database {database} and {scratch}")
        admin.dispose()


def _raw_socket_checks(port: int, token: str) -> None:
    """What only a real server shows: a chunked body over the limit is a 413, deep nesting a 400."""
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("PUT", "/api/v1/contacts/chunked@example.com")
    for name, value in {**auth, "Transfer-Encoding": "chunked"}.items():
        conn.putheader(name, value)
    conn.endheaders()
    chunk = b'{"name": "' + b"x" * 65_000
    for _ in range(5):  # 325 kB, over the 256 KiB limit, with no Content-Length
        conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        chunk = b"x" * 65_000
    conn.send(b'2\r\n"}\r\n0\r\n\r\n')
    answer = conn.getresponse()
    assert answer.status == 413, (answer.status, answer.read()[:200])
    conn.close()
    for raw, status in ((b'{"name": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", 400),
                        (b'{"name": "\\u0000"}', 422), (b'{"name": "\\ud800"}', 422)):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("PUT", "/api/v1/contacts/raw@example.com", body=raw, headers=auth)
        answer = conn.getresponse()
        assert answer.status == status, (raw[:40], answer.status, answer.read()[:200])
        conn.close()


def _errors(log: str) -> str:
    """The log without access lines (`METHOD /path status bytes seconds`): tracebacks and warnings."""
    access = ("GET ", "POST ", "PUT ", "DELETE ", "PATCH ", "HEAD ", "OPTIONS ", "TRACE ", "QUERY ", "CONNECT ")
    return "\n".join(line for line in log.splitlines() if not line.startswith(access))


def _run(command: list[str], env: dict) -> str:
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def _call(method: str, url: str, token: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method=method,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def _wait_for(url: str, server: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"{url} did not answer within {seconds:.0f}s")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
