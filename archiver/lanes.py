"""The candidates a pass has yet to fetch, kept on disk.

One outlet's discovery can find thousands of candidates (a sitemap may list 50,000 URLs),
and a pass runs every outlet at once: held as lists until fetched, they were the part of
the crawling process's memory that grew with the size of the crawl. Each outlet's are
written to a lane of a private temporary SQLite database when its discovery ends, and its
workers read them back a batch at a time, in the order they were given.

That database is a convenience, not storage: when it cannot be written (the temporary
directory is full) a lane keeps its candidates in memory instead, and the pass goes on.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import sqlite3
from collections import deque
from collections.abc import Iterable
from typing import Any

from .discover import Candidate
from .errors import ArchiverError

log = logging.getLogger("archiver.crawl")

BATCH = 64  # candidates read back at once: a worker's next few, not the lane
_FIELDS = tuple(f.name for f in dataclasses.fields(Candidate))
_COLUMNS = ", ".join(_FIELDS)


def _to_db(v: Any) -> Any:
    # a feed's text may hold lone surrogates (JSON feeds' "\ud83d"), which SQLite's UTF-8
    # cannot: strings go in as their bytes and come back the same
    return v.encode("utf-8", "surrogatepass") if isinstance(v, str) else v


def _from_db(v: Any) -> Any:
    return v.decode("utf-8", "surrogatepass") if isinstance(v, bytes) else v


class Lanes:
    """The lanes of one Pass. Used from one thread at a time (the pass's event loop)."""

    def __init__(self) -> None:
        # "" is a private temporary database: SQLite keeps it in its page cache and spills
        # what does not fit to a file of its own, removed when the connection closes
        self._db = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA cache_size=-512")  # KiB
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        # AUTOINCREMENT: a seq is never reused, so what a lane is given later comes after
        # what it has read back
        self._db.execute(f"CREATE TABLE c (lane INTEGER NOT NULL, seq INTEGER PRIMARY KEY AUTOINCREMENT, {_COLUMNS})")
        self._db.execute("CREATE INDEX c_lane ON c (lane, seq)")
        # the final URLs each lane's pass archived (see LanePages)
        self._db.execute("CREATE TABLE k (lane INTEGER NOT NULL, url BLOB NOT NULL, PRIMARY KEY (lane, url))"
                         " WITHOUT ROWID")
        self._ids = itertools.count(1)
        self.closed = False

    def lane(self) -> Lane:
        return Lane(self, next(self._ids))

    def add(self, lane: int, candidates: list[Candidate]) -> None:
        """All of them or, raising sqlite3.Error, none."""
        marks = ", ".join("?" * (len(_FIELDS) + 1))
        with self._db:  # one transaction: rolled back on an error
            self._db.execute("BEGIN")
            self._db.executemany(f"INSERT INTO c (lane, {_COLUMNS}) VALUES ({marks})",
                                 ((lane, *(_to_db(getattr(c, f)) for f in _FIELDS)) for c in candidates))

    def read(self, lane: int, after: int) -> list[tuple[int, Candidate]]:
        rows = self._db.execute(f"SELECT seq, {_COLUMNS} FROM c WHERE lane = ? AND seq > ? ORDER BY seq LIMIT ?",
                                (lane, after, BATCH)).fetchall()
        return [(r[0], Candidate(*map(_from_db, r[1:]))) for r in rows]

    def has_page(self, lane: int, url: str) -> bool:
        return self._db.execute("SELECT 1 FROM k WHERE lane = ? AND url = ?", (lane, _to_db(url))).fetchone() is not None

    def add_page(self, lane: int, url: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO k (lane, url) VALUES (?, ?)", (lane, _to_db(url)))

    def drop(self, lane: int, up_to: int | None = None) -> None:
        if up_to is None:
            self._db.execute("DELETE FROM c WHERE lane = ?", (lane,))
            self._db.execute("DELETE FROM k WHERE lane = ?", (lane,))
        else:
            self._db.execute("DELETE FROM c WHERE lane = ? AND seq <= ?", (lane, up_to))

    def close(self) -> None:
        self.closed = True
        self._db.close()


class Lane:
    """One outlet pass's candidates: `add` them, then `take` them one by one until None."""

    def __init__(self, lanes: Lanes, lane: int):
        self._lanes, self._lane = lanes, lane
        self._batch: deque[Candidate] = deque()
        self._stored = 0  # candidates of this lane in the database, not read back yet
        self._after = 0  # the last seq read back
        self.pages = LanePages(lanes, lane)

    def __len__(self) -> int:
        """Candidates not taken yet."""
        return self._stored + len(self._batch)

    def add(self, candidates: Iterable[Candidate]) -> None:
        given = list(candidates)
        if not given:
            return
        try:
            self._lanes.add(self._lane, given)
        except (sqlite3.Error, UnicodeError, OverflowError, ValueError) as e:
            log.warning("%d candidates kept in memory: the temporary database cannot take them (%s)",
                        len(given), e)
            self._batch.extend(given)
            return
        self._stored += len(given)

    def take(self) -> Candidate | None:
        if not self._batch and self._stored and not self._lanes.closed:
            try:
                rows = self._lanes.read(self._lane, self._after)
            except sqlite3.Error as e:
                raise ArchiverError(f"the pass's candidates cannot be read back from the temporary database: {e}"
                                    ) from None
            self._batch.extend(c for _, c in rows)
            self._stored = self._stored - len(rows) if rows else 0
            if rows:
                self._after = rows[-1][0]
                try:
                    self._lanes.drop(self._lane, self._after)
                except sqlite3.Error as e:  # they are read; what is left in the file goes with it
                    log.warning("candidates read back but not removed from the temporary database: %s", e)
        return self._batch.popleft() if self._batch else None

    def close(self) -> None:
        """Drop what was not taken (a pass that stopped early). Never raises: it runs in the
        pass's `finally`, where an error would hide the one that ended the pass."""
        self._stored = 0
        self._batch.clear()
        self.pages.forget()
        if not self._lanes.closed:
            try:
                self._lanes.drop(self._lane)
            except sqlite3.Error as e:
                log.warning("candidates left in the temporary database: %s", e)


class LanePages:
    """The final URLs a lane's outlet pass archived: two candidates redirected to one page give
    one capture (claims.PassClaims). Held as a set, 10,000 of them were 1.7 MB that a pass
    kept to its end; here they cost SQLite's page cache. When the database cannot take one
    it is kept in memory instead: a page is never archived twice for want of a row."""

    def __init__(self, lanes: Lanes, lane: int):
        self._lanes, self._lane = lanes, lane
        self._memory: set[str] = set()

    def __contains__(self, url: object) -> bool:
        if not isinstance(url, str):
            return False
        if url in self._memory:
            return True
        if self._lanes.closed:
            return False
        try:
            return self._lanes.has_page(self._lane, url)
        except (sqlite3.Error, UnicodeError) as e:
            log.warning("archived pages cannot be looked up in the temporary database: %s", e)
            return False

    def add(self, url: str) -> None:
        if not self._lanes.closed and url not in self._memory:
            try:
                self._lanes.add_page(self._lane, url)
                return
            except (sqlite3.Error, UnicodeError) as e:
                log.warning("an archived page's URL kept in memory: the temporary database cannot take it (%s)", e)
        self._memory.add(url)

    def forget(self) -> None:
        self._memory.clear()


__all__ = ["Lanes", "Lane", "LanePages", "BATCH"]
