"""A page the browser rendered, on its capture page: its screenshot beside its text, its
rendered DOM as a view of its own, and which capture mode made it and why.

The screenshot and the DOM are the `urn:screenshot:` and `urn:dom:` resource records the
capture wrote beside its response (capture.Recorder._rendered), found by their index rows
(`kind: screenshot`, `dom`, discovered via the response's record id). The mode and its
reason are in the capture's provenance metadata record (`capture-mode`, `capture-reason`),
which follows the response in the same WARC file.

The PNG is served from the UI's origin (the UI's CSP lets its pages show images of their own
origin only) as `image/png` under nosniff and a CSP sandbox, so the bytes can only ever be
an image. The DOM is archived markup and the pages' own scripts are in it: it is served only
from the replay origin, rewritten and sealed exactly as replay is (replayapp.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.responses import Response
from warcio.archiveiterator import ArchiveIterator

from ..capture import DOM_URN, SCREENSHOT_URN
from ..capture_records import MAX_FOLLOWING
from ..errors import StorageError
from ..index import CaptureRow
from .replay import MAX_REPLAY_BYTES, Archived

if TYPE_CHECKING:
    from .app import Archive

log = logging.getLogger(__name__)

# a provenance record is a few hundred bytes; anything past this is not one of ours
MAX_METADATA_BYTES = 1 << 20
_READ_ERRORS = (OSError, ValueError, StopIteration, StorageError)

MODES = {
    "html": "the page as the server sent it, alone",
    "requisites": "the page as the server sent it, with the stylesheets, images, scripts and fonts it names",
    "browser": "the page rendered in Chromium with its scripts run; its texts are those of the rendered DOM",
}


@dataclass(frozen=True)
class HowCaptured:
    """What the capture page says of how a page was captured (all None for a capture made
    before modes were recorded, or that is not an article's)."""

    mode: str | None = None
    reason: str | None = None
    dom: CaptureRow | None = None
    screenshot: CaptureRow | None = None

    @property
    def described(self) -> str:
        return MODES.get(self.mode or "", "")


def rendered_rows(archive: "Archive", source: CaptureRow | None) -> tuple[CaptureRow | None, CaptureRow | None]:
    """(DOM row, screenshot row) of the response record `source` holds: the newest of each."""
    if source is None or source.kind != "article" or not source.warc_record_id:
        return None, None
    # by their URNs, which the index has an index for (not for discovered_via_record_id): a
    # capture page of a large archive is not a scan of every row
    page, response_id = source.final_url or source.url, source.warc_record_id

    def made(kind: str, urn: str) -> list[CaptureRow]:
        return [r for r in archive.index.versions(urn + page)
                if r.kind == kind and r.discovered_via_record_id == response_id]

    dom, shot = made("dom", DOM_URN), made("screenshot", SCREENSHOT_URN)
    return (dom[-1] if dom else None), (shot[-1] if shot else None)


def how_captured(archive: "Archive", source: CaptureRow | None) -> HowCaptured:
    if source is not None and source.kind == "screenshot":  # its own capture page shows the image
        return HowCaptured(screenshot=screenshot_of(archive, source))
    if source is None or source.kind != "article":
        return HowCaptured()
    dom, shot = rendered_rows(archive, source)
    fields: dict[str, str] = {}
    try:
        fields = _provenance(archive, source, [r for r in (dom, shot) if r is not None])
    except _READ_ERRORS as e:
        log.warning("capture %s: cannot read its provenance record: %s", source.id, e)
    return HowCaptured(fields.get("capture-mode"), fields.get("capture-reason"), dom, shot)


def _provenance(archive: "Archive", source: CaptureRow, made: list[CaptureRow]) -> dict[str, str]:
    """The fields of the capture's provenance metadata record. It follows the response and
    the rendered page's resource records; reading starts after those, so a screenshot of
    megabytes is not decompressed on the way."""
    wanted = source.metadata_record_id
    if not wanted or not source.warc_file or source.warc_offset is None:
        return {}
    ends = [r.warc_offset + r.warc_length for r in (source, *made)
            if r.warc_file == source.warc_file and r.warc_offset is not None and r.warc_length]
    start = max(ends) if ends else source.warc_offset
    with archive.warcs.open_record(source.warc_file, start) as f:
        for n, rec in enumerate(ArchiveIterator(f)):
            if n >= MAX_FOLLOWING:
                break
            if rec.rec_type == "metadata" and rec.rec_headers.get_header("WARC-Record-ID") == wanted:
                body = rec.content_stream().read(MAX_METADATA_BYTES).decode("utf-8", "replace")
                fields: dict[str, str] = {}
                for line in body.splitlines():
                    key, sep, value = line.partition(": ")
                    if sep:
                        fields.setdefault(key, value)
                return fields
    return {}


def _resource(archive: "Archive", row: CaptureRow, max_bytes: int) -> tuple[str, str, bytes, bool]:
    """(target URI, content type, block, truncated) of the resource record `row` names,
    checked to be the record the row says it is."""
    if not row.warc_file or row.warc_offset is None:
        raise StorageError(f"capture {row.id} ({row.url}) has no record in a WARC")
    with archive.warcs.open_record(row.warc_file, row.warc_offset, row.warc_length) as f:
        rec = next(iter(ArchiveIterator(f)))
        h = rec.rec_headers
        uri, rid = h.get_header("WARC-Target-URI") or "", h.get_header("WARC-Record-ID") or ""
        if rec.rec_type != "resource" or uri != row.url or (row.warc_record_id and rid != row.warc_record_id):
            raise StorageError(f"{row.warc_file} at {row.warc_offset} holds a {rec.rec_type} record of "
                               f"{uri or 'no URI'} ({rid or 'no id'}), not capture {row.id}'s {row.url}")
        block = rec.content_stream().read(max_bytes + 1)
        return uri, h.get_header("Content-Type") or "", block[:max_bytes], len(block) > max_bytes


def screenshot_of(archive: "Archive", row: CaptureRow) -> CaptureRow | None:
    """The screenshot a capture page shows: the page's (a revisit's is that of the capture it
    refers to), or the screenshot capture itself."""
    if row.kind == "screenshot":
        return row if row.url.startswith(SCREENSHOT_URN) and row.warc_file else None
    return rendered_rows(archive, archive.replay_row(row))[1]


def screenshot_response(archive: "Archive", row: CaptureRow, error: Any) -> Response:
    """The screenshot's PNG, the record's bytes exactly; `error(status, message)` makes the
    page for a capture that has none or whose record cannot be read."""
    shot = screenshot_of(archive, row)
    if shot is None:
        return error(404, f"capture {row.id} has no screenshot")
    try:
        _, ctype, png, truncated = _resource(archive, shot, MAX_REPLAY_BYTES)
    except _READ_ERRORS as e:
        return error(500, f"capture {row.id}: cannot read its screenshot record ({e})")
    if truncated or ctype.split(";")[0].strip().lower() != "image/png":
        return error(500, f"capture {row.id}: its screenshot record is not a PNG of at most "
                          f"{MAX_REPLAY_BYTES:,} bytes ({ctype or 'no type'})")
    return Response(png, media_type="image/png", headers={
        "Content-Security-Policy": "default-src 'none'; img-src 'self'; form-action 'none'; base-uri 'none'; sandbox",
        "Content-Disposition": f'inline; filename="capture-{row.id}-screenshot.png"',
        "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})


def rendered_dom(archive: "Archive", dom: CaptureRow) -> Archived:
    """The rendered DOM as replay reads a response: an HTML document of the page's own URL,
    so its links and requisites are rewritten to the archive against that URL."""
    uri, ctype, body, truncated = _resource(archive, dom, MAX_REPLAY_BYTES)
    return Archived(uri[len(DOM_URN):], 200, "OK", [("Content-Type", ctype)], ctype or "text/html; charset=utf-8",
                    body, truncated)
