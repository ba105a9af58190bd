"""The index's document polls: when each discovery document of an adaptive outlet was last
read, when it is due again, and what polling.py knows of how often it changes."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from sqlalchemy import select, update

from .. import schema


@dataclass
class PollRow:
    outlet: str
    url: str
    kind: str  # feed | page | sitemap | search
    polled_at: str  # index timestamps, as clock.warc_date writes them
    due_at: str
    interval: float  # seconds
    items: float = 0.0
    watched: float = 0.0
    polls: int = 0
    changed_at: str | None = None
    listed: list[str] = field(default_factory=list)  # digests of the URLs the last poll listed


class PollQueries:
    """Methods of Index (archiver/index/queries.py), which provides transaction(), reading(),
    _rows(), _scalar(), _one() and _all()."""

    # ------------------------------------------------------------------ document polls (polling.py)

    def document_polls(self, outlet: str) -> dict[str, PollRow]:
        """URL -> its poll record, for every document of this outlet polled so far."""
        t = schema.document_polls
        with self.reading() as c:
            rows = c.execute(select(t).where(t.c.outlet == outlet)).mappings().all()
        return {r["url"]: PollRow(**{**r, "listed": json.loads(r["listed"] or "[]")}) for r in rows}

    def save_poll(self, row: PollRow) -> None:
        """Record a poll (the document's row replaced, or its first)."""
        t = schema.document_polls
        values = {**asdict(row), "listed": json.dumps(row.listed)}
        with self.transaction() as c:
            done = c.execute(update(t).where(t.c.outlet == row.outlet, t.c.url == row.url).values(**values))
            if not done.rowcount:
                c.execute(t.insert().values(**values))
