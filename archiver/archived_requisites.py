"""A requisite captured within `capture.requisites.refresh`, handed to the browser from the
archive instead of fetched again.

Requisites mode does not fetch a requisite captured within `refresh` (page_requisites.py);
here the same holds for pages rendered in the browser, which needs the bytes: the archived
response record is read back and its body decoded as the fetcher decodes what it receives
(chunked framing and Content-Encoding removed, capped at `max_decoded_bytes`). A record
that cannot be read costs nothing but a fetch. The page's provenance lists what it got
this way with the record id, as requisites mode lists what it reused.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from warcio.archiveiterator import ArchiveIterator
from warcio.bufferedreaders import ChunkedDataReader
from warcio.exceptions import ArchiveLoadFailed

from .clock import parse_iso
from .decode import ContentDecoder
from .errors import StorageError
from .index import CaptureRow, Index
from .warcfiles import WarcFiles

log = logging.getLogger("archiver.crawl")

READ_BLOCK = 1 << 16


@dataclass
class Reused:
    """A request of the page answered from the archive: `row` is the capture it got."""

    url: str
    row: CaptureRow

    def line(self) -> tuple[str, str]:
        """The page's provenance line, as requisites mode writes a reused requisite's."""
        return "requisite", f"{self.url} {self.row.warc_record_id} (captured {self.row.fetched_at})"


@dataclass
class Archived:
    """An archived response as the fetcher would hand it over."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes  # transfer and content codings removed, capped


def fresh(row: CaptureRow, refresh: float) -> bool:
    """Whether `row` was fetched less than `refresh` seconds ago."""
    try:
        at = parse_iso(row.fetched_at)
    except ValueError:
        return False
    return datetime.now(timezone.utc) - at < timedelta(seconds=refresh)


class ArchivedRequisites:
    def __init__(self, index: Index, warcs: WarcFiles):
        self.index, self.warcs = index, warcs

    def find(self, url: str, refresh: float) -> CaptureRow | None:
        """The newest full capture of requisite `url`, if it was fetched within `refresh`."""
        if refresh <= 0:
            return None
        row = self.index.latest(url, ("requisite",))
        return row if row is not None and fresh(row, refresh) else None

    def read(self, row: CaptureRow, max_decoded: int) -> Archived | None:
        """The response `row` points at; None (logged) when its record cannot be read."""
        if not row.warc_file or row.warc_offset is None:
            return None
        try:
            with self.warcs.open_record(row.warc_file, row.warc_offset, row.warc_length) as f:
                rec = next(iter(ArchiveIterator(f)))
                h = rec.http_headers
                if rec.rec_type != "response" or h is None:
                    raise ValueError(f"a {rec.rec_type} record without an HTTP response")
                stream = rec.raw_stream
                if (h.get_header("Transfer-Encoding") or "").strip().lower() == "chunked":
                    stream = ChunkedDataReader(stream)
                decoder = ContentDecoder(h.get_header("Content-Encoding") or "", max_decoded)
                while not decoder.done:
                    block = stream.read(READ_BLOCK)
                    if not block:
                        break
                    decoder.feed(block)
                status = int(h.get_statuscode() or 0)
                headers = list(h.headers)
        except (OSError, StorageError, ValueError, EOFError, StopIteration, zlib.error, ArchiveLoadFailed) as e:
            log.warning("requisite %s: its capture %s could not be read (%s); fetching it again",
                        row.final_url or row.url, row.warc_record_id, e or type(e).__name__)
            return None
        return Archived(status, headers, bytes(decoder.out))


__all__ = ["ArchivedRequisites", "Archived", "Reused", "fresh"]
