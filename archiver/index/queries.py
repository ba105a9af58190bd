"""The Index: every read and write of the index's tables, by name (see archiver/index/__init__.py)."""

from __future__ import annotations

import dataclasses
import json
import logging
import zlib
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

from sqlalchemy import (Connection, Engine, and_, create_engine, func, insert, inspect, or_, select, text,
                        update)
from sqlalchemy.engine import RowMapping, make_url
from sqlalchemy.exc import SQLAlchemyError

from .. import faults, schema
from ..clock import parse_iso
from ..errors import StorageError
from ..retry import next_try
from .database import _reason, _sqlite_engine, display_url, index_url, migrate
from .records import (ARCHIVED, BLOCKED, DUPLICATE, FAILED, NOT_MODIFIED, OFF_TOPIC, ROBOTS, UNCHANGED, CaptureRow,
                      OutboxRow, Overview, PageText, PassCounts, PassRow, RecordSpan, WarcFileRow, _COLUMNS,
                      _JSON_FIELDS, _KEPT, _pass, _row)

log = logging.getLogger("archiver.index")

# zlib level of page_texts.text_z: on the bench site's 10,016 pages, 5.8 KB of text became
# 1.7 KB, at ~36 MB/s of one core (0.16 ms a page)
PAGE_TEXT_LEVEL = 6


class CaptureWatcher(Protocol):
    """What a capture row causes beside itself (alerts.Alerts). Asked before the row is
    inserted (it may read the index as it was); what it answers is called with the row, its id
    set, inside the inserting transaction, and gives the outbox rows committed with it."""

    def plan(self, row: CaptureRow, index: "Index") -> Callable[[CaptureRow], list[OutboxRow]] | None: ...


