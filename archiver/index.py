"""The provenance index: SQLite at the storage root (default) or PostgreSQL (`index.url`).

One row per capture attempt: what was fetched, when, why (which document led to it and which
terms matched where), and where its records are (WARC file, gzip member offset and length,
record ids, digests). Rows naming WARC records are inserted only after those records were
flushed (see crawl.py), so a row never points at bytes that are not on disk.

Both databases go through one code path (SQLAlchemy Core, tables in schema.py) and one set
of migrations (Alembic, archiver/migrations), run when a writer finds the schema behind.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Sequence

from sqlalchemy import (Column, Connection, Engine, MetaData, PrimaryKeyConstraint, String, Table as SaTable, create_engine,
                        event, insert, inspect, select, text, update)
from sqlalchemy.engine import RowMapping, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import QueuePool

from . import faults, schema
from .errors import StorageError
from .retry import next_try
from .clock import parse_iso

log = logging.getLogger(__name__)

INDEX_FILE = "index.sqlite3"
# columns older single-machine indexes may lack; added before the baseline is stamped
_LEGACY_COLUMNS = [("etag", "TEXT"), ("last_modified", "TEXT"), ("previous_capture_id", "INTEGER"),
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
_KEPT = (ARCHIVED, UNCHANGED, NOT_MODIFIED)


def index_url(storage_root: Path, url: str | None) -> str:
    """The database URL: `url` as configured, else the SQLite file at the storage root.
    `postgresql://` means psycopg (version 3), the driver archiver installs."""
    if not url:
        return f"sqlite:///{storage_root / INDEX_FILE}"
    try:
        u = make_url(url)
    except ArgumentError:
        raise StorageError(f"index.url {url!r} is not a database URL (sqlite:///PATH or "
                           f"postgresql://USER:PASSWORD@HOST/DB)") from None
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    elif u.get_backend_name() not in ("sqlite", "postgresql"):
        raise StorageError(f"index.url {u.render_as_string(hide_password=True)!r}: only sqlite and "
                           f"postgresql are supported")
    return u.render_as_string(hide_password=False)


def display_url(url: str) -> str:
    """A URL fit for logs and messages: the password hidden, a SQLite file shown as its path."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        return u.database or ":memory:"
    return u.render_as_string(hide_password=True)


