"""What every fetched page said (page_texts), kept for rematching topics later."""

from __future__ import annotations

import json
import zlib
from typing import Iterator, Sequence

from sqlalchemy import func, select, update

from .. import schema
from .inlists import chunks
from .records import (ARCHIVED, NOT_MODIFIED, OFF_TOPIC, UNCHANGED, CaptureRow, PageText, _row)

# zlib level of page_texts.text_z: on the bench site's 10,016 pages, 5.8 KB of text became
# 1.7 KB, at ~36 MB/s of one core (0.16 ms a page)
PAGE_TEXT_LEVEL = 6


class PageTextQueries:
    """Methods of Index (archiver/index/queries.py), which provides transaction(), reading(),
    _rows(), _scalar(), _one() and _all()."""

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
        for chunk in chunks(wanted, batch):
            q = (select(cap, pt.c.title.label("page_title_"), pt.c.published.label("page_published_"), pt.c.text_z)
                 .join(pt, pt.c.capture_id == cap.c.id).where(cap.c.id.in_(chunk)).order_by(cap.c.id))
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
