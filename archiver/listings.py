"""Section, listing and search-results pages read into candidates: the links on them that look
like articles; and the search URLs an outlet's search template gives.

A page is read as an article's would be (up to its first MAX_PAGE_BYTES), with the HTML tree
pruned as it is read, so any page costs what that many bytes of anchors cost.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote_plus, urlsplit

from lxml import etree

from .discover import Candidate
from .extract import MAX_PAGE_BYTES
from .urls import canonicalize

log = logging.getLogger(__name__)

_WS = re.compile(r"\s+")


# Paths that are navigation, not articles.
_NOT_ARTICLE = re.compile(
    r"^/(?:$|(?:tag|tags|topic|topics|author|authors|section|sections|category|categories|page|search|"
    r"about|contact|privacy|terms|login|signin|register|subscribe|newsletter|account|static|assets|cdn-cgi|"
    r"feed|rss|video|videos|live|podcasts?|weather|help|faq|jobs|careers|advertise|shop)(?:/|$))",
    re.IGNORECASE)
_ASSET = re.compile(r"\.(?:css|js|json|xml|jpe?g|png|gif|webp|svg|ico|pdf|zip|mp[34]|woff2?|ttf)$", re.IGNORECASE)


def listing_links(body_text: str, url: str, kind: str = "page", limit: int = 2000,
                  same_site_only: bool = True, max_bytes: int = MAX_PAGE_BYTES) -> list[Candidate]:
    """Article-looking links on a section/listing or search-results page.

    A link counts when its anchor text reads like a headline (four words or more) and its
    path is not navigation (tags, sections, authors, pagination, assets). Like an article,
    the page is read up to its first `max_bytes` (as UTF-8), and its tree is pruned as it is
    read, so any page costs what 3 MB of anchors cost.
    """
    data = body_text[:max_bytes].encode("utf-8", "replace")[:max_bytes]
    if not data.strip():
        return []
    page_host = urlsplit(url).hostname or ""
    site = ".".join(page_host.split(".")[-2:])
    seen: set[str] = set()
    out: list[Candidate] = []
    try:
        for href, anchor in _anchors(data):
            canon = canonicalize(href, url)
            if canon is None or canon == url or canon in seen:
                continue
            parts = urlsplit(canon)
            host = parts.hostname or ""
            if same_site_only and not (host == page_host or host.endswith("." + site)):
                continue
            if _NOT_ARTICLE.match(parts.path) or _ASSET.search(parts.path):
                continue
            text = _WS.sub(" ", anchor).strip()
            if len(text.split()) < 4:
                continue
            seen.add(canon)
            out.append(Candidate(canon, url, kind, title=text))
            if len(out) >= limit:
                break
    except (etree.LxmlError, ValueError) as e:  # libxml2 gave up on the page: the links before count
        log.warning("%s %s: read up to a parser error (%s); %d links found before it", kind, url, e, len(out))
    return out


_ANCHOR_MAX_CHARS = 10_000  # of one anchor's text; past this it is cut
_PIECE = 65536


def _fed(parser: etree.HTMLPullParser, data: bytes) -> Iterator[None]:
    """Feed `data` to `parser` a piece at a time, then close it; yields after each step."""
    for i in range(0, len(data), _PIECE):
        parser.feed(data[i:i + _PIECE])
        yield
    parser.close()
    yield


@dataclass(slots=True)
class _OpenAnchor:
    href: str | None
    parts: list[str] = field(default_factory=list)
    size: int = 0


def _anchors(data: bytes) -> Iterator[tuple[str, str]]:
    """(href, anchor text) of each <a href> in an HTML page, in the order they end (document
    order, but for an <a> left open around others).

    The tree is pruned as it is read: every element is cleared when it ends and its earlier
    siblings dropped. So anchor text is gathered as it becomes final instead of read from the
    tree: the text before a node once the node starts (its parent's text or its previous
    sibling's tail), the text at the end of an element once it ends, each piece going to
    every <a> open at that point (an unclosed <a> holds what follows, as in the tree)."""
    parser = etree.HTMLPullParser(events=("start", "end", "comment", "pi"), encoding="utf-8")
    open_a: list[_OpenAnchor] = []

    def gather(text: str | None) -> None:
        if text:
            for a in open_a:
                if a.size < _ANCHOR_MAX_CHARS:
                    a.parts.append(text)
                    a.size += len(text)

    for _ in _fed(parser, data):
        for event, el in parser.read_events():
            if event != "end":  # start, or a comment or processing instruction (no end of their own)
                prev = el.getprevious()
                parent = el.getparent()
                gather(prev.tail if prev is not None else parent.text if parent is not None else None)
                if event == "start" and el.tag == "a":
                    open_a.append(_OpenAnchor(el.get("href")))
                continue
            gather(el[-1].tail if len(el) else el.text)
            if el.tag == "a" and open_a:
                a = open_a.pop()
                if a.href is not None:
                    yield a.href, "".join(a.parts)[:_ANCHOR_MAX_CHARS]
            el.clear(keep_tail=True)  # its tail is the text before whatever comes next
            parent = el.getparent()
            while parent is not None and el.getprevious() is not None:
                del parent[0]


def search_urls(template: str, terms: list[str]) -> list[str]:
    """Fill a site-search template once per distinct term."""
    out: list[str] = []
    for term in terms:
        u = template.replace("{query}", quote_plus(term))
        if u not in out:
            out.append(u)
    return out
