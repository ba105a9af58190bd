"""The Index: every read and write of the index's tables, by name (see archiver/index/__init__.py)."""

from __future__ import annotations

import functools
import json
import logging
import zlib
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit
from typing import Any, Callable, Iterator, Protocol, Sequence

from sqlalchemy import (Connection, Engine, and_, bindparam, create_engine, func, insert, inspect, or_, select,
                        text, update)
from sqlalchemy.engine import RowMapping, make_url
from sqlalchemy.exc import SQLAlchemyError

from .. import faults, schema
from ..clock import parse_iso
from ..errors import StorageError
from ..retry import next_try
from .database import _reason, _sqlite_engine, display_url, index_url, migrate
from .inlists import chunks
from .records import (ARCHIVED, DUPLICATE, FAILED, NOT_MODIFIED, OFF_TOPIC, UNCHANGED, CaptureRow, OutboxRow, PageText,
                      RecordSpan, _COLUMNS, _JSON_FIELDS, _KEPT, _row)

from .outbox import OutboxQueries, _outbox_values
from .overview import OverviewQueries
from .passes import PassQueries
from .polls import PollQueries
from .texts import PAGE_TEXT_LEVEL, PageTextQueries

log = logging.getLogger("archiver.index")

# built once, values given at execution: a statement built per row with .values() costs
# SQLAlchemy a new cache key over every bound value (Index.add was 13% of the crawl's main process)
_INSERT_CAPTURE = insert(schema.captures).returning(schema.captures.c.id)
# executed with a dict, an insert leaves out keys that name no column, where .values() raised:
# a CaptureRow field without its column would be lost without a word
_NO_COLUMN = set(_COLUMNS) - set(schema.captures.c.keys())
if _NO_COLUMN:
    raise RuntimeError(f"CaptureRow fields without a captures column: {', '.join(sorted(_NO_COLUMN))}")
_INSERT_PAGE_TEXT = insert(schema.page_texts)
_IN_CHUNK = 400  # URLs per IN (...): SQLite before 3.32 allows 999 bound parameters, two columns each


@functools.cache
def _latest(kinds: tuple[str, ...]) -> Any:
    """Index.latest's statement for these kinds, built once: asked for every requisite of every
    page, a statement built per call cost 5x the query."""
    cap = schema.captures
    kind = cap.c.kind == kinds[0] if len(kinds) == 1 else cap.c.kind.in_(kinds)
    return (select(cap).where(cap.c.final_url == bindparam("u"), kind, cap.c.state == ARCHIVED,
                              cap.c.warc_file.is_not(None)).order_by(cap.c.id.desc()).limit(1))


_LAST_IN_CHAIN = (select(schema.captures).where(schema.captures.c.url == bindparam("u"),
                                                schema.captures.c.kind == "article",
                                                schema.captures.c.state.in_(_KEPT))
                  .order_by(schema.captures.c.id.desc()).limit(1))
_GET = select(schema.captures).where(schema.captures.c.id == bindparam("i"))



class CaptureWatcher(Protocol):
    """What a capture row causes beside itself (alerts.Alerts). Asked before the row is
    inserted (it may read the index as it was); what it answers is called with the row, its id
    set, inside the inserting transaction, and gives the outbox rows committed with it."""

    def plan(self, row: CaptureRow, index: "Index") -> Callable[[CaptureRow], list[OutboxRow]] | None: ...


