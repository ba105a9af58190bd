"""From stored bytes to text: bounded content decoding and charset detection.

Content decoding is capped (`max_out` bytes) so a gzip bomb costs one truncated decode, not
the process. Charset detection follows the WHATWG order closely enough for news pages:
BOM, then the HTTP header, then a <meta> prescan, then UTF-8 if the bytes are valid UTF-8,
else windows-1252. Only the WHATWG standard's labels count (see charsets.py): latin-1/ascii
mean windows-1252, and names of codecs that are not text encodings are ignored.
"""

from __future__ import annotations

import codecs
import re
import zlib
from dataclasses import dataclass

from .charsets import REPLACEMENT, USER_DEFINED, codec_for, decode

try:  # a dependency; brotli >= 1.2 is needed for its output cap (a brotli bomb is otherwise unbounded)
    import brotli  # type: ignore
except ImportError:  # pragma: no cover - an install without it leaves br bodies undecoded
    brotli = None


class ContentDecoder:
    """Incremental Content-Encoding decoder with an output cap."""

    def __init__(self, encoding: str, max_out: int):
        self.encoding = (encoding or "identity").strip().lower()
        self.max_out = max_out
        self.out = bytearray()
        self.truncated = False
        self.error: str | None = None
        self._first = True
        if self.encoding in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self.encoding == "deflate":
            self._z = zlib.decompressobj()
        elif self.encoding == "br" and brotli is not None:
            self._z = brotli.Decompressor()
        elif self.encoding in ("identity", ""):
            self._z = None
        else:
            self._z = None
            self.error = f"unsupported Content-Encoding {self.encoding!r}"

    @property
    def done(self) -> bool:
        return self.truncated or self.error is not None

    def feed(self, data: bytes) -> None:
        if self.done or not data:
            return
        room = self.max_out - len(self.out)
        try:
            if self._z is None:
                chunk = data
            elif self.encoding == "br":
                chunk = self._z.process(data, output_buffer_limit=room)
                if not self._z.can_accept_more_data():  # output beyond the cap is waiting
                    self.truncated = True
            else:
                if self.encoding == "deflate" and self._first:
                    # some servers send raw deflate without the zlib header
                    self._first = False
                    try:
                        chunk = self._z.decompress(data, room)
                    except zlib.error:
                        self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                        chunk = self._z.decompress(data, room)
                else:
                    chunk = self._z.decompress(data, room)
                if self._z.unconsumed_tail:
                    self.truncated = True
        except Exception as e:  # zlib.error, brotli.error
            self.error = f"{self.encoding} data is corrupt: {e}"
            return
        if len(chunk) > room:
            chunk = chunk[:room]
            self.truncated = True
        self.out += chunk


def decode_content(data: bytes, encoding: str, max_out: int) -> tuple[bytes, bool, str | None]:
    """One-shot: (decoded bytes, truncated?, error)."""
    d = ContentDecoder(encoding, max_out)
    d.feed(data)
    return bytes(d.out), d.truncated, d.error



_HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([\w.:-]+)", re.IGNORECASE)


def normalize_charset(label: str | None) -> str | None:
    """The Python codec for a charset label, if it names a text encoding of the WHATWG
    standard that Python can decode as such; None otherwise (unknown labels, rot13, base64...)."""
    codec = codec_for(label)
    return None if codec in (REPLACEMENT, USER_DEFINED) else codec


@dataclass(frozen=True)
class DecodedText:
    text: str
    charset: str
    source: str  # where the charset came from: bom, header, meta, utf8-valid, fallback


def sniff_charset(body: bytes, content_type: str | None) -> tuple[str, str]:
    """(codec, source) in the WHATWG order; the codec may be charsets.REPLACEMENT or
    USER_DEFINED, so decode with `charsets.decode`. A label that is not a text encoding is
    skipped, falling through to the next source, as browsers do."""
    if body.startswith(codecs.BOM_UTF8):
        return "utf-8", "bom"
    if body.startswith(codecs.BOM_UTF16_LE):
        return "utf-16-le", "bom"
    if body.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be", "bom"
    m = _HEADER_CHARSET.search(content_type or "")
    if m and (cs := codec_for(m.group(1))):
        return cs, "header"
    m2 = _META_CHARSET.search(body[:4096])
    if m2 and (cs := codec_for(m2.group(1).decode("ascii", "replace"))):
        # a <meta> readable as ASCII cannot be UTF-16; the standard reads such pages as UTF-8
        if cs.startswith("utf-16"):
            cs = "utf-8"
        elif cs == USER_DEFINED:
            cs = "cp1252"
        return cs, "meta"
    try:
        body.decode("utf-8")
        return "utf-8", "utf8-valid"
    except UnicodeDecodeError as e:
        if e.start > len(body) - 4:  # a truncated body may end mid-character
            return "utf-8", "utf8-valid"
    return "cp1252", "fallback"


def decode_text(body: bytes, content_type: str | None) -> DecodedText:
    """Text of an HTML/XML body; undecodable bytes become U+FFFD, never an exception."""
    charset, source = sniff_charset(body, content_type)
    if source == "bom":
        body = body[3:] if charset == "utf-8" else body[2:]
    return DecodedText(decode(body, charset), charset, source)
