"""Discovery documents (feeds, sitemaps, listing and search pages) turned into candidate URLs:
the records every reader returns, and the reading rules the readers share.

Where each kind of document is read: feeds (RSS 0.9x/1.0/2.0, Atom, JSON Feed) in feeds.py;
sitemaps (sitemaps.org XML, plain text, RSS or Atom in a sitemap's place) in sitemaps.py;
section, listing and search-results pages, and the search URLs, in listings.py. Fetching and
archiving the documents is sources.py's job.

Every reader stops at a cap on how many items it returns, and a failure of a reader on one
document is that document's DiscoveryError, with the reason. What a document could not give
(entries without a link, lines that are not URLs, entries past a cap) is said in its result,
so the reason reaches the document's index row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

@dataclass(slots=True)
class Candidate:
    url: str
    via_url: str
    via_kind: str  # feed | sitemap | page | search
    via_record_id: str | None = None
    title: str = ""
    summary: str = ""
    published: str = ""
    frontier_id: int | None = None  # its row in a scaled setup's shared frontier
    found_by: str = ""  # why a page fetched before is fetched again (a rematch), for its provenance


@dataclass
class SitemapResult:
    urls: list[Candidate] = field(default_factory=list)
    sitemaps: list[str] = field(default_factory=list)  # children of a sitemap index
    problem: str | None = None  # why only part of the document could be read
    note: str | None = None  # why a sound document gave nothing (it lists nothing, or nothing recent)
    too_old: int = 0  # entries left out by max_age_days


@dataclass
class FeedResult:
    entries: list[Candidate] = field(default_factory=list)
    problem: str | None = None  # why only part of the feed could be read, or only leniently
    note: str | None = None  # why a sound feed gave nothing (it lists no entries)


# a field of an entry (title, summary, content, <loc>) keeps its text up to these; the rest is dropped
FIELD_MAX_CHARS = 100_000
ABSOLUTE_HTTP = re.compile(r"https?://[^/?#\s]", re.IGNORECASE)


def media_type(content_type: str) -> str:
    """The media type of a Content-Type value, lower-cased, without its parameters."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def local_name(tag: str) -> str:
    """An XML element's name without its namespace ("" for a comment or processing instruction)."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def namespace(tag: str) -> str:
    """An XML element's namespace URI ("" when it has none)."""
    return tag[1:].split("}", 1)[0] if isinstance(tag, str) and tag.startswith("{") else ""
