"""What a researcher needs to cite a capture exactly: its permalink, a citation block, its
article text with the matched topic terms marked, and downloads of its WARC records and
texts (the bytes the citation's digests are of).

The permalink is `/web/<timestamp>/<url>` on the UI's origin (permalink.py): it shows the
capture's page, and its replay stays on the replay origin, in the page's frame as always.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..capture_records import capture_records, copy_members
from ..dump import derive
from ..index import ARCHIVED, BLOCKED, CaptureRow
from ..pubdate import published_at
from .highlight import marked
from .permalink import address, permalink, permalink_ts, resolve
from .replay import raw_csp
from .timeline import Timeline, by_day, timeline

if TYPE_CHECKING:
    from .app import Archive

log = logging.getLogger(__name__)

TEXT_KINDS = ("article", "page")
_REPLAYABLE = (ARCHIVED, BLOCKED)


def text_bytes(archive: "Archive", row: CaptureRow, kind: str) -> tuple[bytes, bool]:
    """A capture's article or page text as its text file holds it, byte for byte (True), else
    derived again from its WARC record (False); a revisit's are those of the capture it
    refers to."""
    source = archive.replay_row(row) or row
    rel = source.text_path if kind == "article" else source.page_text_path
    if rel:
        try:
            return (archive.root / rel).read_bytes(), True
        except OSError:
            pass
    if source.warc_file and source.warc_offset is not None and source.state in _REPLAYABLE:
        return derive(archive.warcs.location(source.warc_file), source.warc_offset, source.warc_length, kind,
                      archive.warcs.settings).encode("utf-8"), False
    return b"", False


def find(archive: "Archive", ts: str, url: str) -> tuple[CaptureRow | None, str | None]:
    """The capture `/web/<ts>/<url>` names (any capture of the URL with records in a WARC,
    revisits included), and its own permalink when that is not what was asked for (another
    time, or the URL it was redirected from): None when it is."""
    row = resolve(archive.versions(url), ts, url)
    if row is None:
        return None, None
    rows = archive.versions(address(row))
    # the URL arrives percent-decoded (its query not), the index has it as fetched
    if ts == permalink_ts(row, rows) and unquote(address(row)) == unquote(url):
        return row, None
    return row, permalink(row, rows)


def marked_article(article: str, row: CaptureRow) -> str:
    """The article text as HTML, the terms that matched its topics in <mark>."""
    return marked(article, row.matched)


def citation(request: Request, archive: "Archive", row: CaptureRow, source: CaptureRow | None,
             text: bytes | None, text_from_file: bool) -> dict[str, Any] | None:
    """Who published what and when, where and when it was fetched, the permalink, and what
    identifies the bytes: record id, payload digest, SHA-256 of the article text (a revisit's
    text is that of the capture it refers to). `check` says when the text file on disk is
    not what was recorded. None for a capture that left no record (nothing to cite)."""
    if not row.warc_file or not row.warc_record_id:
        return None
    path = permalink(row, archive.versions(address(row)))
    cite_url = str(request.base_url).rstrip("/") + path
    held = source or row  # a revisit's row has no title, date or text of its own
    recorded, title, published = held.text_sha256, row.title or held.title, row.published or held.published
    actual = hashlib.sha256(text).hexdigest() if text else None
    fields = [("Outlet", row.outlet), ("Title", title or ""), ("Published", published or "")]
    normal = published_at(published)
    if normal and normal != published:
        fields.append(("Published (ISO 8601)", normal))
    fields.append(("URL", address(row)))
    if row.url != address(row):
        fields.append(("Requested URL", row.url))
    fields += [("Archived at", row.fetched_at), ("Permalink", cite_url),
               ("WARC-Record-ID", row.warc_record_id or ""), ("WARC-Payload-Digest", row.payload_digest or ""),
               ("Article text SHA-256", recorded or "")]
    check = ""
    if recorded and actual and not text_from_file:
        check = "The text file is missing; the text shown was derived again from the WARC record."
    elif recorded and actual and recorded != actual:
        check = f"The text file's SHA-256 is now {actual}, not the {recorded} recorded at capture."
    parts = [f"{row.outlet}. {f'“{title}”' if title else address(row)}."]
    if published:
        parts.append(f"Published {published}.")
    parts.append(f"{address(row)}. Archived {row.fetched_at}: {cite_url}.")
    if row.warc_record_id:
        parts.append(f"WARC-Record-ID {row.warc_record_id}.")
    if row.payload_digest:
        parts.append(f"WARC-Payload-Digest {row.payload_digest}.")
    if recorded:
        parts.append(f"Article text SHA-256 {recorded}.")
    return {"permalink": path, "url": cite_url, "text": " ".join(parts), "check": check, "published_at": normal,
            "fields": [(k, "cite-" + re.sub(r"[^a-z0-9]+", "-", k.lower()).strip("-"), v) for k, v in fields if v]}


def _download_headers(filename: str) -> dict[str, str]:
    # a download is never shown in a page of ours: nothing in it may load, run or navigate
    return {"Content-Disposition": f'attachment; filename="{filename}"', "Content-Security-Policy": raw_csp(),
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def records_download(archive: "Archive", row: CaptureRow) -> Response:
    """A WARC of the capture's records (its response or revisit, request, conversion,
    metadata, rendered DOM and screenshot; for a revisit, first the response it refers to),
    each the gzip member it is in the archive, copied byte for byte."""
    refers = archive.replay_row(row) if row.revisit_of else None
    recs = capture_records(archive.warcs, row, refers if refers is not None and refers.id != row.id else None)
    if recs.missing:
        log.warning("capture %s: records %s are not after its response in %s", row.id, ", ".join(recs.missing),
                    row.warc_file)
    headers = _download_headers(f"capture-{row.id}.warc.gz")
    headers["Content-Length"] = str(recs.size)
    return StreamingResponse(copy_members(archive.warcs, recs.members), media_type="application/warc",
                             headers=headers)


def wacz_download(archive: "Archive", row: CaptureRow) -> Response:
    """A WACZ of the capture and what it needs to replay (export.export_capture_wacz), made in
    a temporary folder (the archive may be read-only) that is gone once the bytes are read."""
    # cdxj-indexer, which the export needs, is loaded only when one is asked for
    from ..export import export_capture_wacz

    with tempfile.TemporaryDirectory(prefix="archiver-wacz-") as scratch:
        out = Path(scratch) / f"capture-{row.id}.wacz"
        export_capture_wacz(archive.root, archive.warcs, archive.index, row.id, out)
        data = out.read_bytes()
    return Response(data, media_type="application/wacz", headers=_download_headers(out.name))


def text_download(archive: "Archive", row: CaptureRow, kind: str) -> Response:
    data, _ = text_bytes(archive, row, kind)
    return Response(data, media_type="text/plain; charset=utf-8",
                    headers=_download_headers(f"capture-{row.id}-{kind}.txt"))


def home_timeline(archive: "Archive", capture_days: list[tuple[str, int]]) -> Timeline:
    return timeline(by_day(archive.index.publication_dates()), capture_days)


def topic_timeline(archive: "Archive", topic: str) -> Timeline:
    """The topic's articles by publication date, and its captures by day."""
    return timeline(by_day(archive.index.publication_dates(topic)), archive.index.capture_days(topic))

