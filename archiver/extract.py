"""Article extraction (readability-lxml) plus page metadata and the whole-page text.

The article text is readability's main-content HTML, cleaned (article.py, comments.py) and
rendered with the page-text rules, so paragraphs come out separated by blank lines; where
readability's choice is doubtful, trafilatura's text may be taken instead (second_opinion.py),
and the Extraction then names trafilatura as its extractor. Metadata comes from what pages
declare: OpenGraph/article meta tags, JSON-LD, <time>, <html lang>.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from lxml import etree, html

from . import faults
from .article import Pick, clean_text, prepare, readability_pick, rule_on
from .brokenhead import repaired
from .decode import decode_text
from .htmldoc import parse_document
from .pagetext import RENDERER_NAME, RENDERER_VERSION, render_tree
from .second_opinion import (SECOND_EXTRACTOR_NAME, SECOND_EXTRACTOR_VERSION, doubts, prefer_second,
                             second_text)

log = logging.getLogger(__name__)

# Bump whenever the clean-up after readability changes what comes out: the version is
# provenance, and `archiver verify` names it when re-derived text differs.
# 3: pages are read up to MAX_PAGE_BYTES; 4: pages with an XML declaration; 5: embedded posts
# kept, comment sections, credits and bylines dropped, linked briefing items kept, a head that
# swallows the body repaired, trafilatura's text where readability's choice is doubtful
ARTICLE_RULES_VERSION = "5"
EXTRACTOR_NAME = "readability-lxml"
try:
    _READABILITY_VERSION = version("readability-lxml")
except PackageNotFoundError:  # pragma: no cover
    _READABILITY_VERSION = "unknown"
EXTRACTOR_VERSION = f"{_READABILITY_VERSION}+archiver.{ARTICLE_RULES_VERSION}"
# a page whose body is trafilatura's (a doubtful readability choice) says so in its provenance
SECOND_EXTRACTOR_VERSION_FULL = f"{SECOND_EXTRACTOR_VERSION}+archiver.{ARTICLE_RULES_VERSION}"


# Real news pages run to ~1.5 MB; readability needs ~35 bytes of memory per byte of text-heavy
# HTML (a 19 MB page: 656 MB and 9 s), so extraction reads a page's first 3 MB. The WARC keeps
# every byte; this bounds only what is parsed.
MAX_PAGE_BYTES = 3_000_000


def page_markup(body: bytes, content_type: str | None) -> str:
    """The decoded markup extraction and rendering read. Capture and re-derivation
    (`archiver verify`) both come through here, so they read exactly the same text."""
    return decode_text(body[:MAX_PAGE_BYTES], content_type).text


@dataclass
class Extraction:
    title: str
    byline: str
    published: str
    language: str
    article_text: str  # title line, blank line, body paragraphs
    body_text: str  # body paragraphs only
    page_text: str
    extractor: str = EXTRACTOR_NAME
    extractor_version: str = EXTRACTOR_VERSION
    renderer: str = f"{RENDERER_NAME}/{RENDERER_VERSION}"


def _meta_index(root: etree._Element) -> dict[tuple[str, str], str]:
    """(attribute, value) -> the first non-empty content of a <meta> carrying it; one pass over
    the page's meta tags instead of one search of the whole tree per name asked for."""
    index: dict[tuple[str, str], str] = {}
    for el in root.iter("meta"):
        content = (el.get("content") or "").strip()
        if not content:
            continue
        for attr in ("property", "name", "itemprop"):
            value = el.get(attr)
            if value is not None:
                index.setdefault((attr, value), content)
    return index


def _meta(metas: dict[tuple[str, str], str], *names: str) -> str:
    for name in names:
        for attr in ("property", "name", "itemprop"):
            content = metas.get((attr, name))
            if content:
                return content
    return ""


def _jsonld(root: etree._Element) -> list[dict]:
    out: list[dict] = []
    for el in root.iterfind(".//script[@type='application/ld+json']"):
        try:
            data = json.loads(el.text or "")
        except ValueError:
            continue
        stack = [data]
        while stack and len(out) < 50:
            item = stack.pop()
            if isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, dict):
                out.append(item)
                if "@graph" in item:
                    stack.append(item["@graph"])
    return out


