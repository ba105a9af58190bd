"""Turn discovery documents (feeds, sitemaps, listing and search pages) into candidate URLs.

Parsing only: fetching and archiving the documents is sources.py's job. XML is read as a
stream in whatever encoding it is in, with entity expansion and external entities refused
and the tree pruned as it is read (xmlsafe.py); the few broken feeds handed to feedparser are
screened for entity declarations first, in their decoded text. Every parser stops at a cap on
how many items it returns, and a listing page is read up to the bytes an article's would be.
A failure of the parsers on one document is that document's DiscoveryError, with the reason.

The forms read are the ones sites publish: feeds in RSS 0.9x/1.0/2.0, Atom and JSON Feed
1.0/1.1; sitemaps as sitemaps.org XML (urlset, sitemap index, Google News), as plain text
(one URL a line) and as RSS or Atom, which sitemaps.org allows in their place. What a document
could not give (entries without <loc>, lines that are not URLs, entries past a cap) is said in
its result, so the reason reaches the document's index row.
"""

from __future__ import annotations

import codecs
import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import quote_plus, urlsplit
from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException
from lxml import etree, html

from .errors import DiscoveryError
from .extract import MAX_PAGE_BYTES
from .urls import canonicalize
from .xmlsafe import HEAD_BYTES, MAX_ELEMENTS, PrunedTree, XmlTooBig, decoded_text, detect_encoding

log = logging.getLogger(__name__)


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
    note: str | None = None  # why a sound document gave nothing (it lists nothing, or nothing recent)
    too_old: int = 0  # entries left out by max_age_days


@dataclass
class FeedResult:
    entries: list[Candidate] = field(default_factory=list)
    problem: str | None = None  # why only part of the feed could be read, or only leniently
    note: str | None = None  # why a sound feed gave nothing (it lists no entries)


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
    """Entries of an RSS 0.9x/1.0/2.0, Atom or JSON Feed 1.0/1.1 feed, at most `limit`, in
    document order.

    Well-formed feeds are read as a stream that stops at `limit` entries, so a feed of 100,000
    items costs what its first `limit` cost. feedparser's lenient parser (about 14 bytes of
    memory per byte of feed, and slow) is kept for small feeds that are not well-formed XML.
    A feed past the depth or element cap (xmlsafe.py) gives the entries before it. A JSON
    Feed is read whole, so it is refused past JSON_FEED_MAX_BYTES or JSON_FEED_MAX_VALUES."""
    try:
        return _parse_feed(body, url, content_type, limit, max_elements)
    except DiscoveryError:
        raise
    except Exception as e:  # a parser's own failure on this document is this document's
        raise DiscoveryError(f"feed {url} could not be parsed: {type(e).__name__}: {e}") from None


def _entities_refused(url: str) -> DiscoveryError:
    return DiscoveryError(f"feed {url} declares XML entities; refused (entity expansion is unsafe)")


def _media_type(content_type: str) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _parse_feed(body: bytes, url: str, content_type: str, limit: int, max_elements: int) -> FeedResult:
    if _is_json(body, content_type):
        return _json_feed(body, url, content_type, limit)
    tree = PrunedTree(body, content_type, max_elements=max_elements)
    if _ENTITY_DECL.search(decoded_text(body, tree.encoding, HEAD_BYTES)):
        raise _entities_refused(url)
    try:
        return _feed_result(url, *_stream_feed(tree, url, limit))
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
    media = _media_type(content_type) or "application/xml"
    entries = _lenient_feed(text.encode("utf-8", "replace"), url, f"{media}; charset=utf-8", limit)
    return FeedResult(entries, f"{problem}; read leniently: {len(entries)} entries")


