"""readability-lxml's choice of a page's main content, with the same decisions at less CPU.

readability 0.9 spends most of its time on work that decides nothing about text: its cleaner
rewrites every link to strip javascript: URLs, it serialises each <div>'s children to HTML
to look for block tags, runs three substitutions over every link's text to measure it, and
formats a debug line for every element it removes. The subclass here overrides those four
methods with ones that reach the same decisions (readability is pinned in constraints.txt;
tests/test_extract_quality.py compares the texts with readability's own on its pages).
"""

from __future__ import annotations

import functools
import re

from lxml import etree, html

@functools.cache
def _cleaner():
    """readability's cleaner without its javascript pass: that pass rewrites every link to strip
    javascript: URLs and event attributes (for safe re-display of its HTML), costs a third of
    extraction's CPU and changes no text."""
    from lxml_html_clean import Cleaner

    return Cleaner(
        scripts=True, javascript=False, comments=True, style=True, links=True, meta=False,
        add_nofollow=False, page_structure=False, processing_instructions=True, embedded=False,
        frames=False, forms=False, annoying_tags=False, remove_tags=None, remove_unknown_tags=False,
        safe_attrs_only=False)

_CLASSED = etree.XPath(".//*[@class or @id]")
_BODY_TEXT = etree.XPath("string(//body)")


def _in_code(el: etree._Element) -> bool:
    """ancestor-or-self::pre | ancestor-or-self::code, without an XPath evaluation per element."""
    return el.tag in ("pre", "code") or next(el.iterancestors("pre", "code"), None) is not None


# readability's divToPElementsRe, read on tag names: "<p" in markup also starts <pre>, <param>,
# <path>, <picture>...
_BLOCK_TAG = re.compile(r"(?:blockquote|dl|div|img|ol|p|pre|table|ul)", re.IGNORECASE)
_INLINE = {"a", "b", "cite", "code", "em", "font", "i", "small", "span", "strong", "sub", "sup", "u"}


def _is_block(el: etree._Element) -> bool:
    return isinstance(el.tag, str) and _BLOCK_TAG.match(el.tag) is not None


# readability's clean() changes only runs of whitespace, tabs and newlines; other text it strips
_NEEDS_CLEANING = re.compile(r"\s{2,}|[\t\n\r\f\v]")


class _AsciiFast:
    """A case-insensitive regex of lower-case words, searched on an ASCII string by its
    case-sensitive twin on the lower-cased string: the same matches at a sixth of the cost
    (re.IGNORECASE cannot skip ahead to a branch's first letter). Any other string, or a
    pattern with capitals or escapes, goes to the regex itself."""

    def __init__(self, rx: re.Pattern[str]):
        self.rx = rx
        p = rx.pattern
        # no backslash: an escape such as \x41 names a capital in lower-case letters
        plain = p.isascii() and p == p.lower() and "\\" not in p
        self.lower = re.compile(p, rx.flags & ~re.IGNORECASE) if plain and rx.flags & re.IGNORECASE else None

    def search(self, s: str) -> re.Match[str] | None:
        if self.lower is not None and s.isascii():
            return self.lower.search(s.lower())
        return self.rx.search(s)


def summary(root: html.HtmlElement) -> tuple[str, int]:
    """readability's main content of a parsed page (an HTML fragment, '' when it found none)
    and the characters of visible text on the whole page. `root` itself is only stripped of
    hidden elements, as readability does; raises what readability raises on degenerate
    documents."""
    # imported here: the crawling process hands extraction to workers and need not carry
    # readability and its dependencies (~15 MB)
    from readability import Document
    from readability.readability import REGEXES, clean

    def text_length(el: etree._Element) -> int:
        """readability's text_length(el), without its substitutions where they change nothing."""
        text = el.text_content() or ""
        return len(clean(text)) if _NEEDS_CLEANING.search(text) else len(text.strip())

    unlikely, maybe = _AsciiFast(REGEXES["unlikelyCandidatesRe"]), _AsciiFast(REGEXES["okMaybeItsACandidateRe"])
    display_none = REGEXES["displayNoneRe"]

    class _Document(Document):
        # readability 0.9's _parse with _cleaner(); the tree is already parsed (htmldoc.py)
        def _parse(self, input):  # noqa: A002 - readability's signature
            doc = input
            self.encoding = "utf-8"
            for elem in doc.xpath("//*[@hidden]"):
                elem.drop_tree()
            for elem in doc.xpath("//*[@style]"):
                if display_none.search(elem.get("style")):
                    elem.drop_tree()
            doc = _cleaner().clean_html(doc)
            # scripts and styles are gone now: what is left is the text a reader could see
            self.page_chars = len(" ".join(_BODY_TEXT(doc).split()))
            return doc

        # readability 0.9's measure, same numbers: its text_length runs three substitutions
        # on every link's text, which leave text without whitespace runs as it is
        def get_link_density(self, elem):
            links = sum(text_length(a) for a in elem.iterfind(".//a"))
            return float(links) / max(text_length(elem), 1)

        # readability 0.9's rewrite, same result: it serialises every <div>'s children to HTML
        # to search the markup for a block tag; the tags are looked at instead
        def transform_misused_divs_into_paragraphs(self):
            for elem in self.tags(self.html, "div"):
                if not any(_is_block(d) for d in elem.iterdescendants()):
                    elem.tag = "p"
            for elem in self.tags(self.html, "div"):
                children = list(elem)
                paragraph = None
                if elem.text and elem.text.strip():
                    p = html.fragment_fromstring("<p/>")
                    p.text = elem.text
                    elem.text = None
                    elem.insert(0, p)
                    paragraph = p
                for child in children:
                    if child.tag == "br":
                        paragraph = None
                        continue
                    if child.tag not in _INLINE or any(_is_block(d) for d in child.iter()):
                        paragraph = None
                        continue
                    if paragraph is None:
                        paragraph = html.fragment_fromstring("<p/>")
                        child.addprevious(paragraph)
                    paragraph.append(child)
                for pos, child in reversed(list(enumerate(elem))):
                    if child.tail and child.tail.strip():
                        p = html.fragment_fromstring("<p/>")
                        p.text = child.tail
                        child.tail = None
                        elem.insert(pos + 1, p)
                    if child.tag == "br":
                        child.drop_tree()

        # readability 0.9's rule, same decisions: it visits every element and formats a debug
        # line for each removal; only elements with a class or id can match, the structure
        # tests are compiled once, and the elements holding a main, article or math element
        # are found once by walking up from those (a descendant search from every unlikely
        # element read each one's whole subtree). Removing an element that holds none of
        # them leaves every other element's answer as it was.
        def remove_unlikely_candidates(self):
            holders = set()
            for found in self.html.iter("main", "article", "math"):
                if found in holders:
                    continue
                holders.add(found)
                for up in found.iterancestors():
                    if up in holders:
                        break
                    holders.add(up)
            for elem in _CLASSED(self.html):
                s = f"{elem.get('class', '')} {elem.get('id', '')}"
                if (unlikely.search(s) and not maybe.search(s) and elem.tag not in ("html", "body")
                        and elem not in holders and not _in_code(elem)):
                    elem.drop_tree()

    document = _Document(root)
    document.page_chars = 0
    chosen = document.summary(html_partial=True)
    return chosen, document.page_chars
