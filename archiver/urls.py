"""URL canonicalisation, so one article is one candidate however it was linked."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit

# Parameters that only say where a click came from; dropping them merges duplicate candidates.
_TRACKING_PREFIXES = ("utm_", "mc_", "pk_", "hsa_", "__hs", "_hs")
_TRACKING_NAMES = frozenset({
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid", "igshid", "mc_eid",
    "_ga", "_gl", "ref_src", "ref_url", "cmpid", "ocid", "spm", "share", "smid", "xtor", "at_medium",
    "at_campaign", "ito", "ns_mchannel", "ns_source", "ns_campaign", "ns_linkname", "ns_fee",
})
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def is_tracking_param(name: str) -> bool:
    low = name.lower()
    return low in _TRACKING_NAMES or low.startswith(_TRACKING_PREFIXES)


def canonicalize(url: str, base: str | None = None) -> str | None:
    """Absolute, fragment-free, tracking-free http(s) URL, or None if it is not one.

    Host is lower-cased, default ports dropped, an empty path becomes '/', and unsafe
    characters are percent-encoded; the order of the remaining query parameters is kept
    because some sites give it meaning.
    """
    url = (url or "").strip()
    if not url:
        return None
    if base:
        url = urljoin(base, url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower().rstrip(".")
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return None
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port is None or str(port) == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    query_pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not is_tracking_param(k)]
    query = urlencode(query_pairs, doseq=True, safe="/:@!$'()*+,;-._~") if query_pairs else ""
    return urlunsplit((scheme, netloc, path, query, ""))


def host_key(url: str) -> str:
    """scheme://host[:port] — the unit of politeness and of robots.txt."""
    p = urlsplit(url)
    return f"{p.scheme}://{p.netloc}"


_SLUG_RE = re.compile(r"[^A-Za-z0-9._-]+")


def slug(text: str, limit: int = 64) -> str:
    """A safe single path component made from untrusted text."""
    s = _SLUG_RE.sub("-", text).strip("-.")[:limit]
    return s or "_"
