"""The physical floor of a campaign: the least work that sends it, importing nothing of the project.

    python -m bench.floor_campaign --database postgresql://postgres@127.0.0.1:5432/pc_bench --procs 2

Per process (contacts split by id modulo --procs): one streamed query (a
server-side cursor) for the eligible rows of a legitimate-interest topic;
per recipient two links signed with raw HMAC-SHA1 (one precomputed HMAC
state per key and purpose, copied per link, in itsdangerous's token format,
so the product would accept them); v3 mail/send JSON of 1,000
personalizations with substitutions, List-Unsubscribe headers and
custom_args; keep-alive POSTs to the sink (`bench.sink`, its own process).
No claim, no re-check, no record: nothing that makes sending safe.

Prints the recipients/s of the processes together, from the moment they all
start to the last answer; `--json` prints a machine-readable line as well.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import multiprocessing
import time
from html import escape
from urllib.parse import urlsplit

import psycopg

ELIGIBLE = """
SELECT c.id, c.email, c.name, c.token_version
FROM contacts c
LEFT JOIN subscriptions s ON s.contact_id = c.id AND s.topic_id = %(topic)s
WHERE c.status = 'active' AND c.marketing_opt_out_event_id IS NULL AND c.email IS NOT NULL
  AND (s.state = 'subscribed' OR (s.state IS NULL AND c.relationship = ANY(%(relationships)s)))
  AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email_hash = c.email_hash AND x.scope IN ('all', 'marketing'))
  AND c.id %% %(procs)s = %(part)s
ORDER BY c.id
"""

SUBJECT = "Hello -pc_name-"
TEXT = ("Hello -pc_name-\nNews of the week.\n\n--\nYou get this because you are subscribed to News.\n"
        "Unsubscribe: -pc_unsub-\nManage your preferences: -pc_prefs-\n1 Example Street, Springfield\n")
HTML = ('<h1>Hello -pc_name_html-</h1><p>News of the week.</p><hr><p style="font-size:12px;color:#555">'
        'You get this because you are subscribed to News. <a href="-pc_unsub-">Unsubscribe</a> · '
        '<a href="-pc_prefs-">Manage your preferences</a><br>1 Example Street, Springfield</p>')


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


class Signer:
    """itsdangerous's URL-safe timed token, by hand: key = sha1(salt + b"signer" + secret), HMAC-SHA1."""

    def __init__(self, secret: str, purpose: str) -> None:
        key = hashlib.sha1(f"pc.{purpose}".encode() + b"signer" + secret.encode()).digest()
        self.state = hmac.new(key, digestmod=hashlib.sha1)

    def sign(self, payload: bytes, stamp: bytes) -> str:
        value = _b64(payload) + b"." + stamp
        mac = self.state.copy()
        mac.update(value)
        return (value + b"." + _b64(mac.digest())).decode()


def run_part(args, part: int, barrier, results) -> None:
    conninfo = args.database.replace("postgresql+psycopg://", "postgresql://")
    url = urlsplit(args.sink)
    http_conn = http.client.HTTPConnection(url.hostname, url.port)
    prefs, unsub = Signer(args.secret, "preferences"), Signer(args.secret, "unsubscribe")
    base = args.base_url
    head = {"from": {"email": "news@example.com"}, "subject": SUBJECT,
            "content": [{"type": "text/plain", "value": TEXT}, {"type": "text/html", "value": HTML}],
            "categories": ["campaign-1", "topic-news"]}
    count = 0
    with psycopg.connect(conninfo) as conn:
        barrier.wait()
        started = time.perf_counter()
        stamp = _b64(int(time.time()).to_bytes(4, "big"))
        with conn.cursor(name=f"floor{part}") as cur:
            cur.itersize = args.batch
            cur.execute(ELIGIBLE, {"topic": args.topic, "relationships": ["customer"], "procs": args.procs,
                                   "part": part})
            while True:
                rows = cur.fetchmany(args.batch)
                if not rows:
                    break
                personalizations = []
                for contact_id, email, name, version in rows:
                    u = f"{base}/u/{unsub.sign(b'[%d,%d,%d]' % (contact_id, version, args.topic), stamp)}"
                    p = f"{base}/p/{prefs.sign(b'[%d,%d,0]' % (contact_id, version), stamp)}"
                    name = name or ""
                    personalizations.append({
                        "to": [{"email": email}],
                        "substitutions": {"-pc_name-": name, "-pc_name_html-": escape(name), "-pc_unsub-": u,
                                          "-pc_prefs-": p},
                        "headers": {"List-Unsubscribe": f"<{u}>",
                                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
                        "custom_args": {"delivery_id": str(contact_id), "campaign_id": "1"},
                    })
                body = json.dumps({"personalizations": personalizations, **head}).encode()
                http_conn.request("POST", "/v3/mail/send", body, {"Content-Type": "application/json",
                                                                  "Authorization": "Bearer SG.floor"})
                response = http_conn.getresponse()
                response.read()
                if response.status != 202:
                    raise RuntimeError(f"sink answered {response.status}")
                count += len(rows)
        results.put((part, count, time.perf_counter() - started))


def measure(args) -> tuple[int, float]:
    """(recipients, seconds) with --procs processes started together."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(args.procs + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=run_part, args=(args, k, barrier, results)) for k in range(args.procs)]
    for p in procs:
        p.start()
    barrier.wait()
    started = time.perf_counter()
    got = [results.get() for _ in procs]
    wall = time.perf_counter() - started
    for p in procs:
        p.join()
    return sum(c for _, c, _ in got), wall


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/pc_bench")
    p.add_argument("--sink", help="the sink's URL; started here (and its log checked) if omitted")
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--topic", type=int, default=1)
    p.add_argument("--secret", default="bench-secret-key-0123456789")
    p.add_argument("--base-url", default="https://prefs.example.com")
    p.add_argument("--json", action="store_true")
    return p


def main() -> None:
    args = parser().parse_args()
    sink = None
    if not args.sink:
        from .sink import SinkProcess, recipients
        sink = SinkProcess("/tmp/pc-bench-floor-sink.bin")
        args.sink = sink.url
    try:
        count, wall = measure(args)
    finally:
        if sink:
            sink.stop()
    print(f"floor: {args.procs} processes, {count:,} recipients in {wall:.2f}s = {count / wall:,.0f}/s")
    if sink:
        got = recipients(sink.log)
        print(f"sink received {len(got):,} recipients, {len(set(got)):,} distinct")
    if args.json:
        print(json.dumps({"count": count, "seconds": wall}))


if __name__ == "__main__":
    main()
