"""Article extraction (readability-lxml) plus page metadata and the whole-page text.

The article text is readability's main-content HTML rendered with the page-text rules, so
paragraphs come out separated by blank lines. Metadata comes from what pages declare:
OpenGraph/article meta tags, JSON-LD, <time>, <html lang>.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from lxml import etree, html

from . import faults
from .decode import decode_text
from .htmldoc import parse_document
from .pagetext import RENDERER_NAME, RENDERER_VERSION, render_html, render_tree

log = logging.getLogger(__name__)
# readability logs every candidate at INFO; that is noise for an archiving daemon
logging.getLogger("readability").setLevel(logging.WARNING)
logging.getLogger("readability.readability").setLevel(logging.WARNING)

# Bump whenever the clean-up after readability changes what comes out: the version is
# provenance, and `archiver verify` names it when re-derived text differs.
ARTICLE_RULES_VERSION = "4"  # 3: pages are read up to MAX_PAGE_BYTES; 4: pages with an XML declaration
EXTRACTOR_NAME = "readability-lxml"
try:
    _READABILITY_VERSION = version("readability-lxml")
except PackageNotFoundError:  # pragma: no cover
    _READABILITY_VERSION = "unknown"
EXTRACTOR_VERSION = f"{_READABILITY_VERSION}+archiver.{ARTICLE_RULES_VERSION}"


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


def _meta(root: etree._Element, *names: str) -> str:
    for name in names:
        for attr in ("property", "name", "itemprop"):
            for el in root.iterfind(f".//meta[@{attr}='{name}']"):
                content = (el.get("content") or "").strip()
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


_SPACES = re.compile(r"\s+")


def _clean(s: str) -> str:
    return _SPACES.sub(" ", s or "").strip()


_NOT_BODY = ("figure", "figcaption", "picture", "img", "aside", "nav", "form", "button", "footer", "noscript")
_LINKY = ("p", "li", "div", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "section", "span", "table")


# Short lines that are page furniture, not article text (checked only on lines < 80 chars).
_FURNITURE = re.compile(
    r"^(?:(?:photo|image|picture|credit|foto|bild)s?\s*(?::|by\b).*|image \d+ of \d+|advert(?:isement)?|"
    r"\d*\s*comments?|share(?: this(?: article| story)?)?:?|sharing is caring!?|like this:|like loading\.*|more:|"
    r"read more:?|related(?: articles| stories)?:?|tell us what you think\.*|(?:published|updated|posted)\b.{0,50}"
    r"\d{4}.*|(?:(?:whatsapp|facebook|twitter|pinterest|pint|linkedin|reddit|e-?mail|print|copy link|baixar)"
    r"\s*)+)$", re.IGNORECASE)


def _drop_furniture(text: str) -> str:
    kept = [line for line in text.split("\n") if not (len(line) < 80 and _FURNITURE.match(line.strip()))]
    out = "\n".join(kept)
    return re.sub(r"\n{3,}", "\n\n", out).strip("\n") + "\n" if out.strip() else ""


# class/id words of page furniture that readability keeps inside the article container
_FURNITURE_CLASS = re.compile(
    r"(?:^|[\s_-])(?:caption|captions|gallery|slideshow|carousel|credit|credits|share|sharing|social|"
    r"related|newsletter|promo|comments?|subscribe|signup|byline|tags?|breadcrumbs?)(?:$|[\s_-])",
    re.IGNORECASE)


def _drop_furniture_blocks(tree: etree._Element) -> None:
    """Drop captions, galleries, bylines, share bars and the like by their class or id; never
    an element holding half the text or more, since some sites name the article wrapper oddly."""
    total = len(_clean(tree.text_content())) or 1
    for el in list(tree.iter()):
        if not isinstance(el.tag, str) or el.getparent() is None:
            continue
        marks = f"{el.get('class') or ''} {el.get('id') or ''}"
        if len(marks) > 1 and _FURNITURE_CLASS.search(marks) and len(_clean(el.text_content())) < total / 2:
            el.drop_tree()


def _article_body(summary_html: str) -> str:
    """Readability's main content without what a reader skips: images and their captions,
    galleries, bylines, asides, and link lists (related stories, tags, share bars)."""
    if not summary_html.strip():
        return ""
    try:
        tree = html.fragment_fromstring(summary_html, create_parent="div")
    except (etree.ParserError, ValueError):
        return render_html(summary_html)
    _drop_furniture_blocks(tree)
    for el in list(tree.iter(*_NOT_BODY)):
        if el.getparent() is not None:
            el.drop_tree()
    for el in list(tree.iter(*_LINKY)):
        if el.getparent() is None:
            continue
        text = _clean(el.text_content())
        if not text or len(text) > 400:
            continue
        linked = sum(len(_clean(a.text_content())) for a in el.iter("a"))
        if linked / len(text) > 0.5:
            el.drop_tree()
    return _drop_furniture(render_tree(tree))


_TITLE_SEPARATORS = re.compile(r"\s+(?:\||-|–|—|::|»|·|:)\s+")


def headline(root: etree._Element) -> str:
    """The article's headline: the <h1> when the page title contains it, else og:title, else
    the longest part of <title> once the site name around it is split off."""
    page_title = _clean(root.findtext(".//title") or "")
    h1 = root.find(".//h1")
    h1_text = _clean(h1.text_content()) if h1 is not None else ""
    if h1_text and h1_text in page_title:
        return h1_text
    og_title = _clean(_meta(root, "og:title", "twitter:title"))
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
    ld = _jsonld(root)
    title = headline(root)
    byline = _clean(_meta(root, "author", "article:author", "byl", "dc.creator", "sailthru.author")) \
        or _ld_author(ld)
    if byline.startswith("http"):
        byline = _ld_author(ld)
    published = _meta(root, "article:published_time", "datePublished", "pubdate", "publishdate",
                      "dc.date", "date", "parsely-pub-date") or _ld_date(ld)
    if not published:
        t = root.find(".//time[@datetime]")
        published = (t.get("datetime") or "").strip() if t is not None else ""
    language = (root.get("lang") or _meta(root, "og:locale", "content-language", "language") or "").strip()
    # imported here: the crawling process hands extraction to workers and need not carry
    # readability and its dependencies (~15 MB)
    from readability import Document

    body = ""
    try:
        body = _article_body(Document(root).summary(html_partial=True))
    except Exception as e:  # readability raises on some degenerate documents
        log.info("readability failed: %s", e)
    body = body.strip("\n")
    if title and body.startswith(title + "\n"):  # the headline is already the first line
        body = body[len(title):].lstrip("\n")
    article = f"{title}\n\n{body}\n" if body else (f"{title}\n" if title else "")
    return Extraction(title, byline, published, language, article, body + "\n" if body else "", page_text)


def extract_page(body: bytes, content_type: str | None) -> Extraction:
    """Decode and extract a fetched page: what an extraction worker does with each article."""
    if faults.ARMED:
        faults.reached("extract")
    return extract(page_markup(body, content_type))