class Index:
    """Open with `Index.open(storage_root)`; use as a context manager or call close()."""

    def __init__(self, engine: Engine, url: str, readonly: bool):
        self.engine = engine
        self.url = url
        self.path = display_url(url)  # what messages name
        self.readonly = readonly
        self.dialect = engine.dialect.name

    @classmethod
    def open(cls, storage_root: Path, readonly: bool = False, url: str | None = None) -> "Index":
        full = index_url(storage_root, url)
        where = display_url(full)
        sqlite_path = Path(make_url(full).database or "") if full.startswith("sqlite") else None
        try:
            if sqlite_path is not None:
                if readonly and not sqlite_path.exists():
                    raise StorageError(f"no index at {sqlite_path}: nothing has been archived under this "
                                       f"storage root yet")
                if not readonly:
                    sqlite_path.parent.mkdir(parents=True, exist_ok=True)
                engine = _sqlite_engine(sqlite_path, readonly)
            else:
                engine = create_engine(full, pool_pre_ping=True, pool_size=4, max_overflow=8,
                                       isolation_level="AUTOCOMMIT" if readonly else "READ COMMITTED")
            if not readonly:
                migrate(engine, sqlite_path)
            elif not inspect(engine).has_table("captures"):
                raise StorageError(f"no index at {where}: nothing has been archived there yet")
        except SQLAlchemyError as e:
            raise StorageError(f"cannot open index {where}: {_reason(e)}") from None
        except OSError as e:
            raise StorageError(f"cannot create storage root {storage_root}: {e.strerror}") from None
        return cls(engine, full, readonly)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def transaction(self, crash_point: bool = False) -> Iterator[Connection]:
        """One transaction; a failure (disk full, lost server) leaves nothing half done."""
        try:
            with self.engine.begin() as c:
                yield c
                if crash_point:
                    faults.reached("index-commit")
        except SQLAlchemyError as e:
            reason = _reason(e)
            full = " (the disk is full or a file size limit was reached)" if "full" in reason else ""
            raise StorageError(f"cannot write index {self.path}: {reason}{full}") from None

    def rows(self, sql: str, **params: Any) -> list[RowMapping]:
        """A read-only query (named :params) as a list of mappings."""
        try:
            with self.engine.connect() as c:
                return list(c.execute(text(sql), params).mappings())
        except SQLAlchemyError as e:
            raise StorageError(f"cannot read index {self.path}: {_reason(e)}") from None

    def scalar(self, sql: str, **params: Any) -> Any:
        try:
            with self.engine.connect() as c:
                return c.execute(text(sql), params).scalar()
        except SQLAlchemyError as e:
            raise StorageError(f"cannot read index {self.path}: {_reason(e)}") from None

    # ------------------------------------------------------------------ passes

    def start_pass(self, outlet: str, started_at: str, software: str, config_sha256: str) -> int:
        with self.transaction() as c:
            return c.execute(insert(schema.passes).values(
                outlet=outlet, started_at=started_at, software=software, config_sha256=config_sha256)
                .returning(schema.passes.c.id)).scalar_one()

    def finish_pass(self, pass_id: int, ended_at: str, counts: dict[str, int], error: str | None) -> None:
        with self.transaction() as c:
            c.execute(update(schema.passes).where(schema.passes.c.id == pass_id).values(
                ended_at=ended_at, counts=json.dumps(counts, sort_keys=True), error=error))

    # ------------------------------------------------------------------ captures

    def add(self, row: CaptureRow, frontier_id: int | None = None) -> int:
        """Insert and commit one row (its WARC records must already be flushed). With
        `frontier_id`, that frontier entry is settled by this row in the same transaction."""
        values = {}
        for name in _COLUMNS:
            v = getattr(row, name)
            values[name] = json.dumps(v, sort_keys=True, ensure_ascii=False) if name in _JSON_FIELDS else v
        with self.transaction(crash_point=True) as c:
            row.id = c.execute(insert(schema.captures).values(values).returning(schema.captures.c.id)).scalar_one()
            if frontier_id is not None:
                f = schema.frontier
                c.execute(update(f).where(f.c.id == frontier_id).values(
                    state="settled", capture_id=row.id, updated_at=row.fetched_at))
        return row.id

    def note_error(self, capture_id: int, error: str) -> None:
        """Why a capture that was archived fine could not be used (a feed that does not parse)."""
        with self.transaction() as c:
            c.execute(update(schema.captures).where(schema.captures.c.id == capture_id).values(error=error))

    def delete_captures(self, ids: Sequence[int]) -> None:
        """Drop rows (fsck and recovery: rows whose records are not on disk)."""
        if not ids:
            return
        cap = schema.captures
        with self.transaction() as c:
            for i in range(0, len(ids), 500):
                c.execute(cap.delete().where(cap.c.id.in_(list(ids[i:i + 500]))))

    def known_articles(self, outlet: str) -> set[str]:
        """URLs of this outlet already settled (archived, off topic): not fetched again."""
        rows = self.rows("SELECT url, final_url FROM captures WHERE outlet = :o AND kind = 'article' "
                         "AND state IN (:a, :b, :c)", o=outlet, a=ARCHIVED, b=OFF_TOPIC, c=DUPLICATE)
        return {u for r in rows for u in (r["url"], r["final_url"]) if u}

    def article_totals(self) -> dict[str, int]:
        """Counted in URLs, not attempts: passes run; articles archived; new versions archived;
        candidate URLs whose attempts all failed (a URL that failed in five passes is one)."""
        kept = "('archived', 'blocked', 'unchanged', 'not_modified', 'off_topic', 'duplicate')"
        return {
            "passes": self.scalar("SELECT COUNT(*) FROM passes") or 0,
            "archived": self.scalar("SELECT COUNT(DISTINCT url) FROM captures WHERE kind = 'article' "
                                    "AND state = 'archived' AND previous_capture_id IS NULL") or 0,
            "updated": self.scalar("SELECT COUNT(*) FROM captures WHERE kind = 'article' AND state = 'archived' "
                                   "AND previous_capture_id IS NOT NULL") or 0,
            "failed": self.scalar("SELECT COUNT(DISTINCT url) FROM captures c WHERE kind = 'article' "
                                  "AND state = 'failed' AND NOT EXISTS (SELECT 1 FROM captures d WHERE d.url = c.url "
                                  f"AND d.kind = 'article' AND d.state IN {kept})") or 0,
        }

    def nearest_requisite(self, url: str, at: str) -> CaptureRow | None:
        """The archived capture of a page requisite nearest in time to `at` (what replay
        shows with a page captured then)."""
        rows = self.rows("SELECT id, fetched_at FROM captures WHERE final_url = :u AND kind = 'requisite' "
                         "AND state = :a AND warc_file IS NOT NULL", u=url, a=ARCHIVED)
        if not rows:
            return None
        want = parse_iso(at)
        best = min(rows, key=lambda r: abs((parse_iso(r["fetched_at"])
                                            - want).total_seconds()))
        return self.get(best["id"])

    def failures_not_due(self, outlet: str, now: datetime) -> set[str]:
        """Candidate URLs of this outlet whose HTTP failures say not to ask yet, or never
        (410, a 404 that stayed; see retry.py)."""
        rows = self.rows("SELECT url, status, fetched_at FROM captures WHERE outlet = :o AND kind = 'article' "
                         "AND state = :f AND (status IN (404, 410) OR status >= 500) ORDER BY id",
                         o=outlet, f=FAILED)
        seen: dict[str, tuple[list[int], str]] = {}
        for r in rows:
            statuses, _ = seen.setdefault(r["url"], ([], ""))
            statuses.append(r["status"])
            seen[r["url"]] = (statuses, r["fetched_at"])
        out = set()
        for url, (statuses, last) in seen.items():
            when = next_try(statuses, parse_iso(last))
            if when is None or when > now:
                out.add(url)
        return out

    def latest(self, url: str, kinds: tuple[str, ...]) -> CaptureRow | None:
        """The newest capture of `url` that has a full response in a WARC (for validators, refetch)."""
        cap = schema.captures
        q = (select(cap).where(cap.c.final_url == url, cap.c.kind.in_(kinds), cap.c.state == ARCHIVED,
                               cap.c.warc_file.is_not(None)).order_by(cap.c.id.desc()).limit(1))
        return self._one(q)

    def last_in_chain(self, url: str) -> CaptureRow | None:
        """The newest article capture of `url` (archived, unchanged or not modified)."""
        cap = schema.captures
        q = (select(cap).where(cap.c.url == url, cap.c.kind == "article", cap.c.state.in_(_KEPT))
             .order_by(cap.c.id.desc()).limit(1))
        return self._one(q)

    def get(self, capture_id: int) -> CaptureRow | None:
        cap = schema.captures
        return self._one(select(cap).where(cap.c.id == capture_id))

    def _one(self, q: Any) -> CaptureRow | None:
        try:
            with self.engine.connect() as c:
                r = c.execute(q).mappings().first()
        except SQLAlchemyError as e:
            raise StorageError(f"cannot read index {self.path}: {_reason(e)}") from None
        return _row(r) if r is not None else None

    def due_for_refetch(self, outlet: str, after: list[float], now_iso: str,
                        captured_before: str | None = None) -> list[tuple[str, int]]:
        """(url, refetches so far) for kept articles whose next refetch time has come; with
        `captured_before`, only articles first captured before then (not in the running pass)."""
        if not after:
            return []
        rows = self.rows(
            "SELECT url, MIN(fetched_at) AS first, COUNT(*) AS n FROM captures WHERE outlet = :o "
            "AND kind = 'article' AND state IN (:a, :b, :c) GROUP BY url", o=outlet, a=ARCHIVED, b=UNCHANGED,
            c=NOT_MODIFIED)
        now = parse_iso(now_iso)
        due = []
        for r in rows:
            url, first, count = r["url"], r["first"], r["n"]
            done = count - 1
            if done >= len(after) or (captured_before is not None and first >= captured_before):
                continue
            age = (now - parse_iso(first)).total_seconds()
            if age >= after[done]:
                due.append((url, done))
        return due

    def captures(self, outlet: str | None = None, kind: str | None = None,
                 state: str | None = None, batch: int = 2000) -> Iterator[CaptureRow]:
        """Rows in id order, read in batches (a long walk holds no transaction or cursor open)."""
        cap = schema.captures
        q = select(cap).order_by(cap.c.id)
        for col, val in (("outlet", outlet), ("kind", kind), ("state", state)):
            if val is not None:
                q = q.where(cap.c[col] == val)
        last = 0
        while True:
            try:
                with self.engine.connect() as c:
                    got = list(c.execute(q.where(cap.c.id > last).limit(batch)).mappings())
            except SQLAlchemyError as e:
                raise StorageError(f"cannot read index {self.path}: {_reason(e)}") from None
            for r in got:
                yield _row(r)
            if len(got) < batch:
                return
            last = got[-1]["id"]