def _feed_result(url: str, entries: list[Candidate], items: int) -> FeedResult:
    """A feed read to its end: its entries, or why it gave none."""
    if entries:
        return FeedResult(entries)
    if items:
        which = "its one entry has no" if items == 1 else f"none of its {items:,} entries has a"
        raise DiscoveryError(f"feed {url}: {which} link to read (an RSS <link>, an Atom alternate link, a "
                             "permalink <guid> or a JSON Feed url)")
    return FeedResult(note=f"feed {url} lists no entries")


LENIENT_FEED_MAX = 2_000_000
_FEED_ROOTS = {"rss", "RDF", "feed", "channel"}
_ATOM = "http://www.w3.org/2005/Atom"
_DATE_FIELDS = ("pubDate", "published", "updated", "date", "issued", "modified")
# Atom (RFC 4287 4.2.7.2): a link without rel is an alternate, and the IANA IRI means the same
_ALTERNATE = frozenset({"alternate", "http://www.iana.org/assignments/relation/alternate"})
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_ABSOLUTE_HTTP = re.compile(r"https?://[^/?#\s]", re.IGNORECASE)


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


def _alternate_rank(rel: str | None, media: str | None) -> int | None:
    """How good a page for the entry a link is: 0 an HTML alternate, 1 an alternate of no
    stated type, 2 an alternate of another type (audio, JSON...); None if not an alternate."""
    if (rel or "alternate").strip().lower() not in _ALTERNATE:
        return None
    media = _media_type(media or "")
    return 0 if media in _HTML_TYPES else 1 if not media else 2


def _entry_url(links: list[str], alternates: list[tuple[int, str]], guid: str, base: str) -> str | None:
    """The page an entry stands for: its RSS <link>, else its best Atom alternate, else a
    permalink <guid> (only an absolute http(s) URL: a guid is an id first, and one such as
    "12345" must not become a URL on the feed's host)."""
    choices = links + [href for _, href in sorted(alternates, key=lambda a: a[0])]
    for u in choices:
        if (canon := canonicalize(u, base)) is not None:
            return canon
    if guid and _ABSOLUTE_HTTP.match(guid):
        return canonicalize(guid)
    return None


def _stream_feed(tree: PrunedTree, url: str, limit: int) -> tuple[list[Candidate], int]:
    """(entries, how many <item>/<entry> elements were read)."""
    out: list[Candidate] = []
    items = 0
    item_depth = -1  # depth of the <item>/<entry> being read, -1 outside one
    kept = 0  # elements inside the entry's fields kept for their text
    cur: dict[str, str] = {}
    links: list[str] = []  # RSS <link> texts
    alternates: list[tuple[int, str]] = []  # (rank, href) of link elements with an href
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
                    item_depth, cur, kept, links, alternates = depth, {}, 0, [], []
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
                        rank = _alternate_rank(el.get("rel"), el.get("type"))
                        if href and href.strip() and rank is not None and len(alternates) < 100:
                            alternates.append((rank, href.strip()))
                    elif text and len(links) < 10:
                        links.append(text)
                elif name == "guid" and text:
                    # RSS 2.0: isPermaLink="false" says the guid is no URL of the item
                    if el.get("isPermaLink", "true").strip().lower() != "false":
                        cur.setdefault("guid", text)
                elif name == "title":
                    cur.setdefault("title", text)
                elif name in ("description", "summary", "encoded", "content"):
                    cur.setdefault("summary", text)
                elif name in _DATE_FIELDS:
                    cur.setdefault("published", text)
                continue
            item_depth = -1  # the entry itself ended
            items += 1
            canon = _entry_url(links, alternates, cur.get("guid", ""), url)
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
    return out, items


