"""The preference page under load: GET /p/<token> for distinct recipients, p50/p95/p99.

    .venv/bin/python -m bench.pages --contacts 30000 --seconds 15

Same setup as bench/unsubscribe (gunicorn with the production settings on
PostgreSQL, wrk from outside the process), with nothing else running. Every
answer must be a 200 page showing the recipient's topic. The floor, in the
same run: a bare Flask view (`bench.floor_app`) that reads one contact row
and renders a template of the same size; the last line is the ratio.
"""
from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from preference_center import links  # noqa: E402

from .unsubscribe import free_port, load, load_arguments, seeded, serve  # noqa: E402


def main() -> None:
    args = load_arguments(__doc__, contacts=30000).parse_args()
    with seeded(args) as (_, env, instance, people):
        paths = instance / "pages.txt"
        paths.write_text("".join(f"/p/{links.make(links.PREFERENCES, c)}\n" for c in people))
        first = paths.read_text().split("\n", 1)[0]
        floor_paths = instance / "pages-floor.txt"
        floor_paths.write_text("".join(f"/p/{c.id}\n" for c in people))
        first_id = people[0].id
    port = free_port(args.port)
    server = serve("wsgi:app", env, args.workers, args.threads, port)
    try:
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}{first}", timeout=10).read().decode()
        assert "News" in page, "the preference page does not show the recipient's topic"
        size = len(page.encode())
        result = load(f"http://127.0.0.1:{port}", paths, args.seconds, "GET", args.connections, 2)
    finally:
        server.terminate()
        server.wait(30)
    print(f"\npreference page: {result['rps']:,.0f} req/s, p50 {result['p50_ms']:.1f} ms, "
          f"p95 {result['p95_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms ({int(result['requests']):,} requests, "
          f"{int(result['non2xx'])} non-2xx, {int(result['errors'])} socket errors)")
    assert result["non2xx"] == 0 and result["errors"] == 0
    server = serve("bench.floor_app:app", {**env, "PC_BENCH_PAGE_BYTES": str(size)}, args.workers, args.threads, port)
    try:
        floor_page = urllib.request.urlopen(f"http://127.0.0.1:{port}/p/{first_id}", timeout=10).read()
        floor = load(f"http://127.0.0.1:{port}", floor_paths, args.seconds, "GET", args.connections, 2)
    finally:
        server.terminate()
        server.wait(30)
    print(f"floor (Flask view, one row read, a {len(floor_page):,}-byte page for our {size:,}): "
          f"{floor['rps']:,.0f} req/s, p50 {floor['p50_ms']:.1f} ms, p99 {floor['p99_ms']:.1f} ms "
          f"({int(floor['non2xx'])} non-2xx)")
    print(f"ratio: preference page at {result['rps'] / floor['rps']:.2f} of the floor, "
          f"p99 {result['p99_ms'] / floor['p99_ms']:.2f} x the floor's")


if __name__ == "__main__":
    main()
