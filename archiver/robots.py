"""robots.txt per host (RFC 9309) with Protego; every robots.txt response is archived too.

The body is decoded by its BOM and stripped of unknown lines before Protego reads it (see
`robots_text`), so groups are read as RFC 9309 and Google read them.

Unreachable robots.txt (5xx, network error) means "disallow everything" for this pass, as
RFC 9309 asks; 4xx means "no rules".
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from protego import Protego

from .errors import BlockedByPolicy, FetchError
from .urls import host_key

if TYPE_CHECKING:
    from .fetch import Fetcher, Response

log = logging.getLogger(__name__)

MAX_ROBOTS_BYTES = 500_000  # RFC 9309: parse at least 500 KiB
UNREACHABLE_RETRY = 300.0


@dataclass
class RobotsRules:
    host: str
    parser: Protego | None  # None: no rules
    disallow_all: bool = False
    reason: str = ""
    error: "FetchError | None" = None  # the robots.txt fetch itself failed (network, policy)
    exchanges: list["Response"] = field(default_factory=list)

    def allowed(self, url: str, agent: str) -> bool:
        if self.disallow_all:
            return False
        if self.parser is None:
            return True
        return bool(self.parser.can_fetch(url, agent))

    def crawl_delay(self, agent: str) -> float:
        if self.parser is None:
            return 0.0
        d = self.parser.crawl_delay(agent)
        return float(d) if d else 0.0

    def sitemaps(self) -> list[str]:
        return list(self.parser.sitemaps) if self.parser is not None else []


# Field names that are part of robots.txt (RFC 9309, plus the extensions and misspellings that
# Google's parser and Protego accept). Anything else is dropped before parsing: RFC 9309 and
# Google ignore unknown lines, while Protego lets one end a group of User-agent lines.
_KNOWN_FIELDS = frozenset({
    "user-agent", "useragent", "user agent", "allow", "disallow", "dissallow", "dissalow", "disalow",
    "diasllow", "disallaw", "sitemap", "sitemaps", "site-map", "crawl-delay", "crawl delay",
    "request-rate", "request rate", "visit-time", "visit time", "host",
})


def robots_text(body: bytes) -> str:
    """A robots.txt body as the text to parse: decoded by its BOM (UTF-8, UTF-16 LE/BE), else
    as UTF-8 with replacement (RFC 9309), and with lines of unknown fields left out."""
    if body.startswith(codecs.BOM_UTF8):
        text = body[3:].decode("utf-8", errors="replace")
    elif body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = body.decode("utf-16", errors="replace")
    else:
        text = body.decode("utf-8", errors="replace")
    text = text.removeprefix("\ufeff")  # text that carried its own U+FEFF after the BOM
    return "\n".join(line for line in text.splitlines() if _known_line(line))


def _known_line(line: str) -> bool:
    s = line.split("#", 1)[0].strip()
    if not s:
        return False
    if ":" in s and s.split(":", 1)[0].strip().lower() in _KNOWN_FIELDS:
        return True
    words = s.lower().replace(":", " ").split()
    return any(" ".join(words[:n]) in _KNOWN_FIELDS for n in (1, 2))


class RobotsCache:
    def __init__(self, fetcher: "Fetcher", agent: str):
        self._fetcher = fetcher
        self._agent = agent.split("/")[0]  # product token, as robots.txt groups name it
        self._rules: dict[str, tuple[float, asyncio.Future[RobotsRules]]] = {}
        self.max_age = fetcher.settings.robots_max_age

    async def rules(self, url: str) -> tuple[RobotsRules, list["Response"]]:
        """(rules for url's host, the robots.txt exchanges this call fetched: the caller archives them)."""
        host = host_key(url)
        entry = self._rules.get(host)
        if entry is not None and time.monotonic() < entry[0]:
            return await asyncio.shield(entry[1]), []
        fut: asyncio.Future[RobotsRules] = asyncio.get_running_loop().create_future()
        self._rules[host] = (time.monotonic() + self.max_age, fut)
        try:
            rules = await self._load(host)
        except BaseException as e:  # never leave waiters hanging
            rules = RobotsRules(host, None, disallow_all=True, reason=f"robots.txt failed: {e!r}")
            fut.set_result(rules)
            raise
        fut.set_result(rules)
        if rules.disallow_all:  # unreachable now is not unreachable all day: ask again soon
            self._rules[host] = (time.monotonic() + min(self.max_age, UNREACHABLE_RETRY), fut)
        fetched, rules.exchanges = rules.exchanges, []
        return rules, fetched

    async def _load(self, host: str) -> RobotsRules:
        result = await self._fetcher.fetch_raw_chain(f"{host}/robots.txt", max_hops=5,
                                                      max_decoded=MAX_ROBOTS_BYTES)
        rules = RobotsRules(host, None, exchanges=list(result.hops))
        final = result.final
        if result.error is not None or final is None:
            rules.disallow_all = True
            rules.error = result.error
            rules.reason = f"robots.txt unreachable: {result.error or 'no response'}"
        elif final.status >= 500 or final.status == 429:
            rules.disallow_all = True
            rules.reason = f"robots.txt answered HTTP {final.status}"
        elif 200 <= final.status < 300 and final.body is not None:
            body = final.body[:MAX_ROBOTS_BYTES]
            if len(body) == MAX_ROBOTS_BYTES or final.body_truncated:
                # a line cut in half can turn "Disallow: /private" into "Disallow: /"
                body = body[: body.rfind(b"\n") + 1]
                log.warning("robots.txt of %s is over %d bytes; its first %d bytes of whole lines are used",
                            host, MAX_ROBOTS_BYTES, len(body))
            try:
                rules.parser = Protego.parse(robots_text(body))
            except Exception as e:  # a broken robots.txt means no usable rules, not a crash
                log.warning("robots.txt of %s does not parse (%s); treating as no rules", host, e)
        if rules.parser is not None:
            delay = rules.crawl_delay(self._agent)
            if delay:
                self._fetcher.gates.set_min_delay(host, min(delay, self._fetcher.settings.max_crawl_delay))
        if rules.disallow_all:
            log.warning("%s: %s; nothing on this host is fetched this pass", host, rules.reason)
        return rules

    async def check(self, url: str) -> tuple[FetchError | None, list["Response"]]:
        """(why url may not be fetched, or None; robots.txt exchanges fetched by this call)."""
        rules, exchanges = await self.rules(url)
        if rules.allowed(url, self._agent):
            return None, exchanges
        if rules.error is not None:  # the host is unreachable: say so, not "robots"
            return FetchError(url, rules.error.reason, f"robots.txt: {rules.error.detail}"), exchanges
        return BlockedByPolicy(url, "robots", rules.reason or "disallowed by robots.txt"), exchanges
