"""XML as the discovery parsers read it: in whatever encoding it is in, with memory bounded.

expat reads UTF-8, UTF-16 and single-byte encodings only: pyexpat raises ValueError for
Shift_JIS, EUC-JP, GBK, Big5, EUC-KR and the like, and knows neither UTF-32 nor UTF-7, all of
which feeds and sitemaps are served in. So the encoding is found here (a BOM; the zero bytes
of UTF-16/32 without one; else the XML declaration or the HTTP charset, whichever reads the
bytes cleanly, the declaration first) and a document not in UTF-8 is re-encoded to UTF-8 a
piece at a time as the parser reads it, never as a second whole copy. expat is told the
bytes are UTF-8, so a declaration naming another encoding no longer counts (it is rewritten
too, for readers that look).

The tree iterparse builds is pruned as it is read: an element is dropped from its parent
when it ends unless the reader keeps it, so memory is the open path plus what the reader
keeps, and a document nested deeper than `max_depth` or longer than `max_elements` elements
is stopped with XmlTooBig. Entity declarations and external references are refused (defusedxml).
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO
from xml.etree.ElementTree import Element, TreeBuilder

from defusedxml.ElementTree import DefusedXMLParser, iterparse

from .decode import normalize_charset
from .errors import XmlTooBig

MAX_DEPTH = 256
# A full sitemap (50,000 URLs with lastmod, changefreq and priority) is 250,000 elements, a
# feed cut at its entry limit fewer. Reading an element costs 2-6 µs (defusedxml's parser is
# expat under pure-Python handlers), so the cap also holds a flood of empty ones to seconds.
MAX_ELEMENTS = 1_000_000
HEAD_BYTES = 65536  # how much of a document the encoding is checked on
_CHUNK = 65536

# encodings only a BOM or the document's own zero bytes can tell: a label claiming one of them
# on bytes that read as ASCII is wrong
_WIDE = frozenset({"utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"})
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# which of the first four bytes are zero, for a document starting with ASCII ('<' or space)
_ZEROS = {(True, True, True, False): "utf-32-be", (False, True, True, True): "utf-32-le",
          (True, False, True, False): "utf-16-be", (False, True, False, True): "utf-16-le"}
_DECLARED = re.compile(rb"""^\s*<\?xml\s[^>]*?\bencoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?([\w.:-]+)""", re.IGNORECASE)
_DECL_ENCODING = re.compile(r"""^(\s*<\?xml\s[^>]*?\bencoding\s*=\s*)(["'])[^"']*\2""")


@dataclass(frozen=True)
class XmlEncoding:
    codec: str  # a Python codec name
    source: str  # bom | zero-bytes | declaration | header | utf8-valid | fallback


def _codec(label: str | None) -> str | None:
    """The codec of a charset label, or None if it names no text encoding we read."""
    if not label:
        return None
    try:
        name = codecs.lookup(label.strip()).name
    except LookupError:
        name = None
    if name in _WIDE or name == "utf-7":
        # XML allows these; the web's label table leaves UTF-7 out (a way to smuggle script into
        # HTML) and maps UTF-16 for HTML's sake, but a feed or sitemap is data, not a page
        return name
    return normalize_charset(label)  # the WHATWG labels: rot13, base64, zlib... are not encodings


def _reads(head: bytes, codec: str) -> bool:
    """`head` decodes cleanly in `codec` (a character cut at its end is not an error)."""
    try:
        codecs.getincrementaldecoder(codec)().decode(head, False)
    except UnicodeDecodeError:
        return False
    return True


def detect_encoding(body: bytes, content_type: str | None = None) -> XmlEncoding:
    """The encoding of an XML document (XML 1.0 appendix F, then the HTTP charset)."""
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return XmlEncoding(codec, "bom")
    if len(body) >= 4 and (wide := _ZEROS.get(tuple(b == 0 for b in body[:4]))):
        return XmlEncoding(wide, "zero-bytes")
    head = body[:HEAD_BYTES]
    m = _DECLARED.match(head[:1024])
    h = _HEADER_CHARSET.search(content_type or "")
    # a server's default charset is wrong more often than the declaration the feed's own
    # software wrote, so the declaration goes first; a label the bytes contradict is passed over
    named = [(c, source) for label, source in ((m and m.group(1).decode("ascii"), "declaration"),
                                               (h and h.group(1), "header"))
             if (c := _codec(label)) is not None and c not in _WIDE]
    for codec, source in named:
        if _reads(head, codec):
            return XmlEncoding(codec, source)
    if named:
        return XmlEncoding(*named[0])
    if _reads(head, "utf-8"):
        return XmlEncoding("utf-8", "utf8-valid")
    return XmlEncoding("cp1252", "fallback")


def _utf8_declaration(text: str) -> str:
    return _DECL_ENCODING.sub(r'\1"UTF-8"', text, count=1)


class _Utf8Reader(io.RawIOBase):
    """A document's bytes re-encoded to UTF-8 as they are read; undecodable bytes become U+FFFD."""

    def __init__(self, body: bytes, codec: str):
        self._body = memoryview(body)
        self._pos = 0
        self._decoder = codecs.getincrementaldecoder(codec)(errors="replace")
        self._out = bytearray()
        self._first = True

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        if self._pos >= len(self._body) and self._decoder is None:
            return False
        piece = self._body[self._pos:self._pos + _CHUNK]
        self._pos += len(piece)
        final = self._pos >= len(self._body)
        text = self._decoder.decode(piece, final)
        if self._first and text:
            text, self._first = _utf8_declaration(text), False
        if final:
            self._decoder = None
        self._out += text.encode("utf-8", "replace")
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while len(self._out) < len(b) and self._fill():
            pass
        n = min(len(b), len(self._out))
        b[:n] = self._out[:n]
        del self._out[:n]
        return n


def utf8_stream(body: bytes, encoding: XmlEncoding) -> BinaryIO:
    """The document as UTF-8 bytes, read as a stream."""
    if encoding.codec == "utf-8":
        return io.BytesIO(body)  # shares body's buffer: no copy
    return io.BufferedReader(_Utf8Reader(body, encoding.codec), _CHUNK)


def decoded_text(body: bytes, encoding: XmlEncoding, limit: int | None = None) -> str:
    """The document (or its first `limit` bytes) as text, its declaration saying UTF-8."""
    piece = body if limit is None else body[:limit]
    text = codecs.getincrementaldecoder(encoding.codec)(errors="replace").decode(piece, limit is None)
    if encoding.codec == "utf-8":  # the other codecs with a BOM drop it themselves
        text = text.removeprefix("\ufeff")
    return _utf8_declaration(text)


class PrunedTree:
    """iterparse over a document, as (event, element, depth) with depth 1 for the root.

    When an element's "end" has been handled it is cleared and dropped from its parent,
    unless the reader called keep() meanwhile (its parent still needs its text): memory is
    the open path plus what is kept. Raises XmlTooBig past a cap, and what iterparse raises
    (ParseError, defusedxml's refusals).
    """

    def __init__(self, body: bytes, content_type: str | None = None, *, max_depth: int = MAX_DEPTH,
                 max_elements: int = MAX_ELEMENTS):
        self.encoding = detect_encoding(body, content_type)
        self._body = body
        self.max_depth, self.max_elements = max_depth, max_elements
        self._keep = False

    def keep(self) -> None:
        """Keep the element whose end is being handled in its parent."""
        self._keep = True

    def __iter__(self) -> Iterator[tuple[str, Element, int]]:
        parser = DefusedXMLParser(target=TreeBuilder(), encoding="utf-8", forbid_dtd=False,
                                  forbid_entities=True, forbid_external=True)
        path: list[Element] = []
        count = 0
        for event, el in iterparse(utf8_stream(self._body, self.encoding), ("start", "end"), parser):
            if event == "start":
                count += 1
                if len(path) >= self.max_depth:
                    raise XmlTooBig(f"elements nested more than {self.max_depth} deep")
                if count > self.max_elements:
                    raise XmlTooBig(f"more than {self.max_elements:,} elements")
                path.append(el)
                yield event, el, len(path)
                continue
            depth = len(path)
            path.pop()
            self._keep = False
            yield event, el, depth
            if not self._keep:
                el.clear()
                if path:
                    del path[-1][-1]  # an element that just ended is its parent's last child
