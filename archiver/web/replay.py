"""Replay archived responses from their WARC records, sealed so nothing leaves the archive.

Replayed bytes are served from an origin of their own (`archiver serve --replay-port`), never
the browse UI's, and three walls keep a replayed page from reaching the live web:

1. Rewriting: every URL a page names (links, images, stylesheets, frames, forms, SVG
   `href`/`xlink:href`, CSS `url()`, `srcset`, meta refresh in all its spellings, `srcdoc`
   documents) becomes `/web/<timestamp>/<absolute URL>` on the replay origin, which answers
   with the capture of that URL nearest in time or a "not in the archive" page — never by
   fetching it. `target` attributes and `<base>` go, so every link opens in place.
2. No archived script runs. The replay frame is sandboxed without `allow-scripts` and every
   replayed response carries a CSP `sandbox` directive (no tokens) and `script-src 'none'`.
   This is what stops WebRTC: no CSP directive covers RTCPeerConnection in Chromium or
   Firefox (CSP `webrtc 'block'` is unrecognized by both; `connect-src` does not apply; there
   is no Permissions-Policy feature for it), so a page that may run script can send STUN/TURN
   packets to any address. Sandbox flags are inherited by every nested frame, about:blank
   and srcdoc ones included, so no script runs at any depth; without script there is also no
   `location` assignment, `window.open` or `top.location`. The sandbox also refuses popups,
   top-level navigation, form submission and meta refresh.
3. The browser's own checks: the CSP lets a replayed page load only from the replay origin,
   and the browse UI's page around the frame allows frames only from the replay origin, so
   a navigation of the frame to anywhere else is refused by the browser even when a URL
   slipped past the rewriting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import IO
from urllib.parse import urljoin, urlsplit

from lxml import etree, html
from warcio.archiveiterator import ArchiveIterator

from ..decode import decode_text
from ..errors import TooLarge

MAX_REPLAY_BYTES = 50 * 1024 * 1024
# an HTML or CSS document larger than this is not rewritten (parsing and walking it would
# hold a worker for seconds); the replay origin answers with a notice instead
MAX_REWRITE_BYTES = 5 * 1024 * 1024
MAX_ELEMENTS = 150_000
MAX_SRCDOC_DEPTH = 3

# attributes that hold one URL, on whatever element they appear (SVG and MathML links too)
_URL_ATTRS = ("href", "xlink:href", "src", "action", "formaction", "poster", "background", "cite", "longdesc",
              "lowsrc", "dynsrc", "icon", "data-src", "data-lazy-src", "data-original")
_SRCSET_ATTRS = ("srcset", "data-srcset", "imagesrcset")
# attributes that make the browser contact a URL on their own and that a replay does without;
# `integrity` no longer matches a rewritten body, and `crossorigin` would make an element's
# load a CORS request from the sandboxed page's opaque origin, which the archive does not
# answer (without it the image, stylesheet or media loads as it would without CORS)
_DROPPED_ATTRS = ("ping", "manifest", "codebase", "archive", "classid", "target", "formtarget", "integrity",
                  "crossorigin")
_ANIMATIONS = ("set", "animate", "animatemotion", "animatetransform", "animatecolor")
_CSS_URL = re.compile(r"""url\(\s*(?:"([^"]*)"|'([^']*)'|([^'"()\s]*))\s*\)""", re.IGNORECASE)
_CSS_IMPORT = re.compile(r"""@import\s+(['"])([^'"]+)\1""", re.IGNORECASE)
_WS = " \t\n\f\r"
_DIGITS = "0123456789"
_CSS_UNSAFE = re.compile(r"""[\x00-\x20"'()<>\\]""")


def _css_safe(url: str) -> str:
    """A URL percent-encoded where it could end a CSS string or a <style> element: the
    rewritten URL comes from the archived page and is written back into its CSS."""
    return _CSS_UNSAFE.sub(lambda m: f"%{ord(m.group()):02X}", url)


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
        self.elements = 0

    def url(self, value: str) -> str:
        value = value.strip(_WS)
        if not value or value.startswith("#"):
            return value
        lower = value.lower()
        if lower.startswith(("data:", "about:blank")):
            return value  # inline data; about:blank is an empty frame of the replay itself
        try:
            absolute = urljoin(self.base, value)
            scheme = urlsplit(absolute).scheme
        except ValueError:
            return "#"
        if scheme not in ("http", "https"):
            return "#"  # javascript:, mailto:, app links: nothing a replay may start
        return f"{self.prefix}{self.ts}/{absolute}"

    def srcset(self, value: str) -> str:
        out = []
        for part in value.split(","):
            bits = part.strip().split()
            if bits:
                out.append(" ".join([self.url(bits[0]), *bits[1:]]))
        return ", ".join(out)

    def css(self, text: str) -> str:
        if len(text) > MAX_REWRITE_BYTES:
            raise TooLarge(f"a stylesheet of {len(text):,} characters")

        def one(m: re.Match[str]) -> str:
            target = next(g for g in m.groups() if g is not None)
            return f'url("{_css_safe(self.url(target))}")'

        text = _CSS_URL.sub(one, text)
        return _CSS_IMPORT.sub(lambda m: f'@import "{_css_safe(self.url(m.group(2)))}"', text)

    def refresh(self, content: str) -> str | None:
        """A meta refresh's content with its URL rewritten, or None to drop the element.
        Parsed as HTML's "shared declarative refresh steps" read it, so that "0;URL=…",
        "0,url=…", "0.1; url='…'" and "5 …" all name the URL the browser would follow."""
        s, i = content, 0
        while i < len(s) and s[i] in _WS:
            i += 1
        start = i
        while i < len(s) and s[i] in _DIGITS:
            i += 1
        delay = s[start:i]
        if not delay and not (i < len(s) and s[i] == "."):
            return None  # the browser ignores it too
        while i < len(s) and s[i] in _DIGITS + ".":
            i += 1
        if i >= len(s):
            return content  # reloads this same replayed page
        if s[i] not in ";," + _WS:
            return None
        while i < len(s) and s[i] in _WS:
            i += 1
        if i < len(s) and s[i] in ";,":
            i += 1
        while i < len(s) and s[i] in _WS:
            i += 1
        if i >= len(s):
            return content
        rest = s[i:]
        m = re.match(r"url[" + _WS + r"]*=[" + _WS + r"]*", rest, re.IGNORECASE)
        if m:
            rest = rest[m.end():]
        if rest[:1] in ("'", '"'):
            quote, rest = rest[0], rest[1:]
            rest = rest.split(quote, 1)[0]
        target = self.url(rest)
        if not target.startswith(self.prefix):
            return None
        return f"{delay or '0'}; url={target}"

    def _element(self, el: etree._Element, depth: int) -> bool:
        """Rewrite one element in place; False when it is to be removed."""
        tag = el.tag.lower()
        if tag in _ANIMATIONS and (el.get("attributename") or "").lower() in _URL_ATTRS:
            return False  # SMIL can set a link's href to any URL after the rewriting
        if tag == "meta" and (el.get("http-equiv") or "").strip().lower() == "refresh":
            content = self.refresh(el.get("content") or "")
            if content is None:
                return False
            el.set("content", content)
        for attr in _DROPPED_ATTRS:
            if attr in el.attrib:
                del el.attrib[attr]
        for attr in _URL_ATTRS:
            v = el.get(attr)
            if v is not None:
                el.set(attr, self.url(v))
        if tag == "object" and el.get("data") is not None:
            el.set("data", self.url(el.get("data") or ""))
        for attr in _SRCSET_ATTRS:
            v = el.get(attr)
            if v is not None:
                el.set(attr, self.srcset(v))
        style = el.get("style")
        if style and "url" in style.lower():
            el.set("style", self.css(style))
        if tag == "style" and el.text:
            el.text = self.css(el.text)
        srcdoc = el.get("srcdoc")
        if srcdoc is not None:
            if depth >= MAX_SRCDOC_DEPTH:
                del el.attrib["srcdoc"]
            else:
                base = self.base  # a <base> inside the srcdoc is its own
                el.set("srcdoc", self.html(srcdoc, depth + 1))
                self.base = base
        for attr in list(el.attrib):
            if attr.startswith("on"):  # no script runs anyway; the markup need not carry any
                del el.attrib[attr]
        return True

    def html(self, markup: str, depth: int = 0) -> str:
        if len(markup) > MAX_REWRITE_BYTES:
            raise TooLarge(f"an HTML document of {len(markup):,} characters")
        try:
            root = html.document_fromstring(markup)
        except (etree.ParserError, ValueError):
            return "<!doctype html><p>This archived document could not be parsed; see its text views.</p>"
        for base in list(root.iter("base")):
            href = base.get("href")
            if href:
                self.base = urljoin(self.base, href)
            base.drop_tree()
        doomed = []
        for el in root.iter():
            if not isinstance(el.tag, str):
                continue
            self.elements += 1
            if self.elements > MAX_ELEMENTS:
                raise TooLarge(f"a document of more than {MAX_ELEMENTS:,} elements")
            if not self._element(el, depth):
                doomed.append(el)
        for el in doomed:
            el.drop_tree()
        for script in list(root.iter("script")):
            script.drop_tree()  # never run (see above); dropped so no parser sees code in it either
        return html.tostring(root, encoding="unicode", method="html", doctype="<!DOCTYPE html>")


def replay_body(archived: Archived, timestamp: str, prefix: str = "/web/") -> tuple[bytes, str]:
    """(body, content type) to send for an archived response. Raises TooLarge for an HTML or
    CSS document over the rewriting limits."""
    rw = Rewriter(archived.url, timestamp, prefix)
    if is_html(archived.content_type):
        if len(archived.body) > MAX_REWRITE_BYTES:
            raise TooLarge(f"an HTML document of {len(archived.body):,} bytes")
        text = decode_text(archived.body, archived.content_type).text
        return rw.html(text).encode("utf-8"), "text/html; charset=utf-8"
    if is_css(archived.content_type):
        if len(archived.body) > MAX_REWRITE_BYTES:
            raise TooLarge(f"a stylesheet of {len(archived.body):,} bytes")
        text = decode_text(archived.body, archived.content_type).text
        return rw.css(text).encode("utf-8"), "text/css; charset=utf-8"
    return archived.body, archived.content_type


def replay_csp(origin: str) -> str:
    """The policy of every response from the replay origin: loads from that origin only, no
    script, no plugin, no form, and a sandbox with no exceptions (an opaque origin; no popups,
    no top-level navigation, no automatic navigation), which nested frames inherit."""
    src = f"'self' {origin}"
    return (f"default-src {src} data:; script-src 'none'; object-src 'none'; style-src {src} 'unsafe-inline' data:; "
            f"img-src {src} data:; font-src {src} data:; media-src {src} data:; frame-src {src}; child-src {src}; "
            f"connect-src 'none'; worker-src 'none'; manifest-src 'none'; form-action 'none'; base-uri 'none'; "
            f"sandbox")


def raw_csp() -> str:
    """For the raw view of an archived body (served as text or as a download): nothing in it
    may load, run or navigate, whatever a browser makes of it."""
    return "default-src 'none'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'; sandbox"
