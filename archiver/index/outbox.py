"""The alerts' outbox: deliveries waiting, claimed, made or failed."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from sqlalchemy import and_, or_, select, update

from .. import schema
from .records import OutboxRow


class OutboxQueries:
    """Methods of Index (archiver/index/queries.py), which provides transaction(), reading(),
    _rows(), _scalar(), _one() and _all()."""

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
