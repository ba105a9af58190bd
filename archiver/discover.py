"""Turn discovery documents (feeds, sitemaps, listing and search pages) into candidate URLs.

Parsing only: fetching and archiving the documents is crawl.py's job. XML is read as a
stream in whatever encoding it is in, with entity expansion and external entities refused
and the tree pruned as it is read (xmlsafe.py); the few broken feeds handed to feedparser are
screened for entity declarations first, in their decoded text. Every parser stops at a cap on
how many items it returns, and a listing page is read up to the bytes an article's would be.
A failure of the parsers on one document is that document's DiscoveryError, with the reason.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import quote_plus, urlsplit
from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException
from lxml import etree, html

from .errors import ArchiverError
from .extract import MAX_PAGE_BYTES
from .urls import canonicalize
from .xmlsafe import HEAD_BYTES, MAX_ELEMENTS, PrunedTree, XmlTooBig, decoded_text

log = logging.getLogger(__name__)


class DiscoveryError(ArchiverError):
    """A discovery document could not be used (malformed, unsafe, wrong type)."""


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


@dataclass
class SitemapResult:
    urls: list[Candidate] = field(default_factory=list)
    sitemaps: list[str] = field(default_factory=list)  # children of a sitemap index
    problem: str | None = None  # why only part of the document could be read


@dataclass
class FeedResult:
    entries: list[Candidate] = field(default_factory=list)
    problem: str | None = None  # why only part of the feed could be read, or only leniently


_ENTITY_DECL = re.compile(r"<!ENTITY", re.IGNORECASE)  # searched in decoded text: any encoding
_TAG_RE = re.compile(r"<[^>]+>")
_WS = re.compile(r"\s+")


def _plain(s: str) -> str:
    return _WS.sub(" ", html.fromstring(f"<div>{s}</div>").text_content() if "<" in s else s).strip() if s else ""


def _safe_plain(s: str) -> str:
    try:
        return _plain(s)
    except (etree.ParserError, ValueError):
        return _WS.sub(" ", _TAG_RE.sub(" ", s)).strip()


def parse_feed(body: bytes, url: str, content_type: str = "", limit: int = 5000,
               max_elements: int = MAX_ELEMENTS) -> FeedResult:
    """Entries of an RSS 0.9x/1.0/2.0 or Atom feed, at most `limit`, in document order.

    Well-formed feeds are read as a stream that stops at `limit` entries, so a feed of 100,000
    items costs what its first `limit` cost. feedparser's lenient parser (about 14 bytes of
    memory per byte of feed, and slow) is kept for small feeds that are not well-formed XML.
    A feed past the depth or element cap (xmlsafe.py) gives the entries before it."""
    try:
        return _parse_feed(body, url, content_type, limit, max_elements)
    except DiscoveryError:
        raise
    except Exception as e:  # a parser's own failure on this document is this document's
        raise DiscoveryError(f"feed {url} could not be parsed: {type(e).__name__}: {e}") from None


def _entities_refused(url: str) -> DiscoveryError:
    return DiscoveryError(f"feed {url} declares XML entities; refused (entity expansion is unsafe)")


def _parse_feed(body: bytes, url: str, content_type: str, limit: int, max_elements: int) -> FeedResult:
    tree = PrunedTree(body, content_type, max_elements=max_elements)
    if _ENTITY_DECL.search(decoded_text(body, tree.encoding, HEAD_BYTES)):
        raise _entities_refused(url)
    try:
        return FeedResult(_stream_feed(tree, url, limit))
    except _TooBig as e:
        problem = f"feed {url} stopped at a cap: {e.why}"
        if not e.entries:
            raise DiscoveryError(problem) from None
        return FeedResult(e.entries, f"{problem}; the {len(e.entries)} entries before it were used")
    except _NotWellFormed as e:
        problem = f"feed {url} is not well-formed XML ({e.why})"
        if e.entries:
            return FeedResult(e.entries, f"{problem}; the {len(e.entries)} entries before the error were used")
        if len(body) > LENIENT_FEED_MAX:
            raise DiscoveryError(f"{problem} and at {len(body)} bytes too large for the lenient parser "
                                 f"(limit {LENIENT_FEED_MAX})") from None
    # feedparser reads exactly the text screened here, as UTF-8, whatever the feed's encoding
    text = decoded_text(body, tree.encoding)
    if _ENTITY_DECL.search(text):
        raise _entities_refused(url)
    media = (content_type or "").split(";", 1)[0].strip() or "application/xml"
    entries = _lenient_feed(text.encode("utf-8", "replace"), url, f"{media}; charset=utf-8", limit)
    return FeedResult(entries, f"{problem}; read leniently: {len(entries)} entries")


LENIENT_FEED_MAX = 2_000_000
_FEED_ROOTS = {"rss", "RDF", "feed", "channel"}
_ATOM = "http://www.w3.org/2005/Atom"
_DATE_FIELDS = ("pubDate", "published", "updated", "date", "issued", "modified")


# a field of an entry (title, summary, content) keeps its text up to these; the rest is dropped
FIELD_MAX_CHARS = 100_000
ENTRY_MAX_ELEMENTS = 10_000


class _Stopped(Exception):
    def __init__(self, why: str, entries: list[Candidate]):
        self.why, self.entries = why, entries


class _NotWellFormed(_Stopped):
    """The XML is broken here; the lenient parser may still read it."""


class _TooBig(_Stopped):
    """Past a cap: no parser is to read further."""


def _text(el: Element) -> str:
    parts: list[str] = []
    n = 0
    for t in el.itertext():
        parts.append(t)
        n += len(t)
        if n >= FIELD_MAX_CHARS:
            break
    return "".join(parts)[:FIELD_MAX_CHARS].strip()


def _stream_feed(tree: PrunedTree, url: str, limit: int) -> list[Candidate]:
    out: list[Candidate] = []
    item_depth = -1  # depth of the <item>/<entry> being read, -1 outside one
    kept = 0  # elements inside the entry's fields kept for their text
    cur: dict[str, str] = {}
    root = None
    try:
        for event, el, depth in tree:
            name = _local(el.tag)
            if event == "start":
                if root is None:
                    root = name
                    if name not in _FEED_ROOTS:
                        raise DiscoveryError(f"{url} is not an RSS or Atom feed (root element <{name}>)")
                if item_depth < 0 and name in ("item", "entry"):
                    item_depth, cur, kept = depth, {}, 0
                continue
            if item_depth < 0:
                continue
            if depth > item_depth + 1:  # inside a field (Atom's xhtml content): its text counts
                if kept < ENTRY_MAX_ELEMENTS:
                    kept += 1
                    tree.keep()
                continue
            if depth == item_depth + 1:  # a direct child of the entry
                text = _text(el)
                if name == "link":
                    href = el.get("href")
                    if href is not None or _ns(el.tag) == _ATOM:
                        if el.get("rel", "alternate") == "alternate" and href and "link" not in cur:
                            cur["link"] = href.strip()
                    elif text:
                        cur.setdefault("link", text)
                elif name == "guid" and text and el.get("isPermaLink", "true") != "false":
                    cur.setdefault("guid", text)
                elif name == "title":
                    cur.setdefault("title", text)
                elif name in ("description", "summary", "encoded", "content"):
                    cur.setdefault("summary", text)
                elif name in _DATE_FIELDS:
                    cur.setdefault("published", text)
                continue
            item_depth = -1  # the entry itself ended
            canon = canonicalize(cur.get("link") or cur.get("guid", ""), url)
            if canon is not None:
                out.append(Candidate(canon, url, "feed", title=_safe_plain(cur.get("title", "")),
                                     summary=_safe_plain(cur.get("summary", "")),
                                     published=cur.get("published", "")))
                if len(out) >= limit:
                    break
    except DefusedXmlException as e:
        raise DiscoveryError(f"feed {url} refused: {type(e).__name__} (XML entities are unsafe)") from None
    except XmlTooBig as e:
        raise _TooBig(str(e), out) from None
    except SyntaxError as e:  # ElementTree.ParseError: not well-formed
        raise _NotWellFormed(str(e), out) from None
    if root is None:
        raise _NotWellFormed("empty document", out)
    return out


def _lenient_feed(body: bytes, url: str, content_type: str, limit: int) -> list[Candidate]:
    import feedparser  # here: only broken feeds need it, and it costs every process ~5 MB

    parsed = feedparser.parse(io.BytesIO(body), response_headers={"content-type": content_type or "application/xml",
                                                                  "content-location": url})
    if not parsed.get("version") and not parsed.entries:
        why = parsed.get("bozo_exception")
        raise DiscoveryError(f"{url} is not an RSS or Atom feed" + (f" ({why})" if why else ""))
    out: list[Candidate] = []
    for entry in parsed.entries[:limit]:
        link = entry.get("link") or ""
        if not link:
            for lk in entry.get("links", []):
                if lk.get("rel", "alternate") == "alternate" and lk.get("href"):
                    link = lk["href"]
                    break
        canon = canonicalize(link, url)
        if canon is None:
            continue
        out.append(Candidate(canon, url, "feed", title=_safe_plain(entry.get("title", "")),
                             summary=_safe_plain(entry.get("summary", "")),
                             published=entry.get("published", "") or entry.get("updated", "")))
    return out


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _ns(tag: str) -> str:
    return tag[1:].split("}", 1)[0] if isinstance(tag, str) and tag.startswith("{") else ""


# <loc> and <lastmod> count only in the sitemap namespace (or none): image and video
# extensions have their own <image:loc>, which must not replace the page's URL
_SITEMAP_NS = {"", "http://www.sitemaps.org/schemas/sitemap/0.9", "http://www.google.com/schemas/sitemap/0.84",
               "http://www.google.com/schemas/sitemap/0.9"}
_NEWS_NS = "http://www.google.com/schemas/sitemap-news/0.9"


def _parse_date(s: str) -> datetime | None:
    s = s.strip()
    if not s:
        return None
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def parse_sitemap(body: bytes, url: str, limit: int = 50000, max_age_days: float | None = None,
                  now: datetime | None = None, content_type: str = "",
                  max_elements: int = MAX_ELEMENTS) -> SitemapResult:
    """A sitemap, sitemap index or Google News sitemap (already gunzipped). One past the depth
    or element cap (xmlsafe.py) gives the URLs before it."""
    try:
        return _parse_sitemap(body, url, limit, max_age_days, now, content_type, max_elements)
    except DiscoveryError:
        raise
    except Exception as e:  # a parser's own failure on this document is this document's
        raise DiscoveryError(f"sitemap {url} could not be parsed: {type(e).__name__}: {e}") from None


def _parse_sitemap(body: bytes, url: str, limit: int, max_age_days: float | None, now: datetime | None,
                   content_type: str, max_elements: int) -> SitemapResult:
    result = SitemapResult()
    cutoff = None
    if max_age_days is not None:
        cutoff = (now or datetime.now(timezone.utc)) - timedelta(days=max_age_days)
    root_kind = None
    cur: dict[str, str] = {}
    try:
        for event, el, _ in PrunedTree(body, content_type, max_elements=max_elements):
            name = _local(el.tag)
            if event == "start":
                if root_kind is None:
                    root_kind = name
                    if name not in ("urlset", "sitemapindex"):
                        raise DiscoveryError(f"{url} is not a sitemap (root element <{name}>)")
                if name in ("url", "sitemap"):
                    cur = {}
                continue
            ns = _ns(el.tag)
            if (name in ("loc", "lastmod") and ns in _SITEMAP_NS) or \
                    (name in ("title", "publication_date") and ns == _NEWS_NS):
                cur[name] = (el.text or "")[:FIELD_MAX_CHARS].strip()
            elif name == "url":
                canon = canonicalize(cur.get("loc", ""), url)
                when = cur.get("publication_date") or cur.get("lastmod") or ""
                dt = _parse_date(when) if cutoff else None
                if canon and not (cutoff and dt and dt < cutoff) and len(result.urls) < limit:
                    result.urls.append(Candidate(canon, url, "sitemap", title=cur.get("title", ""), published=when))
            elif name == "sitemap":
                canon = canonicalize(cur.get("loc", ""), url)
                dt = _parse_date(cur.get("lastmod", "")) if cutoff else None
                if canon and not (cutoff and dt and dt < cutoff) and len(result.sitemaps) < limit:
                    result.sitemaps.append(canon)
    except DefusedXmlException as e:
        raise DiscoveryError(f"sitemap {url} refused: {type(e).__name__} (unsafe XML)") from None
    except SyntaxError as e:  # ElementTree.ParseError
        _stopped(result, f"sitemap {url} is not well-formed XML ({e})")
    except XmlTooBig as e:
        _stopped(result, f"sitemap {url} stopped at a cap: {e}")
    if root_kind is None:
        raise DiscoveryError(f"sitemap {url} is empty")
    return result


def _stopped(result: SitemapResult, problem: str) -> None:
    """A sitemap could be read only up to some point: the URLs before it count, if there are any."""
    n = len(result.urls) + len(result.sitemaps)
    if not n:
        raise DiscoveryError(problem)
    result.problem = f"{problem}; the {n} URLs before it were used"


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
