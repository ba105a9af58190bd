"""What a page needs to be seen: the stylesheets, scripts, images, fonts, icons and frames
its HTML names, and what its stylesheets name in turn (@import, url()).

Parsing only; fetching and archiving them is crawl.py's job. URLs are kept as the page wrote
them (resolved against the page or its <base>, fragment dropped, nothing else changed),
because replay looks them up exactly as the page asks for them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

from lxml import etree

from .htmldoc import parse_document

# link rel values whose href the page loads to render (rel is a space-separated list)
_LINK_KINDS = {"stylesheet": "stylesheet", "icon": "icon", "shortcut": "icon", "apple-touch-icon": "icon",
               "apple-touch-icon-precomposed": "icon", "mask-icon": "icon", "modulepreload": "script"}
_PRELOAD_AS = {"style": "stylesheet", "script": "script", "font": "font", "image": "image"}
# lazy-loading attributes that scripts copy into src/srcset; taken only when the value reads
# as a URL (no spaces, not a data: or javascript: value)
_LAZY_SRC = ("data-src", "data-lazy-src", "data-original", "data-lazy", "data-url", "data-hi-res-src")
_LAZY_SRCSET = ("data-srcset", "data-lazy-srcset")
_CSS_URL = re.compile(r"""url\(\s*(?:"([^"]*)"|'([^']*)'|([^)\s]*))\s*\)""", re.IGNORECASE)
_CSS_IMPORT = re.compile(r"""@import\s+(?:url\(\s*)?(?:"([^"]*)"|'([^']*)'|([^\s;)]+))""", re.IGNORECASE)
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_FONT_EXT = re.compile(r"\.(?:woff2?|ttf|otf|eot)(?:$|[?#])", re.IGNORECASE)


@dataclass(frozen=True)
class Requisite:
    url: str
    kind: str  # stylesheet | script | image | icon | font | frame | media


def resolve(value: str, base: str) -> str | None:
    """An absolute http(s) URL for a reference as written, fragment dropped; None otherwise."""
    value = (value or "").strip()
    if not value or value.startswith(("data:", "javascript:", "about:", "blob:", "#", "mailto:")):
        return None
    try:
        parts = urlsplit(urljoin(base, value))
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))


def srcset_urls(value: str) -> list[str]:
    """Every candidate of a srcset attribute (replay may pick any of them)."""
    out = []
    for candidate in (value or "").split(","):
        url = candidate.strip().split()
        if url:
            out.append(url[0])
    return out


def _looks_like_url(value: str) -> bool:
    v = value.strip()
    return bool(v) and " " not in v and not v.startswith(("data:", "javascript:", "{", "["))


def from_html(markup: str, page_url: str) -> list[Requisite]:
    """Requisites of an HTML page, in document order, each URL once."""
    try:
        root = parse_document(markup)
    except (etree.ParserError, ValueError):
        return []
    base = page_url
    b = root.find(".//base[@href]")
    if b is not None:
        base = resolve(b.get("href", ""), page_url) or page_url
    found: dict[str, Requisite] = {}

    def add(value: str | None, kind: str) -> None:
        url = resolve(value or "", base)
        if url is not None and url not in found and url != page_url:
            found[url] = Requisite(url, kind)

    for el in root.iter():
        tag = el.tag if isinstance(el.tag, str) else ""
        if tag == "link":
            rels = (el.get("rel") or "").lower().split()
            kinds = [_LINK_KINDS[r] for r in rels if r in _LINK_KINDS]
            if "preload" in rels:
                kinds += [_PRELOAD_AS[a] for a in [(el.get("as") or "").lower()] if a in _PRELOAD_AS]
            if kinds:
                add(el.get("href"), kinds[0])
            if el.get("imagesrcset"):
                for u in srcset_urls(el.get("imagesrcset", "")):
                    add(u, "image")
        elif tag == "script":
            add(el.get("src"), "script")
        elif tag in ("img", "source", "input"):
            if tag != "input" or (el.get("type") or "").lower() == "image":
                add(el.get("src"), "media" if tag == "source" and el.getparent() is not None
                    and el.getparent().tag in ("video", "audio") else "image")
            for u in srcset_urls(el.get("srcset", "")):
                add(u, "image")
            for attr in _LAZY_SRC:
                if _looks_like_url(el.get(attr, "")):
                    add(el.get(attr), "image")
            for attr in _LAZY_SRCSET:
                for u in srcset_urls(el.get(attr, "")):
                    add(u, "image")
        elif tag in ("iframe", "frame"):
            add(el.get("src"), "frame")
        elif tag in ("video", "audio"):
            add(el.get("poster"), "image")
        elif tag == "style":
            for r in from_css(el.text or "", base):
                if r.url not in found:
                    found[r.url] = r
        if tag in ("body", "table", "td", "th", "tr") and el.get("background"):
            add(el.get("background"), "image")
        style = el.get("style") if tag else None
        if style and "url(" in style:
            for r in from_css(style, base):
                if r.url not in found:
                    found[r.url] = r
    return list(found.values())


def from_css(text: str, css_url: str) -> list[Requisite]:
    """What a stylesheet (or a style attribute) loads: @import-ed sheets, fonts, images."""
    text = _CSS_COMMENT.sub("", text or "")
    found: dict[str, Requisite] = {}
    for m in _CSS_IMPORT.finditer(text):
        url = resolve(next(g for g in m.groups() if g is not None), css_url)
        if url is not None:
            found.setdefault(url, Requisite(url, "stylesheet"))
    for m in _CSS_URL.finditer(text):
        value = next((g for g in m.groups() if g is not None), "")
        url = resolve(value, css_url)
        if url is not None and url not in found:
            found[url] = Requisite(url, "font" if _FONT_EXT.search(url) else "image")
    return list(found.values())


def same_site(url: str, page_url: str) -> bool:
    """Same registrable-looking domain (the last two labels): www.x.com and cdn.x.com are."""
    a, b = urlsplit(url).hostname or "", urlsplit(page_url).hostname or ""
    if a == b:
        return True
    return a.split(".")[-2:] == b.split(".")[-2:] and "." in a and not a.replace(".", "").isdigit()
