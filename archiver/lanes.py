"""The candidates a pass has yet to fetch, kept on disk.

One outlet's discovery can find thousands of candidates (a sitemap may list 50,000 URLs),
and a pass runs every outlet at once: held as lists until fetched, they were the part of
the crawling process's memory that grew with the size of the crawl. Each outlet's are
written to a lane of a private temporary SQLite database when its discovery ends, and its
workers read them back a batch at a time, in the order they were given.
"""

from __future__ import annotations

import dataclasses
import itertools
import sqlite3
from collections import deque
from collections.abc import Iterable
from typing import Any

from .discover import Candidate
from .errors import StorageError

BATCH = 64  # candidates read back at once: a worker's next few, not the lane
_FIELDS = tuple(f.name for f in dataclasses.fields(Candidate))


class Lanes:
    """The lanes of one Pass. Used from one thread at a time (the pass's event loop)."""

    def __init__(self) -> None:
        # "" is a private temporary database: SQLite keeps it in its page cache and spills
        # what does not fit to a file of its own, removed when the connection closes
        self._db = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA cache_size=-512")  # KiB
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(f"CREATE TABLE c (lane INTEGER NOT NULL, seq INTEGER PRIMARY KEY, {', '.join(_FIELDS)})")
        self._db.execute("CREATE INDEX c_lane ON c (lane, seq)")
        self._ids = itertools.count(1)
        self.closed = False

    def lane(self) -> Lane:
        return Lane(self, next(self._ids))

    def execute(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, tuple(params))
        except sqlite3.Error as e:  # the temporary directory is full, most likely
            raise StorageError(f"the pass's candidates cannot be kept in a temporary file: {e}") from None

    def add(self, lane: int, candidates: Iterable[Candidate]) -> int:
        rows = ((lane, *(getattr(c, f) for f in _FIELDS)) for c in candidates)
        marks = ", ".join("?" * (len(_FIELDS) + 1))
        try:
            return self._db.executemany(f"INSERT INTO c (lane, {', '.join(_FIELDS)}) VALUES ({marks})", rows).rowcount
        except sqlite3.Error as e:
            raise StorageError(f"the pass's candidates cannot be kept in a temporary file: {e}") from None

    def close(self) -> None:
        self.closed = True
        self._db.close()


class Lane:
    """One outlet pass's candidates: `add` them, then `take` them one by one until None."""

    def __init__(self, lanes: Lanes, lane: int):
        self._lanes, self._lane = lanes, lane
        self._batch: deque[Candidate] = deque()
        self._stored = 0  # rows of this lane still in the database
        self._after = 0  # the last seq read back

    def __len__(self) -> int:
        """Candidates not taken yet."""
        return self._stored + len(self._batch)

    def add(self, candidates: Iterable[Candidate]) -> None:
        self._stored += self._lanes.add(self._lane, candidates)

    def take(self) -> Candidate | None:
        if not self._batch and self._stored:
            rows = self._lanes.execute(f"SELECT seq, {', '.join(_FIELDS)} FROM c WHERE lane = ? AND seq > ? "
                                       "ORDER BY seq LIMIT ?", (self._lane, self._after, BATCH)).fetchall()
            if rows:
                self._after = rows[-1][0]
                self._lanes.execute("DELETE FROM c WHERE lane = ? AND seq <= ?", (self._lane, self._after))
                self._batch.extend(Candidate(*r[1:]) for r in rows)
            self._stored = max(0, self._stored - len(rows)) if rows else 0
        return self._batch.popleft() if self._batch else None

    def close(self) -> None:
        """Drop what was not taken (a pass that stopped early)."""
        if self._stored and not self._lanes.closed:
            self._lanes.execute("DELETE FROM c WHERE lane = ?", (self._lane,))
        self._stored = 0
        self._batch.clear()


__all__ = ["Lanes", "Lane", "BATCH"]