def _lenient_feed(body: bytes, url: str, content_type: str, limit: int) -> list[Candidate]:
    import feedparser  # here: only broken feeds need it, and it costs every process ~5 MB

    parsed = feedparser.parse(io.BytesIO(body), response_headers={"content-type": content_type or "application/xml",
                                                                  "content-location": url})
    if not parsed.get("version") and not parsed.entries:
        why = parsed.get("bozo_exception")
        raise DiscoveryError(f"{url} is not an RSS or Atom feed" + (f" ({why})" if why else ""))
    out: list[Candidate] = []
    for entry in parsed.entries[:limit]:
        # feedparser gives every link a type (text/html when none is stated), and `link` is
        # the RSS <link>, else the first HTML alternate, else a permalink guid
        alternates = [(rank, lk["href"]) for lk in entry.get("links", [])
                      if lk.get("href") and (rank := _alternate_rank(lk.get("rel"), lk.get("type"))) is not None]
        link = entry.get("link") or ""
        canon = _entry_url([link] if link else [], alternates, "", url)
        if canon is None:
            continue
        out.append(Candidate(canon, url, "feed", title=_safe_plain(entry.get("title", "")),
                             summary=_safe_plain(entry.get("summary", "")),
                             published=entry.get("published", "") or entry.get("updated", "")))
    return out


# JSON Feed (jsonfeed.org): read whole with the json module, so the document is bounded before
# it is parsed: its bytes, and the values it can hold (each costs a Python object, ~60 bytes
# for an empty one; 400,000 of them ~25 MB). A feed of 5,000 items needs far fewer.
JSON_FEED_MAX_BYTES = 5_000_000
JSON_FEED_MAX_VALUES = 400_000
_JSON_TYPES = frozenset({"application/feed+json", "application/json"})
_JSON_FEED_VERSIONS = frozenset({"https://jsonfeed.org/version/1", "https://jsonfeed.org/version/1.1"})


def _is_json(body: bytes, content_type: str) -> bool:
    """A JSON document, by its first character ('{'), else by its media type; never one that
    starts like XML, whatever its label says."""
    head = body[:1024].removeprefix(codecs.BOM_UTF8).lstrip()
    if head[:1] in (b"<", b""):
        return False
    return head[:1] == b"{" or _media_type(content_type) in _JSON_TYPES


def _json_str(item: dict, key: str) -> str:
    v = item.get(key)
    return v[:FIELD_MAX_CHARS].strip() if isinstance(v, str) else ""


