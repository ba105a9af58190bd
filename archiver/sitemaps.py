"""Sitemaps read into candidates, in every form sitemaps.org allows: XML (urlset, sitemap index,
Google News) read as a stream (xmlsafe.py), plain text with one URL a line, and an RSS or Atom
feed in a sitemap's place (read by feeds.py).

What the entries could not give (no <loc>, a <loc> that is not http(s), entries older than
discover.max_age_days or past the sitemaps.org limit) is counted and said in the result.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from defusedxml import DefusedXmlException

from .discover import ABSOLUTE_HTTP, FIELD_MAX_CHARS, Candidate, SitemapResult, local_name, media_type, namespace
from .errors import DiscoveryError, FeedAsSitemap as _FeedAsSitemap
from .feeds import FEED_ROOTS, parse_feed
from .urls import canonicalize
from .xmlsafe import MAX_ELEMENTS, PrunedTree, XmlTooBig, decoded_text, detect_encoding

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
            name = local_name(el.tag)
            if event == "start":
                if root_kind is None:
                    root_kind = name
                    if name in FEED_ROOTS:
                        raise _FeedAsSitemap()
                    if name not in ("urlset", "sitemapindex"):
                        raise DiscoveryError(f"{url} is not a sitemap (root element <{name}>)")
                if depth == 2 and name in ("url", "sitemap"):
                    cur, locs = {}, []
                continue
            ns = namespace(el.tag)
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
_PIECE = 65536  # decoded a piece at a time


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
        canon = canonicalize(s) if ABSOLUTE_HTTP.match(s) and not _ASCII_SPACE.search(s) else None
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
        text_like = media_type(content_type) == "text/plain" or urlsplit(url).path.lower().endswith((".txt",
                                                                                                       ".txt.gz"))
        if text_like:
            raise DiscoveryError(f"text sitemap {url} lists no http(s) URLs: " + "; ".join(findings))
        raise DiscoveryError(f"sitemap {url} is neither XML nor a list of URLs (it starts {first_other!r})")
    if findings:
        result.problem = f"text sitemap {url}: " + "; ".join(findings)
    return result