def _ld_author(items: list[dict]) -> str:
    for item in items:
        author = item.get("author")
        if isinstance(author, dict):
            author = [author]
        if isinstance(author, list):
            names = [a.get("name", "") if isinstance(a, dict) else str(a) for a in author]
            names = [n.strip() for n in names if isinstance(n, str) and n.strip()]
            if names:
                return ", ".join(names)
        elif isinstance(author, str) and author.strip():
            return author.strip()
    return ""


def _ld_date(items: list[dict]) -> str:
    for item in items:
        v = item.get("datePublished")
        if isinstance(v, str) and v.strip():
            return v.strip()
    return ""


def _clean(s: str) -> str:
    return clean_text(s)


_TITLE_SEPARATORS = re.compile(r"\s+(?:\||-|–|—|::|»|·|:)\s+")


def headline(root: etree._Element, metas: dict[tuple[str, str], str] | None = None) -> str:
    """The article's headline: the <h1> when the page title contains it, else og:title, else
    the longest part of <title> once the site name around it is split off."""
    if metas is None:
        metas = _meta_index(root)
    page_title = _clean(root.findtext(".//title") or "")
    h1 = root.find(".//h1")
    h1_text = _clean(h1.text_content()) if h1 is not None else ""
    if h1_text and h1_text in page_title:
        return h1_text
    og_title = _clean(_meta(metas, "og:title", "twitter:title"))
    if og_title:
        return og_title
    parts = [p for p in _TITLE_SEPARATORS.split(page_title) if p]
    return max(parts, key=len) if parts else h1_text


def extract(markup: str, page: bool = True) -> Extraction:
    """Extract article (and, with `page`, the whole-page text) from a decoded HTML document;
    never raises on bad HTML. The document is parsed once; readability gets the same tree."""
    try:
        root = parse_document(markup)
    except (etree.ParserError, ValueError):
        return Extraction("", "", "", "", "", "", "")
    # readability drops and rewrites nodes; everything read from `root` is read before it runs
    page_text = render_tree(root) if page else ""
    # the article is read from a repaired parse when the head swallowed the body (brokenhead.py)
    fixed = repaired(root, markup)
    if fixed is not None:
        root = fixed
    ld = _jsonld(root)
    metas = _meta_index(root)
    title = headline(root, metas)
    byline = _clean(_meta(metas, "author", "article:author", "byl", "dc.creator", "sailthru.author")) \
        or _ld_author(ld)
    if byline.startswith("http"):
        byline = _ld_author(ld)
    published = _meta(metas, "article:published_time", "datePublished", "pubdate", "publishdate",
                      "dc.date", "date", "parsely-pub-date") or _ld_date(ld)
    if not published:
        t = root.find(".//time[@datetime]")
        published = (t.get("datetime") or "").strip() if t is not None else ""
    language = (root.get("lang") or _meta(metas, "og:locale", "content-language", "language") or "").strip()
    body, extractor, extractor_version = _body(root)
    if title and body.startswith(title + "\n"):  # the headline is already the first line
        body = body[len(title):].lstrip("\n")
    article = f"{title}\n\n{body}\n" if body else (f"{title}\n" if title else "")
    return Extraction(title, byline, published, language, article, body + "\n" if body else "", page_text,
                      extractor=extractor, extractor_version=extractor_version)


def _body(root: html.HtmlElement) -> tuple[str, str, str]:
    """The article body and the extractor (name, version) whose text it is: readability's,
    or trafilatura's where readability's choice was doubtful and trafilatura's is better
    supported (second_opinion.py)."""
    prepare(root)
    try:
        pick = readability_pick(root)
    except Exception as e:  # readability raises on some degenerate documents
        log.info("readability failed: %s", e)
        pick = Pick("", 0, 0, (), 0)
    reasons = doubts(pick)
    if reasons and rule_on("second-opinion"):
        second = second_text(root)
        taken = prefer_second(pick, reasons, second)
        log.debug("doubtful choice (%s): second opinion %s", ", ".join(reasons),
                  "taken" if taken else "not taken")
        if taken:
            return second, SECOND_EXTRACTOR_NAME, SECOND_EXTRACTOR_VERSION_FULL
    return pick.text, EXTRACTOR_NAME, EXTRACTOR_VERSION


def extract_page(body: bytes, content_type: str | None) -> Extraction:
    """Decode and extract a fetched page: what an extraction worker does with each article."""
    if faults.ARMED:
        faults.reached("extract")
    return extract(page_markup(body, content_type))