def _json_feed(body: bytes, url: str, content_type: str, limit: int) -> FeedResult:
    if len(body) > JSON_FEED_MAX_BYTES:
        raise DiscoveryError(f"JSON feed {url} is {len(body):,} bytes, over the {JSON_FEED_MAX_BYTES:,} "
                             "a JSON feed is read up to")
    text = body.decode(json.detect_encoding(body), errors="replace").removeprefix("\ufeff")
    # every value but the first follows one of these, outside strings or in them: an upper bound
    values = 1 + sum(text.count(c) for c in ",:[{")
    if values > JSON_FEED_MAX_VALUES:
        raise DiscoveryError(f"JSON feed {url} may hold up to {values:,} values, over the "
                             f"{JSON_FEED_MAX_VALUES:,} a JSON feed is read with")
    try:
        doc = json.loads(text)
    except RecursionError:
        raise DiscoveryError(f"JSON feed {url} is nested too deep to read") from None
    except ValueError as e:
        raise DiscoveryError(f"feed {url} is not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise DiscoveryError(f"feed {url} is JSON but not a JSON Feed (its top level is a {type(doc).__name__}, "
                             "not an object)")
    version = doc.get("version")
    items = doc.get("items")
    known = isinstance(version, str) and version.strip().rstrip("/").replace("http:", "https:", 1) in \
        _JSON_FEED_VERSIONS
    problem = None
    if not known:
        if _media_type(content_type) != "application/feed+json" or not isinstance(items, list):
            raise DiscoveryError(f"feed {url} is JSON but not a JSON Feed (version {version!r}, not "
                                 "https://jsonfeed.org/version/1 or /1.1)")
        problem = f"JSON feed {url} names version {version!r}, not 1 or 1.1; read as 1.1"
    if not isinstance(items, list):
        raise DiscoveryError(f"JSON feed {url} has no \"items\" list (got {type(items).__name__})")
    out: list[Candidate] = []
    for item in items:
        if len(out) >= limit:
            break
        if not isinstance(item, dict):
            continue
        # url is the item's own page; external_url the page it is about, for link posts
        canon = next((c for key in ("url", "external_url")
                      if (c := canonicalize(_json_str(item, key), url)) is not None), None)
        if canon is None:
            continue
        summary = _json_str(item, "summary") or _json_str(item, "content_text") or _json_str(item, "content_html")
        out.append(Candidate(canon, url, "feed", title=_safe_plain(_json_str(item, "title")),
                             summary=_safe_plain(summary),
                             published=_json_str(item, "date_published") or _json_str(item, "date_modified")))
    result = _feed_result(url, out, len(items))
    result.problem = problem
    return result


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
                  max_elements: int = MAX_ELEMENTS, truncated: bool = False) -> SitemapResult:
    """A sitemap (already gunzipped) in any form sitemaps.org allows: XML (urlset, sitemap
    index, Google News), plain text with one URL a line, or an RSS/Atom feed. XML past the
    depth or element cap (xmlsafe.py) gives the URLs before it. `truncated`: the body was cut
    at the fetch's cap, so the last line of a text sitemap may be cut too."""
    try:
        xml = _starts_like_xml(body, content_type)
        if xml is None:
            raise DiscoveryError(f"sitemap {url} is empty")
        if not xml:
            return _text_sitemap(body, url, limit, content_type, truncated)
        try:
            return _parse_sitemap(body, url, limit, max_age_days, now, content_type, max_elements)
        except _FeedAsSitemap:
            feed = parse_feed(body, url, content_type, limit=limit, max_elements=max_elements)
            for c in feed.entries:
                c.via_kind = "sitemap"
            return SitemapResult(feed.entries, problem=feed.problem, note=feed.note)
    except DiscoveryError:
        raise
    except Exception as e:  # a parser's own failure on this document is this document's
        raise DiscoveryError(f"sitemap {url} could not be parsed: {type(e).__name__}: {e}") from None


class _FeedAsSitemap(Exception):
    """The sitemap is an RSS or Atom feed (sitemaps.org accepts both in a sitemap's place)."""


def _starts_like_xml(body: bytes, content_type: str) -> bool | None:
    """Whether a document's first character is '<' (None: it has none but whitespace)."""
    head = decoded_text(body, detect_encoding(body, content_type), 1024).lstrip("\ufeff \t\r\n")
    return head.startswith("<") if head else None


@dataclass
class _Tally:
    """What a sitemap's entries could not give, for the reason on its row."""

    entry: str = "url"  # <url> or <sitemap>, as the document has them
    no_loc: int = 0  # neither a <loc> nor text of their own
    bare: int = 0  # no <loc>: their own text was read as the URL
    several: int = 0  # more than one <loc>: each was read
    not_http: int = 0  # <loc>s that are not http(s) URLs
    too_old: int = 0  # left out by max_age_days
    over: int = 0  # past the limit

    def findings(self, limit: int) -> list[str]:
        one, many = f"<{self.entry}> entry", f"<{self.entry}> entries"
        out = []
        if self.bare:
            out.append(f"{_count(self.bare, one, many)} without <loc>: the entry's own text was read as the URL")
        if self.no_loc:
            out.append(f"{_count(self.no_loc, one, many)} without <loc>, left out")
        if self.several:
            out.append(f"{_count(self.several, one, many)} with more than one <loc>, each read")
        if self.not_http:
            out.append(f"{_count(self.not_http, '<loc>', '<loc>s')} not an http(s) URL, left out")
        if self.over:
            out.append(f"{_count(self.over, 'URL', 'URLs')} past the first {limit:,}, left out (the sitemaps.org "
                       "limit)")
        return out


