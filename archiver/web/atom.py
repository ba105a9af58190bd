"""Atom feeds of archived articles (RFC 4287): one per topic and one of everything, served by
the browse UI at /feeds/<topic>.atom and /feeds/all.atom, so any feed reader can follow what
the archive keeps. Each entry is one capture (a first capture or a new version) and links to
its capture page; its id is the capture's WARC record id, which never changes."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

from .. import __version__
from ..index import CaptureRow

ATOM = "http://www.w3.org/2005/Atom"
ENTRIES = 50  # the newest captures a feed lists
SUMMARY_CHARS = 400
# what XML 1.0 cannot carry at all (titles and texts come from the web)
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class FeedLinks:
    """Absolute URLs of the feed itself, the UI page it stands for, and each capture's page."""

    feed: str
    page: str
    capture: Callable[[int], str]


def _clean(text: str) -> str:
    return _NOT_XML.sub("", text)


def _add(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, f"{{{ATOM}}}{tag}", {k: _clean(v) for k, v in attrs.items()})
    if text is not None:
        el.text = _clean(text)
    return el


def entry_id(row: CaptureRow, links: FeedLinks) -> str:
    record = (row.warc_record_id or "").strip("<>")
    return record if record.startswith("urn:") else links.capture(row.id or 0)


def atom_feed(title: str, rows: list[CaptureRow], links: FeedLinks, text_of: Callable[[CaptureRow], str]) -> bytes:
    """The feed document of `rows` (newest first); `text_of` gives an article's text, whose
    start is the entry's summary."""
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    _add(feed, "id", links.feed)
    _add(feed, "title", title)
    _add(feed, "updated", rows[0].fetched_at if rows else "1970-01-01T00:00:00Z")
    _add(feed, "link", rel="self", type="application/atom+xml", href=links.feed)
    _add(feed, "link", rel="alternate", type="text/html", href=links.page)
    _add(feed, "generator", "archiver", version=__version__)
    for row in rows:
        entry = _add(feed, "entry")
        _add(entry, "id", entry_id(row, links))
        name = row.title or row.final_url or row.url
        _add(entry, "title", f"{name} (new version)" if row.previous_capture_id is not None else name)
        _add(entry, "updated", row.fetched_at)
        _add(entry, "link", rel="alternate", type="text/html", href=links.capture(row.id or 0))
        _add(entry, "link", rel="related", href=row.final_url or row.url)
        author = _add(entry, "author")
        _add(author, "name", row.byline or row.outlet)
        for topic in row.topics:
            _add(entry, "category", term=topic)
        terms = ", ".join(sorted(row.matched))
        text = " ".join(text_of(row).split())
        if len(text) > SUMMARY_CHARS:
            text = text[:SUMMARY_CHARS].rsplit(" ", 1)[0] + " …"
        _add(entry, "summary", f"{row.outlet}; matched: {terms}. {text}".strip(), type="text")
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(feed, encoding="utf-8", xml_declaration=False)
