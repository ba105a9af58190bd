"""The index's passes and WARC files: a pass's start, counts and end; where each WARC file is."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, insert, select, update

from .. import schema
from .records import (ARCHIVED, BLOCKED, DUPLICATE, FAILED, OFF_TOPIC, ROBOTS, PassCounts, PassRow, WarcFileRow,
                      _pass)


class PassQueries:
    """Methods of Index (archiver/index/queries.py), which provides transaction(), reading(),
    _rows(), _scalar(), _one() and _all()."""

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
