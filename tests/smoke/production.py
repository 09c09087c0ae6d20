"""The README's production commands, run exactly as written: `python -m tests.smoke.production`.

Reads the block between the README's "production commands" markers and runs
its lines in order through bash, with PC_ENV=production, PostgreSQL
(PC_TEST_DATABASE_URL) and Redis (PC_TEST_BROKER_URL), and a fake SendGrid:
the `export` line's variables are given values here (each one it names must
be given), short commands run to the end, and gunicorn, the worker and the
scheduler keep running. Then it sends one campaign to three people, performs
one RFC 8058 one-click opt-out, sends one system message with a request id,
reads /metrics and /healthz/ready, checks the logs (JSON lines, no address),
and stops everything with SIGTERM. Only the port differs from the README
(GUNICORN_CMD_ARGS), so another run on the same machine does not collide.

Needs the test extras (gunicorn). Exit status 0 when everything held; the
logs of every process are printed when something did not (or with --show-logs).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.fake_sendgrid import FakeSendGrid
from tests.helpers import ensure_postgres_database

ROOT = Path(__file__).resolve().parents[2]
START = "<!-- production commands:"
END = "<!-- end of production commands -->"
SERVICES = ("gunicorn ", "preference-center worker", "preference-center beat")
DEADLINE = 150  # seconds for the whole run
PEOPLE = ["ann@example.com", "bob@example.com", "cy@example.com"]


class SmokeFailed(AssertionError):
    pass


def readme_commands(readme: Path = ROOT / "README.md") -> tuple[list[str], list[str]]:
    """(variables the export line names, the other command lines) of the README's production block."""
    block = readme.read_text(encoding="utf-8").split(START, 1)[1].split(END, 1)[0]
    body = block.split("```sh", 1)[1].rsplit("```", 1)[0]
    logical, current = [], ""
    for line in body.splitlines():
        current += line.rstrip("\\").rstrip() + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            if current.strip():
                logical.append(current.strip())
            current = ""
    exports = [line for line in logical if line.startswith("export ")]
    names = [word.split("=", 1)[0] for line in exports for word in shlex.split(line)[1:]]
    commands = [re.sub(r"\s+#.*$", "", line) for line in logical if not line.startswith("export ")]
    return names, commands


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def reset_database(url: str) -> None:
    """An empty public schema (the smoke run owns this database while it runs); created if missing."""
    ensure_postgres_database(url)
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def reset_broker(url: str) -> None:
    if url.startswith(("redis://", "rediss://")):
        import redis

        redis.Redis.from_url(url).flushdb()


class Http:
    def __init__(self, base: str, token: str | None = None) -> None:
        self.base, self.token = base, token

    def call(self, method: str, path: str, body=None, headers=None, form: bytes | None = None):
        data = json.dumps(body).encode() if body is not None else form
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if body is not None:
            request.add_header("Content-Type", "application/json")
        if form is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return response.status, response.headers, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read().decode()

    def json(self, method: str, path: str, body=None, expect=(200, 201), headers=None):
        status, _, payload = self.call(method, path, body, headers)
        if status not in expect:
            raise SmokeFailed(f"{method} {path} answered {status}: {payload[:500]}")
        return json.loads(payload) if payload else None


def metric(metrics_text: str, name: str, **labels) -> float | None:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in metrics_text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if "{" in key:
            metric_name, _, rest = key.partition("{")
            found = ",".join(sorted(rest.rstrip("}").split(","))) if rest.rstrip("}") else ""
        else:
            metric_name, found = key, ""
        if metric_name == name and found == wanted:
            return float(value)
    return None


def wait_for(what: str, predicate, deadline: float, every: float = 0.5):
    while time.time() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(every)
    raise SmokeFailed(f"timed out waiting for {what}")


