"""The addresses of one file read so far, kept on disk: the duplicate check's memory does not grow with the file.

An address that appears earlier in the same file is a duplicate, so a pass
over the file (preview, run) must remember every address it has read; a
million of them in a Python set take over 100 MB. `Seen` keeps a 16-byte
digest of each in a private temporary SQLite database (SQLite deletes its
file when the connection closes, or at once on POSIX) with a bounded page
cache: memory stays flat whatever the file's size, and about 40 bytes an
address go to the temporary directory's disk. The digests are keyed with a
random key of this object, so they say nothing about the addresses once it
is gone. One `Seen` per pass, never shared between processes or runs: a run
that another run overtakes stops at its next chunk, and its own addresses
must not make the other's rows look like duplicates.
"""
from __future__ import annotations

import hashlib
import secrets
import sqlite3
from collections.abc import Iterable

CACHE_KIB = 4096  # SQLite's page cache for the digests; the rest stays on disk
PAGE_BYTES = 16384  # fewer, larger reads and writes than SQLite's 4 KiB (half the time at a million addresses)
_IN = 500  # parameters per lookup, under SQLite's oldest limit (999)


class Seen:
    """The addresses read so far by one pass over a file."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(16)
        # "" is a private temporary database on disk (not ":memory:", which would grow in memory).
        self._db = sqlite3.connect("", isolation_level=None)
        self._db.execute(f"PRAGMA page_size = {PAGE_BYTES}")
        self._db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        self._db.execute("PRAGMA journal_mode = OFF")
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.execute("CREATE TABLE seen (digest BLOB PRIMARY KEY, chunk INTEGER NOT NULL) WITHOUT ROWID")
        self._chunks = 0

    def _digest(self, email: str) -> bytes:
        return hashlib.blake2b(email.encode(), digest_size=16, key=self._key).digest()

    def add(self, emails: Iterable[str]) -> set[str]:
        """Record a chunk's addresses; answer those an earlier chunk already had (not repeats within this one)."""
        digests = {email: self._digest(email) for email in emails}
        if not digests:
            return set()
        self._chunks += 1
        wanted = sorted(digests.values())  # in key order: neighbouring keys share B-tree pages
        self._db.execute("BEGIN")
        before = self._db.total_changes
        self._db.executemany("INSERT OR IGNORE INTO seen VALUES (?, ?)", ((d, self._chunks) for d in wanted))
        inserted = self._db.total_changes - before
        self._db.execute("COMMIT")
        if inserted == len(wanted):  # the usual case: nothing of this chunk was read before
            return set()
        found: set[bytes] = set()
        for start in range(0, len(wanted), _IN):
            part = wanted[start:start + _IN]
            found.update(d for (d,) in self._db.execute(
                f"SELECT digest FROM seen WHERE chunk < ? AND digest IN ({','.join('?' * len(part))})",
                [self._chunks, *part]))
        return {email for email, digest in digests.items() if digest in found}

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Seen:
        return self

    def __exit__(self, *_) -> None:
        self.close()
