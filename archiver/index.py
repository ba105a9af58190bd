"""The provenance index: SQLite in WAL mode at the storage root.

One row per capture attempt: what was fetched, when, why (which document led to it and which
terms matched where), and where its records are (WARC file, gzip member offset and length,
record ids, digests). Rows naming WARC records are inserted only after those records were
flushed (see crawl.py), so a row never points at bytes that are not on disk.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from datetime import datetime
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

from . import faults
from .errors import StorageError

log = logging.getLogger(__name__)

INDEX_FILE = "index.sqlite3"
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS passes (
    id INTEGER PRIMARY KEY,
    outlet TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    software TEXT NOT NULL,
    config_sha256 TEXT NOT NULL,
    counts TEXT,
    error TEXT
);
CREATE TABLE IF NOT EXISTS captures (
    id INTEGER PRIMARY KEY,
    pass_id INTEGER REFERENCES passes(id),
    outlet TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    url TEXT NOT NULL,
    final_url TEXT,
    status INTEGER,
    fetched_at TEXT NOT NULL,
    discovered_via_url TEXT,
    discovered_via_record_id TEXT,
    topics TEXT NOT NULL DEFAULT '[]',
    matched TEXT NOT NULL DEFAULT '{}',
    warc_file TEXT,
    warc_offset INTEGER,
    warc_length INTEGER,
    warc_record_id TEXT,
    request_record_id TEXT,
    conversion_record_id TEXT,
    metadata_record_id TEXT,
    redirect_record_ids TEXT NOT NULL DEFAULT '[]',
    payload_digest TEXT,
    content_type TEXT,
    truncated TEXT,
    ip_address TEXT,
    title TEXT,
    byline TEXT,
    published TEXT,
    language TEXT,
    text_path TEXT,
    text_sha256 TEXT,
    page_text_path TEXT,
    page_text_sha256 TEXT,
    extractor TEXT,
    extractor_version TEXT,
    renderer TEXT,
    error TEXT,
    etag TEXT,
    last_modified TEXT,
    previous_capture_id INTEGER,
    revisit_of TEXT
);
CREATE INDEX IF NOT EXISTS captures_url ON captures(url);
CREATE INDEX IF NOT EXISTS captures_final_url ON captures(final_url);
CREATE INDEX IF NOT EXISTS captures_outlet_kind ON captures(outlet, kind, state);
CREATE INDEX IF NOT EXISTS captures_record ON captures(warc_record_id);
"""
# columns added after version 1, in order; ALTER TABLE brings older indexes up to date
_ADDED_COLUMNS = [("etag", "TEXT"), ("last_modified", "TEXT"), ("previous_capture_id", "INTEGER"),
                  ("revisit_of", "TEXT")]

# states
ARCHIVED = "archived"  # kept, records in a WARC
OFF_TOPIC = "off_topic"  # fetched, not about any topic, not kept
FAILED = "failed"  # no usable response (network, HTTP error, too many redirects, ...)
ROBOTS = "robots"  # not fetched: robots.txt disallows it
BLOCKED = "blocked"  # a bot challenge or block page was served; kept as evidence, retried later
DUPLICATE = "duplicate"  # redirected to a page already archived in the same pass
NOT_MODIFIED = "not_modified"  # a conditional request answered 304: revisit record (or nothing)
UNCHANGED = "unchanged"  # refetched, same payload digest: identical-payload-digest revisit record


@dataclass
class CaptureRow:
    outlet: str
    kind: str  # robots | feed | sitemap | page | search | article | redirect
    state: str
    url: str
    fetched_at: str
    pass_id: int | None = None
    final_url: str | None = None
    status: int | None = None
    discovered_via_url: str | None = None
    discovered_via_record_id: str | None = None
    topics: list[str] = field(default_factory=list)
    matched: dict[str, list[str]] = field(default_factory=dict)
    warc_file: str | None = None
    warc_offset: int | None = None
    warc_length: int | None = None
    warc_record_id: str | None = None
    request_record_id: str | None = None
    conversion_record_id: str | None = None
    metadata_record_id: str | None = None
    redirect_record_ids: list[str] = field(default_factory=list)
    payload_digest: str | None = None
    content_type: str | None = None
    truncated: str | None = None
    ip_address: str | None = None
    title: str | None = None
    byline: str | None = None
    published: str | None = None
    language: str | None = None
    text_path: str | None = None
    text_sha256: str | None = None
    page_text_path: str | None = None
    page_text_sha256: str | None = None
    extractor: str | None = None
    extractor_version: str | None = None
    renderer: str | None = None
    error: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    previous_capture_id: int | None = None  # the earlier capture of the same URL this one follows
    revisit_of: str | None = None  # record id a revisit record refers to
    id: int | None = None


