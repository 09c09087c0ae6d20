"""A provider sink that costs almost nothing: read a request, append its raw body to a file, answer 202.

    python -m bench.sink --port 0 --log /tmp/sink.bin --ready /tmp/sink.port

It imports nothing of the project and parses no body during the run: each
request's body is appended to the log as `<length>\\n<body>` and answered
`202 Accepted` with an `X-Message-Id`. HTTP/1.1 keep-alive is honoured (the
floor reuses its connection; the official SendGrid client, on urllib, opens
one per request). The exactly-once check reads the log after the clock
stops (`read_bodies`).

Used by both `bench.floor_campaign` and `bench.campaign`, in its own process.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
from collections.abc import Iterator

_ids = itertools.count(1)


class _Sink(asyncio.Protocol):
    def __init__(self, out) -> None:
        self.out = out
        self.buffer = b""
        self.need = -1  # body bytes still expected, -1 while reading headers
        self.keep_alive = True

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.need < 0:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self.buffer[:end].decode("latin-1").split("\r\n")
                self.buffer = self.buffer[end + 4:]
                length = 0
                self.keep_alive = not head[0].endswith("HTTP/1.0")
                for line in head[1:]:
                    name, _, value = line.partition(":")
                    name = name.strip().lower()
                    if name == "content-length":
                        length = int(value)
                    elif name == "connection":
                        self.keep_alive = value.strip().lower() != "close"
                self.need = length
            if len(self.buffer) < self.need:
                return
            body, self.buffer = self.buffer[:self.need], self.buffer[self.need:]
            self.need = -1
            self.out.write(b"%d\n" % len(body))
            self.out.write(body)
            message_id = f"sink-{os.getpid()}-{next(_ids)}"
            self.transport.write(
                b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nX-Message-Id: " + message_id.encode()
                + (b"\r\n\r\n" if self.keep_alive else b"\r\nConnection: close\r\n\r\n"))
            if not self.keep_alive:
                self.transport.close()
                return


async def _serve(port: int, log: str, ready: str | None) -> None:
    loop = asyncio.get_running_loop()
    with open(log, "ab", buffering=1 << 20) as out:
        server = await loop.create_server(lambda: _Sink(out), "127.0.0.1", port, backlog=512)
        if ready:
            with open(ready + ".tmp", "w") as f:
                f.write(str(server.sockets[0].getsockname()[1]))
            os.replace(ready + ".tmp", ready)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        server.close()
        out.flush()


def read_bodies(log: str) -> Iterator[bytes]:
    """Every raw body the sink logged, in order of arrival."""
    with open(log, "rb") as f:
        while True:
            line = f.readline()
            if not line:
                return
            yield f.read(int(line))


def recipients(log: str) -> list[str]:
    """Every `to` address of every personalization the sink received (after the clock stops)."""
    got = []
    for body in read_bodies(log):
        for p in json.loads(body)["personalizations"]:
            got.extend(t["email"] for t in p["to"])
    return got


class SinkProcess:
    """Start the sink in its own process; `url`, `log`; stop() flushes it."""

    def __init__(self, log: str) -> None:
        import subprocess
        import sys
        import time
        self.log = log
        if os.path.exists(log):
            os.unlink(log)
        ready = log + ".port"
        if os.path.exists(ready):
            os.unlink(ready)
        self.process = subprocess.Popen([sys.executable, "-m", "bench.sink", "--log", log, "--ready", ready],
                                        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        for _ in range(200):
            if os.path.exists(ready):
                break
            time.sleep(0.05)
        with open(ready) as f:
            self.port = int(f.read())
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", required=True)
    parser.add_argument("--ready", help="write the bound port to this file when listening")
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.log, args.ready))


if __name__ == "__main__":
    main()