class Index(PassQueries, OverviewQueries, PageTextQueries, OutboxQueries, PollQueries):
    """Open with `Index.open(storage_root)`; use as a context manager or call close()."""

    def __init__(self, engine: Engine, url: str, readonly: bool):
        self.engine = engine
        self.url = url
        self.path = display_url(url)  # what messages name
        self.readonly = readonly
        self.dialect = engine.dialect.name
        self.alerts: CaptureWatcher | None = None  # see watch()
        self.on_outbox: Callable[[], None] | None = None

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

    def watch(self, alerts: CaptureWatcher | None) -> None:
        """`alerts` (a pass's, when alerts are configured; None for none) plans the deliveries
        each capture causes, queued in its transaction; a reload gives the new config's."""
        self.alerts = alerts

    def notify_queued(self, callback: Callable[[], None]) -> None:
        """`callback` is called after each commit that queued deliveries (the daemon wakes its
        delivery loop)."""
        self.on_outbox = callback

    # ------------------------------------------------------------------ plumbing

    # Every statement on an open index runs in transaction() or reading() (opening it, in
    # open()): there a database's errors become StorageErrors naming the index, so no other
    # module needs to know SQLAlchemy's.

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
            # SQLite names a full disk SQLITE_FULL on some paths and a failed write
            # (SQLITE_IOERR_*, "disk I/O error") on others, WAL writes past a file size limit
            # among them; errno does not reach us, so both are said to be what they most often are
            code = getattr(getattr(e, "orig", None), "sqlite_errorname", "") or ""
            if "full" in reason or code == "SQLITE_FULL":
                reason += " (the disk is full or a file size limit was reached)"
            elif code.startswith("SQLITE_IOERR"):
                reason += f" ({code}: a write failed: the disk is full, a file size limit was reached or the device failed)"
            raise StorageError(f"cannot write index {self.path}: {reason}") from None

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for reads (the frontier's, and this module's)."""
        try:
            with self.engine.connect() as c:
                yield c
        except SQLAlchemyError as e:
            raise StorageError(f"cannot read index {self.path}: {_reason(e)}") from None

    def _rows(self, sql: str, **params: Any) -> list[RowMapping]:
        """A read-only query (named :params) as a list of mappings."""
        with self.reading() as c:
            return list(c.execute(text(sql), params).mappings())

    def _scalar(self, sql: str, **params: Any) -> Any:
        with self.reading() as c:
            return c.execute(text(sql), params).scalar()

    # ------------------------------------------------------------------ captures

    def add(self, row: CaptureRow, frontier_id: int | None = None, page: PageText | None = None) -> int:
        """Insert and commit one row (its WARC records must already be flushed). With
        `frontier_id`, that frontier entry is settled by this row in the same transaction;
        with `page`, what the page said is kept with it (page_texts)."""
        values = {}
        for name in _COLUMNS:
            v = getattr(row, name)
            values[name] = json.dumps(v, sort_keys=True, ensure_ascii=False) if name in _JSON_FIELDS else v
        queue = self.alerts.plan(row, self) if self.alerts is not None else None
        entries: list[OutboxRow] = []
        with self.transaction(crash_point=True) as c:
            row.id = c.execute(_INSERT_CAPTURE, values).scalar_one()
            if page is not None:
                c.execute(_INSERT_PAGE_TEXT, {
                    "capture_id": row.id, "title": page.title or None, "published": page.published or None,
                    "text_z": zlib.compress(page.text.encode("utf-8"), PAGE_TEXT_LEVEL)})
            if frontier_id is not None:
                f = schema.frontier
                c.execute(update(f).where(f.c.id == frontier_id).values(
                    state="settled", capture_id=row.id, updated_at=row.fetched_at))
            # in the capture's own transaction: committed with it, or lost with it, never apart
            entries = queue(row) if queue is not None else []
            if entries:
                c.execute(insert(schema.outbox), [_outbox_values(e) for e in entries])
        if entries and self.on_outbox is not None:
            self.on_outbox()
        return row.id

    def note_error(self, capture_id: int, error: str) -> None:
        """Why a capture that was archived fine could not be used (a feed that does not parse)."""
        with self.transaction() as c:
            c.execute(update(schema.captures).where(schema.captures.c.id == capture_id).values(error=error))

    def delete_captures(self, ids: Sequence[int]) -> None:
        """Drop rows (fsck and recovery: rows whose records are not on disk)."""
        if not ids:
            return
        cap, pt = schema.captures, schema.page_texts
        with self.transaction() as c:
            for i in range(0, len(ids), 500):
                c.execute(cap.delete().where(cap.c.id.in_(list(ids[i:i + 500]))))
                c.execute(pt.delete().where(pt.c.capture_id.in_(list(ids[i:i + 500]))))
                # alerts not sent yet go with their capture: its URL is fetched, and alerted, anew
                c.execute(schema.outbox.delete().where(schema.outbox.c.capture_id.in_(list(ids[i:i + 500])),
                                                       schema.outbox.c.delivered_at.is_(None)))

    def known_articles(self, outlet: str, among: Sequence[str] | None = None) -> set[str]:
        """URLs of this outlet already settled (archived, off topic): not fetched again. With
        `among`, only those of these URLs: a pass asks about its candidates, and reads their
        rows, however large the outlet's archive has grown."""
        cap = schema.captures
        q = select(cap.c.outlet, cap.c.url, cap.c.final_url).where(
            cap.c.kind == "article", cap.c.state.in_((ARCHIVED, OFF_TOPIC, DUPLICATE)))
        asked = None if among is None else list(among)
        rows = self._matching(q, cap.c.outlet == outlet, asked, cap.c.url, cap.c.final_url)
        found = {u for r in rows if r.outlet == outlet for u in (r.url, r.final_url) if u}
        return found if asked is None else found.intersection(asked)

    def _matching(self, q: Any, whole: Any, among: list[str] | None, *columns: Any) -> list[Any]:
        """The rows of `q` and `whole` (the outlet's); with `among`, the rows of `q` where one of
        `columns` is among these values, asked _IN_CHUNK at a time (SQLite's limit on bound
        parameters). The caller keeps the outlet's: with the outlet in the statement SQLite
        would search by its (outlet, kind, state) index and read the whole outlet for each
        chunk, where the URL indexes read the candidates' rows only."""
        if among is None:
            with self.reading() as c:
                return list(c.execute(q.where(whole)))
        values = list(dict.fromkeys(among))
        rows: list[Any] = []
        with self.reading() as c:
            for chunk in chunks(values, _IN_CHUNK):
                rows += c.execute(q.where(or_(*(col.in_(chunk) for col in columns))))
        return rows

    def article_totals(self) -> dict[str, int]:
        """Counted in URLs, not attempts: passes run; articles archived; new versions archived;
        candidate URLs whose attempts all failed (a URL that failed in five passes is one)."""
        kept = "('archived', 'blocked', 'unchanged', 'not_modified', 'off_topic', 'duplicate')"
        return {
            "passes": self._scalar("SELECT COUNT(*) FROM passes") or 0,
            "archived": self._scalar("SELECT COUNT(DISTINCT url) FROM captures WHERE kind = 'article' "
                                     "AND state = 'archived' AND previous_capture_id IS NULL") or 0,
            "updated": self._scalar("SELECT COUNT(*) FROM captures WHERE kind = 'article' AND state = 'archived' "
                                    "AND previous_capture_id IS NOT NULL") or 0,
            "failed": self._scalar("SELECT COUNT(DISTINCT url) FROM captures c WHERE kind = 'article' "
                                   "AND state = 'failed' AND NOT EXISTS (SELECT 1 FROM captures d WHERE d.url = c.url "
                                   f"AND d.kind = 'article' AND d.state IN {kept})") or 0,
        }

    def nearest_requisite(self, url: str, at: str) -> CaptureRow | None:
        """The archived capture of a page requisite nearest in time to `at` (what replay
        shows with a page captured then)."""
        rows = self._rows("SELECT id, fetched_at FROM captures WHERE final_url = :u AND kind = 'requisite' "
                          "AND state = :a AND warc_file IS NOT NULL", u=url, a=ARCHIVED)
        if not rows:
            return None
        want = parse_iso(at)
        best = min(rows, key=lambda r: abs((parse_iso(r["fetched_at"])
                                            - want).total_seconds()))
        return self.get(best["id"])

    def failures_not_due(self, outlet: str, now: datetime, among: Sequence[str] | None = None) -> set[str]:
        """Candidate URLs of this outlet whose HTTP failures say not to ask yet, or never
        (410, a 404 that stayed; see retry.py). With `among`, only those of these URLs."""
        cap = schema.captures
        q = (select(cap.c.id, cap.c.outlet, cap.c.url, cap.c.status, cap.c.fetched_at)
             .where(cap.c.kind == "article", cap.c.state == FAILED,
                    or_(cap.c.status.in_((404, 410)), cap.c.status >= 500)))
        rows = self._matching(q, cap.c.outlet == outlet, None if among is None else list(among), cap.c.url)
        seen: dict[str, tuple[list[int], str]] = {}
        for r in sorted((r for r in rows if r.outlet == outlet), key=lambda r: r.id):
            statuses, _ = seen.setdefault(r.url, ([], ""))
            statuses.append(r.status)
            seen[r.url] = (statuses, r.fetched_at)
        out = set()
        for url, (statuses, last) in seen.items():
            when = next_try(statuses, parse_iso(last))
            if when is None or when > now:
                out.add(url)
        return out

    def latest(self, url: str, kinds: tuple[str, ...]) -> CaptureRow | None:
        """The newest capture of `url` that has a full response in a WARC (for validators, refetch)."""
        return self._one(_latest(tuple(kinds)), u=url)

    def last_article_outcome(self, url: str) -> CaptureRow | None:
        """The newest article capture of `url` that says whether the page is there: kept
        (archived, unchanged, not modified) or gone (answered 404 or 410). Failures that say
        nothing of the page (timeouts, 5xx, block pages) are passed over."""
        cap = schema.captures
        q = (select(cap).where(cap.c.url == url, cap.c.kind == "article",
                               or_(cap.c.state.in_(_KEPT), and_(cap.c.state == FAILED, cap.c.status.in_((404, 410)))))
             .order_by(cap.c.id.desc()).limit(1))
        return self._one(q)

    def removal_after(self, url: str, after_id: int) -> CaptureRow | None:
        """The first article capture of `url` after capture `after_id` saying the outlet took
        the page down: an answer 404 or 410, or a redirect to a site's front page (how many
        sites retire a story). None while every later answer is the page (or says nothing)."""
        cap = schema.captures
        q = (select(cap).where(cap.c.url == url, cap.c.kind == "article", cap.c.id > after_id)
             .order_by(cap.c.id).limit(200))
        for later in self._all(q):
            if later.state == FAILED and later.status in (404, 410):
                return later
            if later.final_url and later.final_url != url and urlsplit(later.final_url).path in ("", "/"):
                return later
        return None

    def last_in_chain(self, url: str) -> CaptureRow | None:
        """The newest article capture of `url` (archived, unchanged or not modified)."""
        return self._one(_LAST_IN_CHAIN, u=url)

    def get(self, capture_id: int) -> CaptureRow | None:
        return self._one(_GET, i=capture_id)

    def by_record_id(self, record_id: str) -> CaptureRow | None:
        """The capture whose response (or revisit) record has this WARC-Record-ID."""
        cap = schema.captures
        return self._one(select(cap).where(cap.c.warc_record_id == record_id).order_by(cap.c.id).limit(1))

    def made_for(self, record_ids: Sequence[str], kinds: Sequence[str]) -> list[CaptureRow]:
        """Captures of one of `kinds` made for the captures whose response records are
        `record_ids` (a page's requisites, its rendered DOM and screenshot: their
        discovered_via_record_id), with records in a WARC, in id order."""
        cap = schema.captures
        ids = sorted(set(record_ids))
        found: list[CaptureRow] = []
        for chunk in chunks(ids, 500):  # bounded IN lists (SQLite's parameter limit)
            found += self._all(select(cap).where(cap.c.discovered_via_record_id.in_(chunk),
                                                 cap.c.kind.in_(list(kinds)), cap.c.warc_file.is_not(None)))
        return sorted(found, key=lambda r: r.id or 0)

    def versions(self, url: str) -> list[CaptureRow]:
        """Captures of `url` (as asked for or as redirected to) with records in a WARC, oldest first."""
        cap = schema.captures
        return self._all(select(cap).where((cap.c.url == url) | (cap.c.final_url == url), cap.c.warc_file.is_not(None))
                         .order_by(cap.c.fetched_at, cap.c.id))

    def responses_of(self, url: str, states: Sequence[str]) -> list[CaptureRow]:
        """Captures of `url` (as asked for or as redirected to) in one of `states` whose record
        is at a known place in a WARC, in id order."""
        cap = schema.captures
        return self._all(select(cap).where((cap.c.final_url == url) | (cap.c.url == url), cap.c.warc_file.is_not(None),
                                           cap.c.warc_offset.is_not(None), cap.c.state.in_(list(states)))
                         .order_by(cap.c.id))

    def last_capture_id(self) -> int:
        """The highest capture id (0: no captures): anything above it is new."""
        cap = schema.captures
        with self.reading() as c:
            return c.execute(select(func.max(cap.c.id))).scalar() or 0

    def record_spans(self) -> list[RecordSpan]:
        """Where every capture that names WARC records has them."""
        cap = schema.captures
        q = (select(cap.c.id, cap.c.warc_file, cap.c.warc_offset, cap.c.warc_length)
             .where(cap.c.warc_file.is_not(None)).order_by(cap.c.id))
        with self.reading() as c:
            return [RecordSpan(*r) for r in c.execute(q).all()]

    def _one(self, q: Any, **params: Any) -> CaptureRow | None:
        with self.reading() as c:
            r = c.execute(q, params).mappings().first()
        return _row(r) if r is not None else None

    def _all(self, q: Any) -> list[CaptureRow]:
        with self.reading() as c:
            return [_row(r) for r in c.execute(q).mappings()]

    def due_for_refetch(self, outlet: str, after: list[float], now_iso: str,
                        captured_before: str | None = None) -> list[tuple[str, int]]:
        """(url, refetches so far) for kept articles whose next refetch time has come; with
        `captured_before`, only articles first captured before then (not in the running pass)."""
        if not after:
            return []
        rows = self._rows(
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

    def captures(self, outlet: str | None = None, kind: str | None = None, state: str | None = None,
                 batch: int = 2000, after: int = 0, up_to: int | None = None) -> Iterator[CaptureRow]:
        """Rows in id order (ids above `after`, up to `up_to`), read in batches (a long walk
        holds no transaction or cursor open)."""
        cap = schema.captures
        q = select(cap).order_by(cap.c.id)
        for col, val in (("outlet", outlet), ("kind", kind), ("state", state)):
            if val is not None:
                q = q.where(cap.c[col] == val)
        if up_to is not None:
            q = q.where(cap.c.id <= up_to)
        last = after
        while True:
            with self.reading() as c:
                got = list(c.execute(q.where(cap.c.id > last).limit(batch)).mappings())
            for r in got:
                yield _row(r)
            if len(got) < batch:
                return
            last = got[-1]["id"]
