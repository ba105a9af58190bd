"""Pages whose <head> swallows the body: an unclosed <title>, <script>, <style> or comment.

HTML parsers (lxml's as a browser's) read everything after `<title>` as title text until
`</title>`, and likewise for the other raw-text elements and for `<!--`; one missing closer
in the head and the whole story is title text or a script, so the article comes out empty.
When the parsed body is empty but the markup has a `<body` tag, the element left open before
it is closed right there and the page parsed again, for the article only (the whole-page text
keeps what the parser made of the page).
"""

from __future__ import annotations

import re

from lxml import etree, html

from .htmldoc import parse_document

# what the head may leave open, and what closes it
_OPEN_CLOSE = (("<title", "</title>"), ("<script", "</script>"), ("<style", "</style>"),
               ("<textarea", "</textarea>"), ("<noscript", "</noscript>"), ("<!--", "-->"))
_BODY_TAG = re.compile(r"<body[\s>]", re.IGNORECASE)


def _body_is_empty(root: html.HtmlElement) -> bool:
    body = root.find("body")
    return body is None or (len(body) == 0 and not (body.text or "").strip())


def repaired(root: html.HtmlElement, markup: str) -> html.HtmlElement | None:
    """A re-parse of `markup` with the head's unclosed element closed before `<body>`, when the
    body of `root` came out empty because of one; None when there is nothing to repair."""
    if not _body_is_empty(root):
        return None
    found = _BODY_TAG.search(markup)
    if found is None:
        return None
    head = markup[:found.start()].lower()
    # "</title" without its ">": a closer may carry spaces before it
    opened = [(head.rfind(opener), closer) for opener, closer in _OPEN_CLOSE
              if head.rfind(opener) > head.rfind(closer if opener == "<!--" else closer[:-1])]
    if not opened:
        return None
    # the innermost (last opened) closes first
    closers = "".join(closer for _, closer in sorted(opened, reverse=True))
    try:
        fixed = parse_document(markup[:found.start()] + closers + markup[found.start():])
    except (etree.ParserError, ValueError):
        return None
    return None if _body_is_empty(fixed) else fixed
