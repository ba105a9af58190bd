"""Refetching a kept article that was rendered in the browser (capture modes browser and auto).

Such a page's HTML is often a shell that never changes while the data its scripts write the
article from does, so a 304 or an identical static payload says nothing of the article. It
is fetched without validators (a 304 has nothing to render) and rendered again, what its
last capture fetched for itself fetched again rather than answered from the archive, and it
is unchanged only when its static payload and its rendered article text are both those of
its last full capture.
"""

from __future__ import annotations

import hashlib

from .archived_requisites import ArchivedRequisites
from .extract import Extraction
from .fetch import Response
from .index import CaptureRow, Index
from .settings.capture import BROWSER_MODES
from .warc import sha1_b32


def rendered_before(index: Index, full: CaptureRow | None, mode: str) -> bool:
    """Whether `full`, a URL's last full capture, was rendered (a DOM record was made for
    it) and the outlet's capture mode `mode` renders pages still."""
    if full is None or not full.warc_record_id or mode not in BROWSER_MODES:
        return False
    return bool(index.made_for([full.warc_record_id], ("dom",)))


def same_rendering(final: Response, full: CaptureRow, ex: Extraction) -> bool:
    """Whether a page fetched and rendered again (`ex` its extraction) is what `full` holds:
    the same payload from the same URL, and the same article text."""
    return (final.url == full.final_url and sha1_b32(final.payload_sha1) == full.payload_digest
            and full.text_sha256 == hashlib.sha256(ex.article_text.encode("utf-8")).hexdigest())


class FetchedAgain(ArchivedRequisites):
    """The archive as a page rendered again sees it: a requisite whose newest capture was
    made for the page's last capture (its article's JSON, among others) is fetched again,
    else a changed article would be rendered from the data it was first written from; what
    other pages fetched since may still come from the archive."""

    def __init__(self, archived: ArchivedRequisites, page_record_id: str):
        super().__init__(archived.index, archived.warcs)
        self.page_record_id = page_record_id

    def find(self, url: str, refresh: float) -> CaptureRow | None:
        row = super().find(url, refresh)
        return None if row is None or row.discovered_via_record_id == self.page_record_id else row


__all__ = ["FetchedAgain", "rendered_before", "same_rendering"]