def _reason(e: SQLAlchemyError) -> str:
    """The driver's own words, without SQLAlchemy's statement dump and link."""
    orig = getattr(e, "orig", None)
    return str(orig if orig is not None else e).strip().splitlines()[0]


def _sqlite_engine(path: Path, readonly: bool) -> Engine:
    if readonly:
        return create_engine("sqlite://", creator=lambda: _open_readonly(path), poolclass=QueuePool)
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: sqlite3.Connection, _: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return engine


# Alembic's version table, as Alembic itself defines it (alembic.ddl.impl.version_table_impl)
_VERSION = SaTable("alembic_version", MetaData(), Column("version_num", String(32), nullable=False),
                   PrimaryKeyConstraint("version_num", name="alembic_version_pkc"))


def migrate(engine: Engine, sqlite_path: Path | None = None) -> str | None:
    """Bring the schema to schema.HEAD; returns the revision it was at (None: new database).

    Several processes may open one index at once (workers of a scaled setup): the check and
    the change run under a lock (PostgreSQL advisory lock, a file lock beside a SQLite file)."""
    lock_file = None
    if sqlite_path is not None:
        lock_file = open(sqlite_path.with_name(sqlite_path.name + ".migrate-lock"), "a")
        fcntl.flock(lock_file, fcntl.LOCK_EX)
    try:
        with engine.begin() as c:
            if engine.dialect.name == "postgresql":
                c.execute(text("SELECT pg_advisory_xact_lock(7262617263)"))  # any fixed key of ours
            insp = inspect(c)
            current = None
            if insp.has_table("alembic_version"):
                current = c.execute(text("SELECT version_num FROM alembic_version")).scalar()
            if current == schema.HEAD:
                return current
            if current is None and not insp.has_table("captures"):
                # a new index gets the tables at HEAD directly and is stamped, as Alembic's own
                # recipe for new databases does; importing Alembic would cost every first crawl
                # ~10 MB for the rest of its run (tests check both ways give one schema)
                log.info("index %s: new, schema %s", display_url(str(engine.url)), schema.HEAD)
                schema.metadata.create_all(c)
                _VERSION.create(c)
                c.execute(insert(_VERSION).values(version_num=schema.HEAD))
                return None
            log.info("index %s: schema %s -> %s", display_url(str(engine.url)), current or "(legacy)", schema.HEAD)
            run_migrations(c, current, insp)
            return current
    finally:
        if lock_file is not None:
            lock_file.close()


