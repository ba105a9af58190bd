"""Turn discovery documents (feeds, sitemaps, listing and search pages) into candidate URLs.

Parsing only: fetching and archiving the documents is crawl.py's job. XML is parsed as a
stream with entity expansion and external entities refused (defusedxml over expat; the few
broken feeds handed to feedparser are screened for entity declarations first), and every
parser stops at a cap on how many items it returns.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import quote_plus, urlsplit

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse
from lxml import etree, html

from .errors import ArchiverError
from .urls import canonicalize


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


_ENTITY_DECL = re.compile(rb"<!ENTITY", re.IGNORECASE)
_TAG_RE = re.compile(r"<[^>]+>")
_WS = re.compile(r"\s+")


def _plain(s: str) -> str:
    return _WS.sub(" ", html.fromstring(f"<div>{s}</div>").text_content() if "<" in s else s).strip() if s else ""


def _safe_plain(s: str) -> str:
    try:
        return _plain(s)
    except (etree.ParserError, ValueError):
        return _WS.sub(" ", _TAG_RE.sub(" ", s)).strip()


def parse_feed(body: bytes, url: str, content_type: str = "", limit: int = 5000) -> FeedResult:
    """Entries of an RSS 0.9x/1.0/2.0 or Atom feed, at most `limit`, in document order.

    Well-formed feeds are read as a stream that stops at `limit` entries, so a feed of 100,000
    items costs what its first `limit` cost. feedparser's lenient parser (about 14 bytes of
    memory per byte of feed, and slow) is kept for small feeds that are not well-formed XML."""
    if _ENTITY_DECL.search(body[:65536]):
        raise DiscoveryError(f"feed {url} declares XML entities; refused (entity expansion is unsafe)")
    try:
        return FeedResult(_stream_feed(body, url, limit))
    except _NotWellFormed as e:
        problem = f"feed {url} is not well-formed XML ({e.why})"
        if e.entries:
            return FeedResult(e.entries, f"{problem}; the {len(e.entries)} entries before the error were used")
        if len(body) > LENIENT_FEED_MAX:
            raise DiscoveryError(f"{problem} and at {len(body)} bytes too large for the lenient parser "
                                 f"(limit {LENIENT_FEED_MAX})") from None
    if _ENTITY_DECL.search(body):
        raise DiscoveryError(f"feed {url} declares XML entities; refused (entity expansion is unsafe)")
    entries = _lenient_feed(body, url, content_type, limit)
    return FeedResult(entries, f"{problem}; read leniently: {len(entries)} entries")


LENIENT_FEED_MAX = 2_000_000
_FEED_ROOTS = {"rss", "RDF", "feed", "channel"}
_ATOM = "http://www.w3.org/2005/Atom"
_DATE_FIELDS = ("pubDate", "published", "updated", "date", "issued", "modified")


class _NotWellFormed(Exception):
    def __init__(self, why: str, entries: list[Candidate]):
        self.why, self.entries = why, entries


def _stream_feed(body: bytes, url: str, limit: int) -> list[Candidate]:
    out: list[Candidate] = []
    depth = 0
    item_depth = -1  # depth of the <item>/<entry> being read, -1 outside one
    cur: dict[str, str] = {}
    root = None
    try:
        for event, el in iterparse(io.BytesIO(body), events=("start", "end"), forbid_dtd=False,
                                   forbid_entities=True, forbid_external=True):
            name = _local(el.tag)
            if event == "start":
                depth += 1
                if root is None:
                    root = name
                    if name not in _FEED_ROOTS:
                        raise DiscoveryError(f"{url} is not an RSS or Atom feed (root element <{name}>)")
                if item_depth < 0 and name in ("item", "entry"):
                    item_depth, cur = depth, {}
                continue
            depth -= 1
            if item_depth < 0:
                continue
            if depth == item_depth:  # a direct child of the entry
                text = "".join(el.itertext()).strip()
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
            elif depth == item_depth - 1:  # the entry itself ended
                item_depth = -1
                el.clear()
                canon = canonicalize(cur.get("link") or cur.get("guid", ""), url)
                if canon is not None:
                    out.append(Candidate(canon, url, "feed", title=_safe_plain(cur.get("title", "")),
                                         summary=_safe_plain(cur.get("summary", "")),
                                         published=cur.get("published", "")))
                    if len(out) >= limit:
                        break
    except DefusedXmlException as e:
        raise DiscoveryError(f"feed {url} refused: {type(e).__name__} (XML entities are unsafe)") from None
    except SyntaxError as e:  # ElementTree.ParseError: not well-formed, or an encoding expat lacks
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
                  now: datetime | None = None) -> SitemapResult:
    """A sitemap, sitemap index or Google News sitemap (already gunzipped)."""
    result = SitemapResult()
    cutoff = None
    if max_age_days is not None:
        cutoff = (now or datetime.now(timezone.utc)) - timedelta(days=max_age_days)
    root_kind = None
    cur: dict[str, str] = {}
    try:
        for event, el in iterparse(io.BytesIO(body), events=("start", "end"), forbid_dtd=False,
                                   forbid_entities=True, forbid_external=True):
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
                cur[name] = (el.text or "").strip()
            elif name == "url":
                canon = canonicalize(cur.get("loc", ""), url)
                when = cur.get("publication_date") or cur.get("lastmod") or ""
                dt = _parse_date(when) if cutoff else None
                if canon and not (cutoff and dt and dt < cutoff) and len(result.urls) < limit:
                    result.urls.append(Candidate(canon, url, "sitemap", title=cur.get("title", ""), published=when))
                el.clear()
            elif name == "sitemap":
                canon = canonicalize(cur.get("loc", ""), url)
                dt = _parse_date(cur.get("lastmod", "")) if cutoff else None
                if canon and not (cutoff and dt and dt < cutoff) and len(result.sitemaps) < limit:
                    result.sitemaps.append(canon)
                el.clear()
    except DefusedXmlException as e:
        raise DiscoveryError(f"sitemap {url} refused: {type(e).__name__} (unsafe XML)") from None
    except etree.XMLSyntaxError as e:  # pragma: no cover - defusedxml uses expat, kept for safety
        raise DiscoveryError(f"sitemap {url} is not well-formed XML: {e}") from None
    except SyntaxError as e:  # ElementTree.ParseError
        if not result.urls and not result.sitemaps:
            raise DiscoveryError(f"sitemap {url} is not well-formed XML: {e}") from None
        result.problem = (f"sitemap {url} is not well-formed XML ({e}); the {len(result.urls) + len(result.sitemaps)}"
                          " URLs before the error were used")
    if root_kind is None:
        raise DiscoveryError(f"sitemap {url} is empty")
    return result


# Paths that are navigation, not articles.
_NOT_ARTICLE = re.compile(
    r"^/(?:$|(?:tag|tags|topic|topics|author|authors|section|sections|category|categories|page|search|"
    r"about|contact|privacy|terms|login|signin|register|subscribe|newsletter|account|static|assets|cdn-cgi|"
    r"feed|rss|video|videos|live|podcasts?|weather|help|faq|jobs|careers|advertise|shop)(?:/|$))",
    re.IGNORECASE)
_ASSET = re.compile(r"\.(?:css|js|json|xml|jpe?g|png|gif|webp|svg|ico|pdf|zip|mp[34]|woff2?|ttf)$", re.IGNORECASE)


def listing_links(body_text: str, url: str, kind: str = "page", limit: int = 2000,
                  same_site_only: bool = True) -> list[Candidate]:
    """Article-looking links on a section/listing or search-results page.

    A link counts when its anchor text reads like a headline (four words or more) and its
    path is not navigation (tags, sections, authors, pagination, assets).
    """
    try:
        root = html.document_fromstring(body_text)
    except (etree.ParserError, ValueError):
        return []
    page_host = urlsplit(url).hostname or ""
    site = ".".join(page_host.split(".")[-2:])
    seen: set[str] = set()
    out: list[Candidate] = []
    for a in root.iterfind(".//a[@href]"):
        canon = canonicalize(a.get("href", ""), url)
        if canon is None or canon == url or canon in seen:
            continue
        parts = urlsplit(canon)
        host = parts.hostname or ""
        if same_site_only and not (host == page_host or host.endswith("." + site)):
            continue
        if _NOT_ARTICLE.match(parts.path) or _ASSET.search(parts.path):
            continue
        text = _WS.sub(" ", a.text_content() or "").strip()
        if len(text.split()) < 4:
            continue
        seen.add(canon)
        out.append(Candidate(canon, url, kind, title=text))
        if len(out) >= limit:
            break
    return out


def search_urls(template: str, terms: list[str]) -> list[str]:
    """Fill a site-search template once per distinct term."""
    out: list[str] = []
    for term in terms:
        u = template.replace("{query}", quote_plus(term))
        if u not in out:
            out.append(u)
    return out
