"""Feeds read into candidates: RSS 0.9x/1.0/2.0 and Atom as a stream, broken ones leniently
with feedparser, JSON Feed 1.0/1.1 whole but bounded.

XML is read as a stream in whatever encoding it is in, with entity expansion and external
entities refused and the tree pruned as it is read (xmlsafe.py); the few broken feeds handed to
feedparser are screened for entity declarations first, in their decoded text.
"""

from __future__ import annotations

import codecs
import io
import json
import re
from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException
from lxml import etree, html

from .discover import ABSOLUTE_HTTP, FIELD_MAX_CHARS, Candidate, FeedResult, local_name, media_type, namespace
from .errors import DiscoveryError, FeedAtCap as _TooBig, FeedNotWellFormed as _NotWellFormed
from .urls import canonicalize
from .xmlsafe import HEAD_BYTES, MAX_ELEMENTS, PrunedTree, XmlTooBig, decoded_text

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
    media = media_type(content_type) or "application/xml"
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
FEED_ROOTS = {"rss", "RDF", "feed", "channel"}  # root elements of RSS 0.9x/1.0/2.0 and Atom
_ATOM = "http://www.w3.org/2005/Atom"
_DATE_FIELDS = ("pubDate", "published", "updated", "date", "issued", "modified")
# Atom (RFC 4287 4.2.7.2): a link without rel is an alternate, and the IANA IRI means the same
_ALTERNATE = frozenset({"alternate", "http://www.iana.org/assignments/relation/alternate"})
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
# elements inside an entry's fields (Atom's xhtml content) kept for their text; the rest are dropped
ENTRY_MAX_ELEMENTS = 10_000


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
    media = media_type(media or "")
    return 0 if media in _HTML_TYPES else 1 if not media else 2


def _entry_url(links: list[str], alternates: list[tuple[int, str]], guid: str, base: str) -> str | None:
    """The page an entry stands for: its RSS <link>, else its best Atom alternate, else a
    permalink <guid> (only an absolute http(s) URL: a guid is an id first, and one such as
    "12345" must not become a URL on the feed's host)."""
    choices = links + [href for _, href in sorted(alternates, key=lambda a: a[0])]
    for u in choices:
        if (canon := canonicalize(u, base)) is not None:
            return canon
    if guid and ABSOLUTE_HTTP.match(guid):
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
            name = local_name(el.tag)
            if event == "start":
                if root is None:
                    root = name
                    if name not in FEED_ROOTS:
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
                    if href is not None or namespace(el.tag) == _ATOM:
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
    return head[:1] == b"{" or media_type(content_type) in _JSON_TYPES


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
        if media_type(content_type) != "application/feed+json" or not isinstance(items, list):
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