def run_migrations(c: Connection, current: str | None, insp: Any = None) -> None:
    """Alembic's upgrade to HEAD on connection c, from revision current (None: nothing yet, or
    an index from before migrations existed, which is first brought to the baseline)."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    cfg.attributes["connection"] = c
    insp = insp if insp is not None else inspect(c)
    if current is None and insp.has_table("captures"):
        have = {col["name"] for col in insp.get_columns("captures")}
        for name, typ in _LEGACY_COLUMNS:
            if name not in have:
                c.execute(text(f"ALTER TABLE captures ADD COLUMN {name} {typ}"))
        command.stamp(cfg, "0001")
    command.upgrade(cfg, "head")


def current_revision(index: Index) -> str | None:
    try:
        with index.engine.connect() as c:
            if not inspect(c).has_table("alembic_version"):
                return None
            return c.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError as e:
        raise StorageError(f"cannot read index {index.path}: {_reason(e)}") from None


def _open_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection. A WAL database on read-only media (a copied archive, the browse
    container's read-only volume) cannot be opened normally when no writer has left its -shm
    file; it is then read as an immutable snapshot, which is exact while nothing writes."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False)
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return conn
    except sqlite3.OperationalError:
        if os.access(path.parent, os.W_OK):
            raise
    log.info("%s is on read-only storage with no writer: reading it as a snapshot", path)
    return sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, timeout=30, check_same_thread=False)


def _row(r: Any) -> CaptureRow:
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
