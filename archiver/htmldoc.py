"""Parsing a decoded HTML document into an lxml tree: the one place every reader of pages
(extraction, page text, replay, listing pages) parses from."""

from __future__ import annotations

import re

from lxml import html

# XHTML pages and many CMSs start with one; lxml refuses a str that carries an encoding
# declaration, and the text is already decoded by the charset rules (decode.py), so the
# declaration has nothing left to say
_XML_DECLARATION = re.compile(r"\A\s*<\?xml[^>]*\?>", re.IGNORECASE)


def parse_document(markup: str) -> html.HtmlElement:
    """The document's root element; raises lxml's ParserError/ValueError on what is not HTML."""
    if markup[:64].lstrip()[:5].lower() == "<?xml":
        markup = _XML_DECLARATION.sub("", markup, count=1)
    return html.document_fromstring(markup)
