"""The shared frontier of a scaled setup: candidate articles in the index's database.

A discovery task adds its outlet's new candidates (one row per outlet and URL, ever); a fetch
task claims a row, and the capture row its fetch produces settles it in one transaction
(Index.add). A message delivered twice, or redone after its worker died, finds the row
settled and does nothing, or finds it unsettled and does the whole fetch again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ..discover import Candidate
from ..index import Index
from ..schema import claims, frontier
from ..clock import utc_now as _now

QUEUED, FETCHING, SETTLED = "queued", "fetching", "settled"


def _insert(index: Index, table: Any) -> Any:
    return (postgresql.insert if index.dialect == "postgresql" else sqlite.insert)(table)


def add(index: Index, outlet: str, pass_id: int, candidates: list[Candidate], batch: int = 500) -> None:
    """Add candidates; one settled in an earlier pass without being kept (failed, blocked,
    robots) is queued again for this pass. Rows queued or being fetched stay as they are."""
    now = _now()
    for i in range(0, len(candidates), batch):
        rows = [{"outlet": outlet, "url": c.url, "pass_id": pass_id, "via_url": c.via_url, "via_kind": c.via_kind,
                 "via_record_id": c.via_record_id, "title": c.title or None, "summary": c.summary or None,
                 "state": QUEUED, "updated_at": now} for c in candidates[i:i + batch]]
        stmt = _insert(index, frontier).values(rows)
        ex = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=["outlet", "url"],
            set_={"pass_id": ex.pass_id, "via_url": ex.via_url, "via_kind": ex.via_kind,
                  "via_record_id": ex.via_record_id, "title": ex.title, "summary": ex.summary, "state": QUEUED,
                  "worker": None, "capture_id": None, "updated_at": ex.updated_at},
            where=and_(frontier.c.state == SETTLED, frontier.c.pass_id != ex.pass_id))
        with index.transaction() as c:
            c.execute(stmt)


def unsettled(index: Index, pass_id: int) -> list[int]:
    """Ids of this pass's rows not settled yet, in the order they were added."""
    with index.reading() as c:
        return list(c.execute(select(frontier.c.id).where(frontier.c.pass_id == pass_id, frontier.c.state != SETTLED)
                              .order_by(frontier.c.id)).scalars())


def open_counts(index: Index, pass_ids: list[int]) -> dict[int, int]:
    """pass id -> rows not settled yet (passes with none are left out)."""
    if not pass_ids:
        return {}
    with index.reading() as c:
        rows = c.execute(select(frontier.c.pass_id, func.count()).where(
            frontier.c.pass_id.in_(pass_ids), frontier.c.state != SETTLED).group_by(frontier.c.pass_id))
        return {p: n for p, n in rows}


@dataclass
class Claimed:
    candidate: Candidate
    outlet: str
    pass_id: int


def claim(index: Index, frontier_id: int, worker: str) -> Claimed | None:
    """Take a row for fetching; None when it is settled already (a duplicate delivery). A row
    marked as being fetched by a worker that died is taken over: its message came back."""
    with index.transaction() as c:
        r = c.execute(update(frontier).where(frontier.c.id == frontier_id, frontier.c.state != SETTLED)
                      .values(state=FETCHING, worker=worker, updated_at=_now())
                      .returning(frontier)).mappings().first()
    if r is None:
        return None
    cand = Candidate(r["url"], r["via_url"], r["via_kind"], via_record_id=r["via_record_id"], title=r["title"] or "",
                     summary=r["summary"] or "", frontier_id=r["id"])
    return Claimed(cand, r["outlet"], r["pass_id"])


def settle_without_capture(index: Index, frontier_id: int) -> None:
    """For a row whose fetch ended without a capture row (its outlet left the config)."""
    with index.transaction() as c:
        c.execute(update(frontier).where(frontier.c.id == frontier_id).values(state=SETTLED, updated_at=_now()))


def is_settled(index: Index, frontier_id: int) -> bool:
    with index.reading() as c:
        return c.execute(select(frontier.c.state).where(frontier.c.id == frontier_id)).scalar() == SETTLED


def page_owner(index: Index, final_url: str) -> int | None:
    """The frontier row that claimed this page, if any."""
    with index.reading() as c:
        return c.execute(select(claims.c.frontier_id).where(claims.c.final_url == final_url)).scalar()


def claim_page(index: Index, final_url: str, frontier_id: int) -> bool:
    """Claim a page for this frontier row; False when another row has it. A claim outlives a
    worker that dies: the row's redone fetch finds it its own."""
    stmt = _insert(index, claims).values(final_url=final_url, frontier_id=frontier_id).on_conflict_do_nothing()
    with index.transaction() as c:
        c.execute(stmt)
        owner = c.execute(select(claims.c.frontier_id).where(claims.c.final_url == final_url)).scalar()
    return owner == frontier_id
