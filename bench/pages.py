"""The preference page under load: GET /p/<token> for distinct recipients, p50/p95/p99.

    .venv/bin/python -m bench.pages --contacts 30000 --seconds 15

Same setup as bench/unsubscribe (gunicorn with the production settings on
PostgreSQL, wrk from outside the process), with nothing else running. Every
answer must be a 200 page showing the recipient's topic.
"""
from __future__ import annotations

import argparse
import sys
import urllib.request
from pathlib import Path

from sqlalchemy import select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from preference_center import create_app, links  # noqa: E402
from preference_center.extensions import db  # noqa: E402
from preference_center.models import Contact  # noqa: E402

from .unsubscribe import load, production_env, seed, serve  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=30000)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--database", default="postgresql+psycopg://postgres@127.0.0.1:5432/pc_bench_web")
    args = parser.parse_args()
    env, instance = production_env(args.database)
    app = create_app()
    with app.app_context():
        seed(args.contacts)
        people = db.session.scalars(select(Contact).order_by(Contact.id)).all()
        paths = instance / "pages.txt"
        paths.write_text("".join(f"/p/{links.make(links.PREFERENCES, c)}\n" for c in people))
        first = paths.read_text().split("\n", 1)[0]
        db.engine.dispose()
    port = 8766
    server = serve("wsgi:app", env, args.workers, args.threads, port)
    try:
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}{first}", timeout=10).read().decode()
        assert "News" in page, "the preference page does not show the recipient's topic"
        result = load(f"http://127.0.0.1:{port}", paths, args.seconds, "GET", args.connections, 2)
    finally:
        server.terminate()
        server.wait(30)
    print(f"\npreference page: {result['rps']:,.0f} req/s, p50 {result['p50_ms']:.1f} ms, "
          f"p95 {result['p95_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms ({int(result['requests']):,} requests, "
          f"{int(result['non2xx'])} non-2xx, {int(result['errors'])} socket errors)")
    assert result["non2xx"] == 0 and result["errors"] == 0


if __name__ == "__main__":
    main()