def _count(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def _parse_sitemap(body: bytes, url: str, limit: int, max_age_days: float | None, now: datetime | None,
                   content_type: str, max_elements: int) -> SitemapResult:
    result = SitemapResult()
    t = _Tally()
    cutoff = None
    if max_age_days is not None:
        cutoff = (now or datetime.now(timezone.utc)) - timedelta(days=max_age_days)
    root_kind = None
    cur: dict[str, str] = {}
    locs: list[str] = []
    stopped = None
    try:
        for event, el, depth in PrunedTree(body, content_type, max_elements=max_elements):
            name = _local(el.tag)
            if event == "start":
                if root_kind is None:
                    root_kind = name
                    if name in _FEED_ROOTS:
                        raise _FeedAsSitemap()
                    if name not in ("urlset", "sitemapindex"):
                        raise DiscoveryError(f"{url} is not a sitemap (root element <{name}>)")
                if depth == 2 and name in ("url", "sitemap"):
                    cur, locs = {}, []
                continue
            ns = _ns(el.tag)
            if depth == 3 and name == "loc" and ns in _SITEMAP_NS:
                if len(locs) < 100:
                    locs.append((el.text or "")[:FIELD_MAX_CHARS].strip())
            elif (depth == 3 and name == "lastmod" and ns in _SITEMAP_NS) or \
                    (name in ("title", "publication_date") and ns == _NEWS_NS):
                cur[name] = (el.text or "")[:FIELD_MAX_CHARS].strip()
            elif depth == 2 and name in ("url", "sitemap"):
                _entry(result, t, name, [u for u in locs if u], (el.text or "")[:FIELD_MAX_CHARS].strip(), cur,
                       url, cutoff, limit)
    except DefusedXmlException as e:
        raise DiscoveryError(f"sitemap {url} refused: {type(e).__name__} (unsafe XML)") from None
    except SyntaxError as e:  # ElementTree.ParseError
        stopped = f"sitemap {url} is not well-formed XML ({e})"
    except XmlTooBig as e:
        stopped = f"sitemap {url} stopped at a cap: {e}"
    if root_kind is None and stopped is None:
        raise DiscoveryError(f"sitemap {url} is empty")
    result.too_old = t.too_old
    n = len(result.urls) + len(result.sitemaps)
    findings = t.findings(limit)
    days = f"{max_age_days:g} days (discover.max_age_days)" if max_age_days is not None else ""
    old = f"{_count(t.too_old, 'entry', 'entries')} older than {days}, left out" if t.too_old else ""
    if stopped is not None:
        if not n:
            raise DiscoveryError("; ".join([stopped, *findings]))
        result.problem = "; ".join([f"{stopped}; the {n} URLs before it were used", *findings])
    elif not n:
        if findings:
            raise DiscoveryError(f"sitemap {url} gave no URLs: " + "; ".join(findings + ([old] if old else [])))
        if old:
            result.note = (f"sitemap {url}: its {_count(t.too_old, 'entry is', 'entries are')} older than "
                           f"{days}")
        else:
            result.note = f"sitemap {url} lists no " + ("sitemaps" if root_kind == "sitemapindex" else "URLs")
    elif findings:
        result.problem = f"sitemap {url}: " + "; ".join(findings)
    return result


def _entry(result: SitemapResult, t: _Tally, name: str, locs: list[str], own_text: str, cur: dict[str, str],
           base: str, cutoff: datetime | None, limit: int) -> None:
    """One <url> or <sitemap> entry: its URLs into the result, or what kept them out into the tally."""
    t.entry = name
    if not locs:
        if not own_text:
            t.no_loc += 1
            return
        locs = [own_text]  # <sitemap>https://...</sitemap>: a common generator's mistake
        t.bare += 1
    elif len(locs) > 1:
        t.several += 1
    when = cur.get("publication_date") or cur.get("lastmod") or ""
    dt = _parse_date(when) if cutoff else None
    if cutoff and dt and dt < cutoff:
        t.too_old += 1
        return
    for loc in locs:
        canon = canonicalize(loc, base)
        if canon is None:
            t.not_http += 1
        elif name == "sitemap":
            if len(result.sitemaps) < limit:
                result.sitemaps.append(canon)
            else:
                t.over += 1
        elif len(result.urls) < limit:
            result.urls.append(Candidate(canon, base, "sitemap", title=cur.get("title", ""), published=when))
        else:
            t.over += 1


# sitemaps.org: a sitemap holds at most 50,000 URLs and 50 MiB (52,428,800 bytes) uncompressed
SITEMAP_MAX_BYTES = 52_428_800
_LINE_MAX_CHARS = 16_384  # a longer line is no URL: it is skipped as it is read, not gathered
_LINE_BREAK = re.compile(r"\r\n?|\n")
_ASCII_SPACE = re.compile(r"\s")


def _text_lines(data: bytes, codec: str, last_is_whole: bool) -> Iterator[str]:
    """The lines of a text document, decoded a piece at a time; a line over _LINE_MAX_CHARS
    comes out as its first _LINE_MAX_CHARS characters."""
    dec = codecs.getincrementaldecoder(codec)(errors="replace")
    rest = ""
    overlong = False
    for i in range(0, len(data) + 1, _PIECE):
        final = i + _PIECE > len(data)
        parts = _LINE_BREAK.split(rest + dec.decode(data[i:i + _PIECE], final))
        rest = parts.pop()
        for p in parts:
            if not overlong:
                yield p
            overlong = False
        if len(rest) > _LINE_MAX_CHARS:
            if not overlong:
                yield rest[:_LINE_MAX_CHARS]
            rest, overlong = "", True
        if final:
            break
    if rest and last_is_whole and not overlong:
        yield rest


def _text_sitemap(body: bytes, url: str, limit: int, content_type: str, truncated: bool) -> SitemapResult:
    """A sitemap as plain text (sitemaps.org): one absolute http(s) URL a line, in UTF-8 (a BOM
    or a charset is honoured); blank lines and the whitespace around a URL do not count."""
    result = SitemapResult()
    cut = truncated or len(body) > SITEMAP_MAX_BYTES
    data = body[:SITEMAP_MAX_BYTES]
    other = 0
    first_other = ""
    over = 0
    codec = detect_encoding(data, content_type).codec
    for i, line in enumerate(_text_lines(data, codec, last_is_whole=not cut)):
        s = (line.lstrip("\ufeff") if i == 0 else line).strip()
        if not s:
            continue
        canon = canonicalize(s) if _ABSOLUTE_HTTP.match(s) and not _ASCII_SPACE.search(s) else None
        if canon is None:
            other += 1
            first_other = first_other or s[:80]
        elif len(result.urls) < limit:
            result.urls.append(Candidate(canon, url, "sitemap"))
        else:
            over += 1
    findings = []
    if other:
        findings.append(f"{_count(other, 'line', 'lines')} not an http(s) URL, left out (the first: {first_other!r})")
    if over:
        findings.append(f"{_count(over, 'URL', 'URLs')} past the first {limit:,}, left out (the sitemaps.org limit)")
    if cut:
        findings.append(f"the document was cut at {len(data):,} bytes (an unfinished last line is not read)")
    if not result.urls:
        text_like = _media_type(content_type) == "text/plain" or urlsplit(url).path.lower().endswith((".txt",
                                                                                                       ".txt.gz"))
        if text_like:
            raise DiscoveryError(f"text sitemap {url} lists no http(s) URLs: " + "; ".join(findings))
        raise DiscoveryError(f"sitemap {url} is neither XML nor a list of URLs (it starts {first_other!r})")
    if findings:
        result.problem = f"text sitemap {url}: " + "; ".join(findings)
    return result


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
