"""The index's database: its URL, engines (SQLite in WAL mode, read-only snapshots, PostgreSQL
through psycopg), schema migrations, and the scheduler's job table read for `status`."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (Column, Connection, Engine, MetaData, PrimaryKeyConstraint, String, Table as SaTable, column,
                        create_engine, event, insert, inspect, select, table, text)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import QueuePool

from .. import schema
from ..errors import StorageError

if TYPE_CHECKING:
    from .queries import Index

log = logging.getLogger("archiver.index")

INDEX_FILE = "index.sqlite3"
# columns older single-machine indexes may lack; added before the baseline is stamped
_LEGACY_COLUMNS = [("etag", "TEXT"), ("last_modified", "TEXT"), ("previous_capture_id", "INTEGER"),
                   ("revisit_of", "TEXT")]


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
        # SQLite's default page cache is 2 MB per connection, and a pool keeps several; the
        # index's pages are in the OS's cache anyway (1.5 MB less at 1,000 articles)
        cur.execute("PRAGMA cache_size=-512")  # KiB
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
    cfg.set_main_option("script_location", str(Path(__file__).parent.parent / "migrations"))
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
    with index.reading() as c:
        if not inspect(c).has_table("alembic_version"):
            return None
        return c.execute(text("SELECT version_num FROM alembic_version")).scalar()


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


# ---------------------------------------------------------------------- the scheduler's jobs


def job_store_engine(url: str) -> Engine:
    """The engine of the scheduler's job store: a SQLite file in WAL mode with synchronous=NORMAL,
    as the index is. Every job run rewrites its job's row; with SQLite's default rollback
    journal each of those commits waited for fsync on the event loop (24 % of the daemon's
    time with 1,000 outlets polled every minute), and a next run time lost to a power cut
    only runs a pass early."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        return _sqlite_engine(Path(u.database), readonly=False)
    return create_engine(url)


def job_run_times(url: str, table_name: str) -> dict[str, float]:
    """job id -> next run time (epoch seconds; jobs that are paused left out) in the job
    table `table_name` of the database at `url` (the scheduler's: read while it runs, for
    `archiver status`); empty when the table is not there. StorageError when it cannot be read."""
    engine = create_engine(url)
    jobs = table(table_name, column("id"), column("next_run_time"))
    try:
        with engine.connect() as c:
            if not inspect(c).has_table(table_name):
                return {}
            rows = c.execute(select(jobs.c.id, jobs.c.next_run_time)).all()
    except SQLAlchemyError as e:
        raise StorageError(f"cannot read the job store {display_url(url)}: {_reason(e)}") from None
    finally:
        engine.dispose()
    return {job_id: ts for job_id, ts in rows if ts is not None}