class Index:
    """Open with `Index.open(storage_root)`; use as a context manager or call close()."""

    def __init__(self, engine: Engine, url: str, readonly: bool):
        self.engine = engine
        self.url = url
        self.path = display_url(url)  # what messages name
        self.readonly = readonly
        self.dialect = engine.dialect.name
        # set by a pass when alerts are configured (crawl.Pass): the deliveries a capture causes
        self.alerts: CaptureWatcher | None = None
        # called after a commit that queued deliveries (the daemon wakes its delivery loop)
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
            full = " (the disk is full or a file size limit was reached)" if "full" in reason else ""
            raise StorageError(f"cannot write index {self.path}: {reason}{full}") from None

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

    # ------------------------------------------------------------------ passes

    def start_pass(self, outlet: str, started_at: str, software: str, config_sha256: str) -> int:
        with self.transaction() as c:
            return c.execute(insert(schema.passes).values(
                outlet=outlet, started_at=started_at, software=software, config_sha256=config_sha256)
                .returning(schema.passes.c.id)).scalar_one()

    def record_pass(self, pass_id: int, counts: PassCounts, error: str | None, ended_at: str | None = None) -> None:
        """A pass's counts and error; with `ended_at` the pass is closed (a scaled pass's
        discovery records its counts with the pass still open)."""
        values: dict[str, Any] = {"counts": json.dumps(counts.as_dict(), sort_keys=True), "error": error}
        if ended_at is not None:
            values["ended_at"] = ended_at
        with self.transaction() as c:
            c.execute(update(schema.passes).where(schema.passes.c.id == pass_id).values(**values))

    def passes(self, outlet: str | None = None, open_only: bool = False) -> list[PassRow]:
        """Passes in the order they started (of one outlet; only those not ended)."""
        p = schema.passes
        q = select(p).order_by(p.c.id)
        if outlet is not None:
            q = q.where(p.c.outlet == outlet)
        if open_only:
            q = q.where(p.c.ended_at.is_(None))
        with self.reading() as c:
            return [_pass(r) for r in c.execute(q).mappings()]

    def get_pass(self, pass_id: int) -> PassRow | None:
        p = schema.passes
        with self.reading() as c:
            r = c.execute(select(p).where(p.c.id == pass_id)).mappings().first()
        return _pass(r) if r is not None else None

    def last_passes(self) -> dict[str, PassRow]:
        """outlet -> its newest pass."""
        p = schema.passes
        newest = select(func.max(p.c.id)).group_by(p.c.outlet)
        with self.reading() as c:
            return {r["outlet"]: _pass(r) for r in c.execute(select(p).where(p.c.id.in_(newest))).mappings()}

    def state_counts(self, kind: str, pass_id: int | None = None) -> dict[str, int]:
        """state -> captures of this kind (made by one pass, with `pass_id`)."""
        cap = schema.captures
        q = select(cap.c.state, func.count()).where(cap.c.kind == kind).group_by(cap.c.state)
        if pass_id is not None:
            q = q.where(cap.c.pass_id == pass_id)
        with self.reading() as c:
            return {state: n for state, n in c.execute(q).all()}

    def pass_summary(self, pass_id: int) -> PassCounts:
        """Article outcomes of a pass, counted from its capture rows (a scaled pass's workers
        each count only their own tasks)."""
        states = self.state_counts("article", pass_id)
        return PassCounts(archived=states.get(ARCHIVED, 0), failed=states.get(FAILED, 0),
                          robots=states.get(ROBOTS, 0), blocked=states.get(BLOCKED, 0),
                          off_topic=states.get(OFF_TOPIC, 0), duplicate=states.get(DUPLICATE, 0),
                          fetched=sum(n for s, n in states.items() if s != ROBOTS))

    # ------------------------------------------------------------------ WARC files

    def warc_files(self, worker: str | None = None) -> list[WarcFileRow]:
        """The WARC files recorded (of one worker), by name."""
        w = schema.warc_files
        q = select(w).order_by(w.c.name)
        if worker is not None:
            q = q.where(w.c.worker == worker)
        with self.reading() as c:
            return [WarcFileRow(**r) for r in c.execute(q).mappings()]

    def record_warc_closed(self, name: str, worker: str, location: str, size: int, at: str) -> None:
        """A worker closed the WARC file `name` at `location` (its spool)."""
        w = schema.warc_files
        values = {"worker": worker, "location": location, "state": "closed", "size": size, "updated_at": at}
        with self.transaction() as c:
            if not c.execute(update(w).where(w.c.name == name).values(**values)).rowcount:
                c.execute(insert(w).values(name=name, **values))

    def record_warc_shipped(self, name: str, location: str, size: int, sha256: str, at: str) -> None:
        """The WARC file `name` was copied to the shared store at `location`."""
        w = schema.warc_files
        with self.transaction() as c:
            c.execute(update(w).where(w.c.name == name).values(
                location=location, state="shipped", size=size, sha256=sha256, updated_at=at))

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
            row.id = c.execute(insert(schema.captures).values(values).returning(schema.captures.c.id)).scalar_one()
            if page is not None:
                c.execute(insert(schema.page_texts).values(
                    capture_id=row.id, title=page.title or None, published=page.published or None,
                    text_z=zlib.compress(page.text.encode("utf-8"), PAGE_TEXT_LEVEL)))
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

    def known_articles(self, outlet: str) -> set[str]:
        """URLs of this outlet already settled (archived, off topic): not fetched again."""
        rows = self._rows("SELECT url, final_url FROM captures WHERE outlet = :o AND kind = 'article' "
                          "AND state IN (:a, :b, :c)", o=outlet, a=ARCHIVED, b=OFF_TOPIC, c=DUPLICATE)
        return {u for r in rows for u in (r["url"], r["final_url"]) if u}

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

    def failures_not_due(self, outlet: str, now: datetime) -> set[str]:
        """Candidate URLs of this outlet whose HTTP failures say not to ask yet, or never
        (410, a 404 that stayed; see retry.py)."""
        rows = self._rows("SELECT url, status, fetched_at FROM captures WHERE outlet = :o AND kind = 'article' "
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

    def last_article_outcome(self, url: str) -> CaptureRow | None:
        """The newest article capture of `url` that says whether the page is there: kept
        (archived, unchanged, not modified) or gone (answered 404 or 410). Failures that say
        nothing of the page (timeouts, 5xx, block pages) are passed over."""
        cap = schema.captures
        q = (select(cap).where(cap.c.url == url, cap.c.kind == "article",
                               or_(cap.c.state.in_(_KEPT), and_(cap.c.state == FAILED, cap.c.status.in_((404, 410)))))
             .order_by(cap.c.id.desc()).limit(1))
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
        for i in range(0, len(ids), 500):  # bounded IN lists (SQLite's parameter limit)
            found += self._all(select(cap).where(cap.c.discovered_via_record_id.in_(ids[i:i + 500]),
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

    def overview(self, latest: int = 15) -> Overview:
        """Archived articles by topic, outlet and day, and the newest `latest` of them."""
        art = "kind = 'article' AND state = 'archived'"
        each = ("jsonb_array_elements_text(captures.topics::jsonb)" if self.dialect == "postgresql"
                else "json_each(captures.topics)")
        topics = [(r["t"], r["n"]) for r in self._rows(
            f"SELECT j.value AS t, COUNT(*) AS n FROM captures, {each} j WHERE {art} "
            f"GROUP BY j.value ORDER BY COUNT(*) DESC, j.value")]
        outlets = [(r["outlet"], r["n"]) for r in self._rows(
            f"SELECT outlet, COUNT(*) AS n FROM captures WHERE {art} GROUP BY outlet ORDER BY COUNT(*) DESC, outlet")]
        days = [(r["d"], r["n"]) for r in self._rows(
            f"SELECT substr(fetched_at, 1, 10) AS d, COUNT(*) AS n FROM captures WHERE {art} GROUP BY 1 ORDER BY 1")]
        newest = [_row(r) for r in self._rows(f"SELECT * FROM captures WHERE {art} ORDER BY id DESC LIMIT :n",
                                              n=latest)]
        total = self._scalar(f"SELECT COUNT(*) FROM captures WHERE {art}") or 0
        return Overview(topics, outlets, days, newest, total)

    def _archived_articles(self, topic: str | None) -> tuple[str, dict[str, Any]]:
        where: str = "kind = 'article' AND state = 'archived'"
        params: dict[str, Any] = {}
        if topic is not None:
            where += f" AND EXISTS (SELECT 1 FROM {self._topics_of_row()} j WHERE j.value = :topic)"
            params["topic"] = topic
        return where, params

    def publication_dates(self, topic: str | None = None) -> list[tuple[str, int]]:
        """(publication date as the pages state it, archived articles) for archived articles
        (about `topic`), in no particular order. An article is a URL fetched, counted once
        however many versions of it share the date."""
        where, params = self._archived_articles(topic)
        return [(r["p"], r["n"]) for r in self._rows(
            f"SELECT published AS p, COUNT(DISTINCT COALESCE(final_url, url)) AS n FROM captures "
            f"WHERE {where} AND published IS NOT NULL GROUP BY published", **params)]

    def capture_days(self, topic: str | None = None) -> list[tuple[str, int]]:
        """(YYYY-MM-DD, archived article captures made that day, UTC) for articles (about
        `topic`), in date order."""
        where, params = self._archived_articles(topic)
        return [(r["d"], r["n"]) for r in self._rows(
            f"SELECT substr(fetched_at, 1, 10) AS d, COUNT(*) AS n FROM captures WHERE {where} GROUP BY 1 ORDER BY 1",
            **params)]

    def _topics_of_row(self) -> str:
        """A row's topics as a table of one `value` column (JSON in a text column)."""
        return ("jsonb_array_elements_text(captures.topics::jsonb)" if self.dialect == "postgresql"
                else "json_each(captures.topics)")

    def topic_articles(self, topic: str | None, limit: int = 50) -> list[CaptureRow]:
        """The newest archived articles (first captures and new versions) about `topic` (None:
        about anything), newest first: what a topic's feed lists."""
        where, params = "kind = 'article' AND state = 'archived' AND topics <> '[]'", {"n": limit}
        if topic is not None:
            where += f" AND EXISTS (SELECT 1 FROM {self._topics_of_row()} j WHERE j.value = :topic)"
            params["topic"] = topic
        return [_row(r) for r in self._rows(f"SELECT * FROM captures WHERE {where} ORDER BY id DESC LIMIT :n",
                                            **params)]

    def topic_names(self) -> list[str]:
        """Every topic some archived article is about, by name."""
        return [r["t"] for r in self._rows(f"SELECT DISTINCT j.value AS t FROM captures, {self._topics_of_row()} j "
                                           "WHERE kind = 'article' AND state = 'archived' ORDER BY 1")]

    def _one(self, q: Any) -> CaptureRow | None:
        with self.reading() as c:
            r = c.execute(q).mappings().first()
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

    # ------------------------------------------------------------------ page texts (rematch.py)

    def page_text_ids(self, outlets: Sequence[str], since: str | None = None) -> list[int]:
        """Capture ids, in order, of the newest stored text of each page (final URL) of these
        outlets among its captures archived or off topic (block pages left out) and fetched at
        or after `since`."""
        if not outlets:
            return []
        cap, pt = schema.captures, schema.page_texts
        q = (select(func.max(cap.c.id)).select_from(cap.join(pt, pt.c.capture_id == cap.c.id))
             .where(cap.c.kind == "article", cap.c.state.in_((ARCHIVED, OFF_TOPIC)), cap.c.outlet.in_(list(outlets)))
             .group_by(cap.c.outlet, func.coalesce(cap.c.final_url, cap.c.url)))
        if since is not None:
            q = q.where(cap.c.fetched_at >= since)
        with self.reading() as c:
            return sorted(c.execute(q).scalars())

    def page_texts(self, ids: Sequence[int], batch: int = 200) -> Iterator[tuple[CaptureRow, PageText]]:
        """The captures `ids` with what their pages said, in id order, read `batch` at a time
        (a long walk holds no transaction open, nor more than a batch of texts)."""
        cap, pt = schema.captures, schema.page_texts
        wanted = sorted(ids)
        for i in range(0, len(wanted), batch):
            q = (select(cap, pt.c.title.label("page_title_"), pt.c.published.label("page_published_"), pt.c.text_z)
                 .join(pt, pt.c.capture_id == cap.c.id).where(cap.c.id.in_(wanted[i:i + batch])).order_by(cap.c.id))
            with self.reading() as c:
                got = [dict(r) for r in c.execute(q).mappings()]
            for d in got:
                page = PageText(d.pop("page_title_") or "", d.pop("page_published_"),
                                zlib.decompress(d.pop("text_z")).decode("utf-8"))
                yield _row(d), page

    def kept_topics(self, outlet: str) -> dict[str, set[str]]:
        """Page URL (as asked for, and as redirected to) -> the topics its kept captures of
        this outlet are archived under (block pages left out)."""
        out: dict[str, set[str]] = {}
        for r in self._rows("SELECT url, final_url, topics FROM captures WHERE outlet = :o AND kind = 'article' "
                            "AND state IN (:a, :b, :c)", o=outlet, a=ARCHIVED, b=UNCHANGED, c=NOT_MODIFIED):
            topics = json.loads(r["topics"]) if r["topics"] else []
            for u in {r["url"], r["final_url"]} - {None}:
                out.setdefault(u, set()).update(topics)
        return out

    def promote(self, capture_id: int, topics: list[str], matched: dict[str, list[str]]) -> None:
        """A kept capture is about more topics than it was archived under (found by a
        rematch): its topics and matched terms become these."""
        cap = schema.captures
        with self.transaction() as c:
            c.execute(update(cap).where(cap.c.id == capture_id).values(
                topics=json.dumps(topics, sort_keys=True, ensure_ascii=False),
                matched=json.dumps(matched, sort_keys=True, ensure_ascii=False)))

    # ------------------------------------------------------------------ the alerts' outbox
    # (rows are queued by add(), in the capture's transaction; alerts.py sends them)

    def outbox_due(self, now: str, limit: int = 100, backoff: bool = True,
                   skip: Sequence[tuple[str, str]] = ()) -> list[OutboxRow]:
        """Deliveries not made yet and not being sent (their claim, if any, ran out by `now`),
        oldest first; with `backoff`, only those whose next attempt time has come; none to the
        (channel, address) receivers in `skip`."""
        o = schema.outbox
        q = (select(o).where(o.c.delivered_at.is_(None), or_(o.c.claimed_until.is_(None), o.c.claimed_until <= now))
             .order_by(o.c.id).limit(limit))
        if backoff:
            q = q.where(o.c.next_attempt_at <= now)
        for channel, address in skip:
            q = q.where(~and_(o.c.channel == channel, o.c.address == address))
        with self.reading() as c:
            return [OutboxRow(**r) for r in c.execute(q).mappings()]

    def claim_delivery(self, outbox_id: int, now: str, until: str) -> bool:
        """Take a delivery for sending until `until` (counting the attempt); False when it was
        made already or another sender holds it."""
        o = schema.outbox
        with self.transaction() as c:
            return c.execute(update(o).where(
                o.c.id == outbox_id, o.c.delivered_at.is_(None),
                or_(o.c.claimed_until.is_(None), o.c.claimed_until <= now))
                .values(claimed_until=until, attempts=o.c.attempts + 1)).rowcount == 1

    def delivery_made(self, outbox_id: int, at: str, note: str | None = None) -> None:
        """The receiver accepted the delivery; `note` says what it did not take (refused recipients)."""
        o = schema.outbox
        with self.transaction() as c:
            c.execute(update(o).where(o.c.id == outbox_id).values(delivered_at=at, claimed_until=None, last_error=note))

    def delivery_failed(self, outbox_id: int, error: str, retry_at: str) -> None:
        """The attempt failed (`error` says why); the delivery is tried again from `retry_at`."""
        o = schema.outbox
        with self.transaction() as c:
            c.execute(update(o).where(o.c.id == outbox_id).values(
                claimed_until=None, next_attempt_at=retry_at, last_error=error))

    def outbox(self, pending_only: bool = False) -> list[OutboxRow]:
        """Every delivery queued (not made yet, with `pending_only`), in the order queued."""
        o = schema.outbox
        q = select(o).order_by(o.c.id)
        if pending_only:
            q = q.where(o.c.delivered_at.is_(None))
        with self.reading() as c:
            return [OutboxRow(**r) for r in c.execute(q).mappings()]


def _outbox_values(e: OutboxRow) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(e).items() if k != "id"}
