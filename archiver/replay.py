"""Replay archived responses from their WARC records, rewritten so nothing leaves the archive.

Every URL a page names (links, images, scripts, stylesheets, frames, forms, CSS `url()`,
`srcset`, meta refresh) is rewritten to `/web/<timestamp>/<absolute URL>` on the archive's
own server, which answers with the capture of that URL nearest in time or with a "not in the
archive" page — never by fetching it. The Content-Security-Policy sent with every replayed
response is the second wall: only the archive's origin may be contacted, and the `sandbox`
directive puts the page in an opaque origin, so its scripts cannot reach the browse UI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import IO
from urllib.parse import urljoin, urlsplit

from lxml import etree, html
from warcio.archiveiterator import ArchiveIterator

from .decode import decode_text

MAX_REPLAY_BYTES = 50 * 1024 * 1024

# attributes that hold one URL, by element
_URL_ATTRS = {
    "a": ("href",), "area": ("href",), "link": ("href",), "img": ("src", "longdesc"), "script": ("src",),
    "iframe": ("src",), "frame": ("src",), "embed": ("src",), "source": ("src",), "track": ("src",),
    "audio": ("src",), "video": ("src", "poster"), "input": ("src",), "form": ("action",),
    "button": ("formaction",), "object": ("data",), "body": ("background",), "table": ("background",),
    "td": ("background",), "blockquote": ("cite",), "q": ("cite",), "ins": ("cite",), "del": ("cite",),
}
_LAZY_ATTRS = ("data-src", "data-lazy-src", "data-original")
_CSS_URL = re.compile(r"""url\(\s*(['"]?)([^'")]+)\1\s*\)""", re.IGNORECASE)
_CSS_IMPORT = re.compile(r"""@import\s+(['"])([^'"]+)\1""", re.IGNORECASE)


@dataclass
class Archived:
    url: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    content_type: str
    body: bytes  # transfer and content encodings removed
    truncated: bool


def read_response(f: IO[bytes], max_bytes: int = MAX_REPLAY_BYTES) -> Archived:
    """The response (or revisit) record the stream is at (WarcFiles.open_record)."""
    rec = next(iter(ArchiveIterator(f)))
    if rec.rec_type not in ("response", "revisit"):
        raise ValueError(f"a {rec.rec_type} record, not a response")
    url = rec.rec_headers.get_header("WARC-Target-URI") or ""
    h = rec.http_headers
    status_line = h.get_statuscode() if h is not None else "200"
    reason = ""
    if h is not None and " " in h.statusline:
        reason = h.statusline.split(" ", 1)[1]
    headers = list(h.headers) if h is not None else []
    ctype = (h.get_header("Content-Type") if h is not None else None) or "application/octet-stream"
    body = rec.content_stream().read(max_bytes + 1)
    return Archived(url, int(status_line or 0), reason, headers, ctype, body[:max_bytes], len(body) > max_bytes)


def is_html(content_type: str) -> bool:
    ct = content_type.split(";")[0].strip().lower()
    return ct in ("text/html", "application/xhtml+xml")


def is_css(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() == "text/css"


class Rewriter:
    """Maps URLs found in an archived document to the archive's replay URLs."""

    def __init__(self, base_url: str, timestamp: str, prefix: str = "/web/"):
        self.base = base_url
        self.ts = timestamp
        self.prefix = prefix

    def url(self, value: str) -> str:
        value = value.strip()
        if not value or value.startswith("#"):
            return value
        lower = value.lower()
        if lower.startswith(("data:", "mailto:", "tel:", "about:blank")):
            return value
        if lower.startswith(("javascript:", "vbscript:")):
            return "#"
        try:
            absolute = urljoin(self.base, value)
            scheme = urlsplit(absolute).scheme
        except ValueError:
            return "#"
        if scheme not in ("http", "https"):
            return "#"
        return f"{self.prefix}{self.ts}/{absolute}"

    def srcset(self, value: str) -> str:
        out = []
        for part in value.split(","):
            bits = part.strip().split()
            if bits:
                out.append(" ".join([self.url(bits[0]), *bits[1:]]))
        return ", ".join(out)

    def css(self, text: str) -> str:
        text = _CSS_URL.sub(lambda m: f'url("{self.url(m.group(2))}")', text)
        return _CSS_IMPORT.sub(lambda m: f'@import "{self.url(m.group(2))}"', text)

    def html(self, markup: str) -> str:
        try:
            root = html.document_fromstring(markup)
        except (etree.ParserError, ValueError):
            return "<!doctype html><p>This archived document could not be parsed; see its text views.</p>"
        for base in root.iter("base"):
            href = base.get("href")
            if href:
                self.base = urljoin(self.base, href)
            base.drop_tree()
        for el in root.iter():
            if not isinstance(el.tag, str):
                continue
            for attr in _URL_ATTRS.get(el.tag, ()):
                v = el.get(attr)
                if v is not None:
                    el.set(attr, self.url(v))
            for attr in _LAZY_ATTRS:
                v = el.get(attr)
                if v is not None:
                    el.set(attr, self.url(v))
            for attr in ("srcset", "data-srcset", "imagesrcset"):
                v = el.get(attr)
                if v is not None:
                    el.set(attr, self.srcset(v))
            if el.get("integrity") is not None:  # rewritten bytes would fail the hash
                del el.attrib["integrity"]
            style = el.get("style")
            if style and "url" in style.lower():
                el.set("style", self.css(style))
            if el.tag == "style" and el.text:
                el.text = self.css(el.text)
            if el.tag == "meta" and (el.get("http-equiv") or "").lower() == "refresh":
                content = el.get("content") or ""
                m = re.match(r"\s*(\d+)\s*;\s*url\s*=\s*['\"]?([^'\"]+)", content, re.IGNORECASE)
                if m:
                    el.set("content", f"{m.group(1)}; url={self.url(m.group(2))}")
            for attr in list(el.attrib):
                # inline handlers may build URLs; they run sandboxed, but nothing should start a
                # navigation to the live web, so javascript: URLs are already neutralised above
                if attr.startswith("on") and "http" in (el.get(attr) or ""):
                    del el.attrib[attr]
        return html.tostring(root, encoding="unicode", method="html", doctype="<!DOCTYPE html>")


def replay_body(archived: Archived, timestamp: str, prefix: str = "/web/") -> tuple[bytes, str]:
    """(body, content type) to send for an archived response."""
    rw = Rewriter(archived.url, timestamp, prefix)
    if is_html(archived.content_type):
        text = decode_text(archived.body, archived.content_type).text
        return rw.html(text).encode("utf-8"), "text/html; charset=utf-8"
    if is_css(archived.content_type):
        text = decode_text(archived.body, archived.content_type).text
        return rw.css(text).encode("utf-8"), "text/css; charset=utf-8"
    return archived.body, archived.content_type


def replay_csp(origin: str) -> str:
    """The policy for replayed documents: the archive's origin only, in a sandbox (opaque
    origin: scripts run but cannot touch the browse UI, its storage or its cookies)."""
    src = f"'self' {origin}"
    return (f"default-src {src} data: blob:; script-src {src} 'unsafe-inline' 'unsafe-eval' data: blob:; "
            f"style-src {src} 'unsafe-inline' data:; img-src {src} data: blob:; font-src {src} data:; "
            f"media-src {src} data: blob:; connect-src {src}; frame-src {src}; worker-src 'none'; "
            f"form-action {src}; base-uri 'none'; frame-ancestors {src}; "
            f"sandbox allow-scripts allow-forms allow-popups")