_JSON_FIELDS = ("topics", "matched", "redirect_record_ids")
_COLUMNS = [f.name for f in fields(CaptureRow) if f.name != "id"]


class Index:
    """Open with `Index.open(storage_root)`; use as a context manager or call close()."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, storage_root: Path, readonly: bool = False) -> "Index":
        path = storage_root / INDEX_FILE
        try:
            if readonly:
                if not path.exists():
                    raise StorageError(f"no index at {path}: nothing has been archived under this storage root yet")
                conn = _open_readonly(path)
            else:
                storage_root.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(path, timeout=30)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
                have = {r[1] for r in conn.execute("PRAGMA table_info(captures)")}
                for name, typ in _ADDED_COLUMNS:
                    if name not in have:
                        conn.execute(f"ALTER TABLE captures ADD COLUMN {name} {typ}")
                conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                             (str(SCHEMA_VERSION),))
                conn.commit()
        except sqlite3.Error as e:
            raise StorageError(f"cannot open index {path}: {e}") from None
        except OSError as e:
            raise StorageError(f"cannot create storage root {storage_root}: {e.strerror}") from None
        conn.row_factory = sqlite3.Row
        return cls(conn, path)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ passes

    def start_pass(self, outlet: str, started_at: str, software: str, config_sha256: str) -> int:
        return self._commit("INSERT INTO passes(outlet, started_at, software, config_sha256) VALUES (?, ?, ?, ?)",
                            (outlet, started_at, software, config_sha256))

    def finish_pass(self, pass_id: int, ended_at: str, counts: dict[str, int], error: str | None) -> None:
        self._commit("UPDATE passes SET ended_at = ?, counts = ?, error = ? WHERE id = ?",
                     (ended_at, json.dumps(counts, sort_keys=True), error, pass_id))

    # ------------------------------------------------------------------ captures

    def add(self, row: CaptureRow) -> int:
        """Insert and commit one row (its WARC records must already be flushed)."""
        values = []
        for name in _COLUMNS:
            v = getattr(row, name)
            values.append(json.dumps(v, sort_keys=True, ensure_ascii=False) if name in _JSON_FIELDS else v)
        row.id = self._commit(
            f"INSERT INTO captures({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})", values,
            crash_point=True)
        return row.id

    def note_error(self, capture_id: int, error: str) -> None:
        """Why a capture that was archived fine could not be used (a feed that does not parse)."""
        self._commit("UPDATE captures SET error = ? WHERE id = ?", (error, capture_id))

    def _commit(self, sql: str, args: Any, crash_point: bool = False) -> int:
        """One statement in its own transaction; a failure (disk full) leaves nothing half done."""
        try:
            cur = self.conn.execute(sql, args)
            if crash_point:
                faults.reached("index-commit")
            self.conn.commit()
        except sqlite3.Error as e:
            try:
                self.conn.rollback()
            except sqlite3.Error:
                pass
            full = " (the disk is full or a file size limit was reached)" if \
                isinstance(e, sqlite3.OperationalError) and "full" in str(e) else ""
            raise StorageError(f"cannot write index {self.path}: {e}{full}") from None
        return cur.lastrowid or 0

    def known_articles(self, outlet: str) -> set[str]:
        """URLs of this outlet already settled (archived, off topic): not fetched again."""
        rows = self.conn.execute(
            "SELECT url, final_url FROM captures WHERE outlet = ? AND kind = 'article' AND state IN (?, ?, ?)",
            (outlet, ARCHIVED, OFF_TOPIC, DUPLICATE))
        return {u for r in rows for u in r if u}

    def latest(self, url: str, kinds: tuple[str, ...]) -> CaptureRow | None:
        """The newest capture of `url` that has a full response in a WARC (for validators, refetch)."""
        marks = ", ".join("?" * len(kinds))
        r = self.conn.execute(
            f"SELECT * FROM captures WHERE final_url = ? AND kind IN ({marks}) AND state = ? "
            f"AND warc_file IS NOT NULL ORDER BY id DESC LIMIT 1", (url, *kinds, ARCHIVED)).fetchone()
        return _row(r) if r is not None else None

    def last_in_chain(self, url: str) -> CaptureRow | None:
        """The newest article capture of `url` (archived, unchanged or not modified)."""
        r = self.conn.execute(
            "SELECT * FROM captures WHERE url = ? AND kind = 'article' AND state IN (?, ?, ?) ORDER BY id DESC LIMIT 1",
            (url, ARCHIVED, UNCHANGED, NOT_MODIFIED)).fetchone()
        return _row(r) if r is not None else None

    def due_for_refetch(self, outlet: str, after: list[float], now_iso: str,
                        captured_before: str | None = None) -> list[tuple[str, int]]:
        """(url, refetches so far) for kept articles whose next refetch time has come; with
        `captured_before`, only articles first captured before then (not in the running pass)."""
        if not after:
            return []
        rows = self.conn.execute(
            "SELECT url, MIN(fetched_at), COUNT(*) FROM captures WHERE outlet = ? AND kind = 'article' "
            "AND state IN (?, ?, ?) GROUP BY url", (outlet, ARCHIVED, UNCHANGED, NOT_MODIFIED))
        now = datetime.fromisoformat(now_iso.replace("Z", "+00:00"))
        due = []
        for url, first, count in rows:
            done = count - 1
            if done >= len(after) or (captured_before is not None and first >= captured_before):
                continue
            age = (now - datetime.fromisoformat(first.replace("Z", "+00:00"))).total_seconds()
            if age >= after[done]:
                due.append((url, done))
        return due

    def captures(self, outlet: str | None = None, kind: str | None = None,
                 state: str | None = None) -> Iterator[CaptureRow]:
        sql = "SELECT * FROM captures"
        where, args = [], []
        for col, val in (("outlet", outlet), ("kind", kind), ("state", state)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"
        for r in self.conn.execute(sql, args):
            yield _row(r)


def _open_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection. A WAL database on read-only media (a copied archive, the browse
    container's read-only volume) cannot be opened normally when no writer has left its -shm
    file; it is then read as an immutable snapshot, which is exact while nothing writes."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return conn
    except sqlite3.OperationalError:
        if os.access(path.parent, os.W_OK):
            raise
    log.info("%s is on read-only storage with no writer: reading it as a snapshot", path)
    return sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, timeout=30)


def _row(r: sqlite3.Row) -> CaptureRow:
    d = dict(r)
    for name in _JSON_FIELDS:
        d[name] = json.loads(d[name]) if d[name] else ([] if name != "matched" else {})
    return CaptureRow(**d)


def row_to_public(row: CaptureRow) -> dict[str, Any]:
    """The documented `archiver captures --format jsonl` object (plus id, kind and state)."""
    d = asdict(row)
    return {
        "id": d["id"], "kind": d["kind"], "state": d["state"],
        "url": d["url"], "final_url": d["final_url"], "status": d["status"], "fetched_at": d["fetched_at"],
        "outlet": d["outlet"], "topics": d["topics"], "matched": d["matched"],
        "discovered_via": {"url": d["discovered_via_url"], "record_id": d["discovered_via_record_id"]}
        if d["discovered_via_url"] else None,
        "warc_file": d["warc_file"], "warc_offset": d["warc_offset"], "warc_length": d["warc_length"],
        "warc_record_id": d["warc_record_id"], "payload_digest": d["payload_digest"],
        "content_type": d["content_type"], "title": d["title"],
        "text_path": d["text_path"], "text_sha256": d["text_sha256"],
        "page_text_path": d["page_text_path"], "page_text_sha256": d["page_text_sha256"],
        "error": d["error"],
    }
