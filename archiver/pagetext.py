"""Whole-page text rendering, in the style of the seed dumps.

Rules (each has a test in tests/test_pagetext.py):

1. ``script``, ``style``, ``noscript``, ``template``, ``head`` content, ``svg``, ``iframe``,
   form controls and hidden elements (``hidden`` attribute, ``aria-hidden="true"``,
   inline ``display:none`` / ``visibility:hidden``) are dropped.
2. Text inside block elements (div, section, header, nav, table rows, ...) goes on its own line.
3. Paragraphs, headings, block quotes, pre, tables, figures and figure captions are separated
   from what surrounds them by one blank line.
4. List items are lines starting with ``  • `` (unordered) or ``  1. `` (ordered, numbered from
   ``start``); each nesting level adds two spaces. Further lines inside an item are indented
   to the item's text.
5. Image alt text and figure captions stand on their own lines.
6. Runs of whitespace (NBSP included) collapse to one space; lines are stripped; runs of blank
   lines collapse to one; no URLs are printed (links render as their text).
7. Output is Unicode NFC with ``\\n`` line ends and exactly one trailing newline (empty pages
   give an empty string).
"""

from __future__ import annotations

import re
import unicodedata

from lxml import etree, html

from .htmldoc import parse_document

RENDERER_NAME = "archiver-pagetext"
RENDERER_VERSION = "3"  # 2: pages are read up to extract.MAX_PAGE_BYTES; 3: pages with an XML declaration

_DROP = frozenset({"script", "style", "noscript", "template", "head", "svg", "iframe", "object", "embed",
                   "canvas", "select", "option", "textarea", "input", "button", "audio", "video", "source",
                   "track", "map", "meta", "link", "title", "base"})
_PARA = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "figure",
                   "figcaption", "hr", "dl"})
_BLOCK = frozenset({"div", "section", "article", "header", "footer", "nav", "aside", "main", "address",
                    "form", "fieldset", "legend", "details", "summary", "tr", "caption", "thead", "tbody",
                    "tfoot", "dt", "dd", "center", "hgroup", "dialog", "menu", "body", "html",
                    "ul", "ol", "picture", "time-block"}) | _PARA
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
BLANK = None


def _collapse(s: str) -> str:
    """Rule 6 on one line: runs of whitespace (what str.split() splits on, which is what a
    regex's \\s matches: NBSP and the line separators included) and zero-width spaces become
    one space, the ends stripped; a fifth of a regex's cost."""
    return " ".join(s.replace("\u200b", " ").split()) if s else ""


def _hidden(el: etree._Element) -> bool:
    if el.get("hidden") is not None or (el.get("aria-hidden") or "").lower() == "true":
        return True
    style = el.get("style")
    return bool(style and _HIDDEN_STYLE.search(style))


class _Renderer:
    def __init__(self) -> None:
        self.out: list[str | None] = []
        self.line: list[str] = []
        self.indent = ""
        self.prefix: str | None = None  # a list marker waiting for the item's first line

    def flush(self) -> None:
        text = _collapse("".join(self.line))
        self.line = []
        if text:
            if self.prefix is not None:
                self.out.append(self.prefix + text)
                self.prefix = None
            else:
                self.out.append(self.indent + text)

    def blank(self) -> None:
        self.flush()
        self.out.append(BLANK)

    def text(self, s: str | None) -> None:
        if s:
            self.line.append(s)

    def walk(self, el: etree._Element, depth: int = 0, list_base: str = "") -> None:
        tag = el.tag.lower() if isinstance(el.tag, str) else ""
        if not tag or tag in _DROP or _hidden(el) or depth > 400:
            return
        if tag == "br":
            self.flush()
            return
        if tag == "img":
            alt = _collapse(el.get("alt") or "")
            if alt:
                self.flush()
                self.line = [alt]
                self.flush()
            return
        if tag in ("ul", "ol"):
            self._list(el, ordered=(tag == "ol"), depth=depth, base=list_base)
            return
        if tag in _BLOCK:
            if tag in _PARA:
                self.blank()
            else:
                self.flush()
        elif tag in ("td", "th"):
            self.text(" ")
        self.text(el.text)
        for child in el:
            self.walk(child, depth + 1, list_base)
            self.text(child.tail)
        if tag in _BLOCK:
            if tag in _PARA:
                self.blank()
            else:
                self.flush()

    def _list(self, el: etree._Element, ordered: bool, depth: int, base: str) -> None:
        self.flush()
        saved_indent, saved_prefix = self.indent, self.prefix
        level = base + "  "  # every nesting level adds two spaces before the marker
        try:
            n = int(el.get("start") or 1)
        except ValueError:
            n = 1
        for child in el:
            ctag = child.tag.lower() if isinstance(child.tag, str) else ""
            if ctag != "li":
                if ctag:  # stray content directly in a list: keep it, at the list's level
                    self.indent = level
                    self.walk(child, depth + 1, level)
                    self.flush()
                continue
            if _hidden(child):
                continue
            marker = f"{n}. " if ordered else "• "
            n += 1
            self.flush()
            self.prefix = level + marker
            self.indent = level + " " * len(marker)
            self.text(child.text)
            for sub in child:
                self.walk(sub, depth + 2, level)
                self.text(sub.tail)
            self.flush()
            self.prefix = None
        self.indent, self.prefix = saved_indent, saved_prefix


def render_tree(root: etree._Element) -> str:
    r = _Renderer()
    body = root.find(".//body") if root.tag != "body" else root
    r.walk(body if body is not None else root)
    r.flush()
    lines: list[str] = []
    for item in r.out:
        if item is BLANK:
            if lines and lines[-1] != "":
                lines.append("")
        else:
            lines.append(item.rstrip())
    while lines and lines[-1] == "":
        lines.pop()
    text = "\n".join(lines)
    text = unicodedata.normalize("NFC", text)
    return text + "\n" if text else ""


def render_html(markup: str | bytes) -> str:
    """Render an HTML document (text or bytes) to the whole-page text format."""
    if not markup or not (markup.strip() if isinstance(markup, str) else markup.strip()):
        return ""
    try:
        root = parse_document(markup) if isinstance(markup, str) else html.document_fromstring(markup)
    except (etree.ParserError, ValueError):
        return ""
    return render_tree(root)