class Run:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.services: list[tuple[str, subprocess.Popen, Path]] = []
        self.logs: list[Path] = []

    def command(self, line: str, env: dict) -> None:
        log = self.workdir / f"step-{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            if line.startswith(SERVICES):
                process = subprocess.Popen(["bash", "-c", f"exec {line}"], cwd=ROOT, env=env, stdout=out,
                                           stderr=subprocess.STDOUT, start_new_session=True)
                self.services.append((line, process, log))
                return
            result = subprocess.run(["bash", "-c", line], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    timeout=120)
        if result.returncode != 0:
            raise SmokeFailed(f"`{line}` exited {result.returncode}:\n{log.read_text()}")

    def check_alive(self) -> None:
        for line, process, log in self.services:
            if process.poll() is not None:
                raise SmokeFailed(f"`{line}` stopped with {process.returncode}:\n{log.read_text()[-3000:]}")

    def stop(self) -> list[str]:
        """SIGTERM every service, newest first; the problems of those that did not stop cleanly."""
        problems = []
        for _line, process, _ in reversed(self.services):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for line, process, _ in reversed(self.services):
            try:
                code = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                problems.append(f"`{line}` did not stop within 30 s of SIGTERM")
                continue
            if code not in (0, -signal.SIGTERM):
                problems.append(f"`{line}` exited {code} on SIGTERM")
        return problems

    def dump(self) -> None:
        for log in self.logs:
            print(f"---- {log.name}", file=sys.stderr)
            print(log.read_text(errors="replace")[-4000:], file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    show_logs = "--show-logs" in (sys.argv[1:] if argv is None else argv)
    database = os.environ.get("PC_TEST_DATABASE_URL")
    broker = os.environ.get("PC_TEST_BROKER_URL")
    if not (database and broker) or not database.startswith("postgresql"):
        print("smoke: set PC_TEST_DATABASE_URL (PostgreSQL) and PC_TEST_BROKER_URL (Redis)", file=sys.stderr)
        return 2
    names, commands = readme_commands()
    started = time.time()
    deadline = started + DEADLINE
    with tempfile.TemporaryDirectory(prefix="pc-smoke-") as tmp, FakeSendGrid() as fake:
        workdir = Path(tmp)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        values = {
            "PC_ENV": "production",
            "PC_SECRET_KEYS": f"{secrets.token_urlsafe(32)},{secrets.token_urlsafe(32)}",
            "PC_SUPPRESSION_KEY": secrets.token_urlsafe(32),
            "PC_DATABASE_URL": database,
            "PC_BROKER_URL": broker,
            "PC_BASE_URL": base,
            "PC_MAIL_TRANSPORT": "sendgrid",
            "PC_SENDGRID_API_KEY": "SG.smoke-test-key",
            "PC_RATELIMIT_STORAGE_URL": broker if broker.startswith("redis") else "memory://",
            "PC_PROXY_HOPS": "1",  # no proxy here: without X-Forwarded-For the peer's address stands
            "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),
        }
        missing = [name for name in names if name not in values]
        if missing:
            raise SmokeFailed(f"the README's export line names {missing}, which this smoke test does not set")
        env = {name: value for name, value in os.environ.items() if not name.startswith("PC_")}
        env.update(values)
        env.update({
            # Not in the README's export line: a test provider, a faster scheduler, our own port and folder.
            "PC_SENDGRID_API_HOST": fake.url,
            "PC_TICK_SECONDS": "1",
            "PC_INSTANCE_PATH": str(workdir / "instance"),
            "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port} --graceful-timeout 10",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        })
        reset_database(database)
        reset_broker(broker)
        run = Run(workdir)
        try:
            for line in commands:
                run.command(line, env)
            print(f"smoke: started {len(run.services)} services from the README in {time.time() - started:.1f}s")
            report = exercise(run, env, base, fake, deadline)
            problems = run.stop()
            problems += check_logs(run)
            if show_logs:
                run.dump()
            if problems:
                raise SmokeFailed("; ".join(problems))
        except BaseException:
            run.stop()
            run.dump()
            raise
    print(f"smoke: OK in {time.time() - started:.1f}s: {report}")
    return 0


def exercise(run: Run, env: dict, base: str, fake: FakeSendGrid, deadline: float) -> str:
    """One campaign, one one-click opt-out, one system message, /metrics."""
    site = Http(base)

    def ready():
        run.check_alive()
        try:
            return site.call("GET", "/healthz/ready")[0] == 200
        except OSError:
            return False

    wait_for("/healthz/ready", ready, deadline)
    created = subprocess.run(["preference-center", "create-token", "smoke", "--admin"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
    if created.returncode != 0:
        raise SmokeFailed(f"create-token failed: {created.stderr}")
    api = Http(base, created.stdout.strip().splitlines()[-1])
    api.json("PUT", "/api/v1/topics/news", {"name": "News", "kind": "marketing", "legal_basis": "consent"})
    api.json("PUT", "/api/v1/topics/orders", {"name": "Orders", "kind": "system"})
    for email in PEOPLE:
        api.json("PUT", f"/api/v1/contacts/{email}", {"name": email.split("@")[0].title(), "relationship": "customer"})
        api.json("POST", f"/api/v1/contacts/{email}/consents",
                 {"topic": "news", "action": "grant", "source": "smoke", "confirmed": True})
    campaign = api.json("POST", "/api/v1/campaigns", {"name": "Smoke", "topic": "news", "subject": "Hi {{ contact.name }}",
                                                      "text": "Hello {{ contact.name }}!"})
    campaign_id = campaign["id"]
    api.json("POST", f"/api/v1/campaigns/{campaign_id}/schedule", {"at": None})

    progress = set()

    def sent():
        run.check_alive()
        metrics = api.call("GET", "/metrics")[2]
        value = metric(metrics, "pc_campaign_recipients", campaign_id=campaign_id, status="sent")
        progress.add(value)
        report = api.json("GET", f"/api/v1/campaigns/{campaign_id}/report")
        return report if report.get("status") == "sent" else None

    report = wait_for(f"campaign {campaign_id} to be sent", sent, deadline)
    if report.get("sent") != len(PEOPLE) or len(fake.accepted) != len(PEOPLE):
        raise SmokeFailed(f"campaign report {report}, provider accepted {len(fake.accepted)}")

    # One-click: the List-Unsubscribe URL the provider was handed, posted as Gmail does.
    mail = next(a for a in fake.accepted if a.to == [PEOPLE[0]])
    unsubscribe = re.search(r"<(https?://[^>]+/u/[^>]+)>", mail.headers["List-Unsubscribe"]).group(1)
    if not unsubscribe.startswith(base):
        raise SmokeFailed(f"the unsubscribe link {unsubscribe!r} is not under PC_BASE_URL")
    status, _, _ = Http("").call("POST", unsubscribe, form=b"List-Unsubscribe=One-Click")
    if status != 200:
        raise SmokeFailed(f"one-click answered {status}")

    def opted_out():
        contact = api.json("GET", f"/api/v1/contacts/{PEOPLE[0]}")
        return any(s["topic"] == "news" and s["state"] == "unsubscribed" for s in contact["subscriptions"])

    wait_for("the one-click opt-out to stop marketing", opted_out, deadline)

    # A request id given to the API follows the system message into the worker's log.
    api.json("POST", "/api/v1/messages", {"topic": "orders", "to": PEOPLE[1], "subject": "Order 1",
                                          "text": "Your order"},
             headers={"Idempotency-Key": "smoke-1", "X-Request-Id": "smoke-request-1"}, expect=(200, 201, 202))
    wait_for("the system message", lambda: len(fake.accepted) == len(PEOPLE) + 1, deadline)

    metrics = api.call("GET", "/metrics")[2]
    expected = {
        ("pc_campaign_recipients", (("campaign_id", campaign_id), ("status", "sent"))): len(PEOPLE),
        ("pc_campaign_recipients_planned", (("campaign_id", campaign_id),)): len(PEOPLE),
        ("pc_http_requests_total", (("method", "POST"), ("route", "/u/<token>"), ("status", "200"))): 1,
        ("pc_worker_recipients_total", (("outcome", "sent"),)): len(PEOPLE),
    }
    for (name, labels), want in expected.items():
        got = metric(metrics, name, **dict(labels))
        if got != want:
            raise SmokeFailed(f"/metrics: {name}{dict(labels)} is {got}, expected {want}")
    if metric(metrics, "pc_optout_inbox_backlog") is None:
        raise SmokeFailed("/metrics has no pc_optout_inbox_backlog")
    status, headers, _ = site.call("GET", "/healthz/live", headers={"X-Request-Id": "smoke-live"})
    if status != 200 or headers.get("X-Request-Id") != "smoke-live":
        raise SmokeFailed("/healthz/live did not answer 200 with the request id")
    seen = sorted(v for v in progress if v is not None)
    return f"campaign {campaign_id}: {report['sent']} sent; sent counts seen on /metrics while sending: {seen}"


def check_logs(run: Run) -> list[str]:
    """Production logs: JSON lines from our processes, no address anywhere, the request id in the worker."""
    problems = []
    found_request_id = False
    for line, _, log in run.services:
        content = log.read_text(errors="replace")
        for address in PEOPLE:
            if address in content:
                problems.append(f"`{line}` logged the address {address}")
        for raw in content.splitlines():
            if not raw.startswith("{"):
                continue
            entry = json.loads(raw)
            if entry.get("request_id") == "smoke-request-1" and "worker" in line:
                found_request_id = True
        json_lines = [raw for raw in content.splitlines() if raw.startswith("{")]
        if not json_lines:
            problems.append(f"`{line}` wrote no JSON log line")
        if line.startswith("gunicorn "):
            # The site's master and workers log only through our handler (gunicorn.conf.py, wsgi.py).
            other = [raw for raw in content.splitlines() if raw.strip() and not raw.startswith("{")]
            if other:
                problems.append(f"`{line}` wrote lines that are not JSON: {other[:3]}")
    if not found_request_id:
        problems.append("the worker's log never carried the request id of the API call that enqueued its task")
    return problems


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SmokeFailed as failure:
        print(f"smoke: FAILED: {failure}", file=sys.stderr)
        sys.exit(1)
