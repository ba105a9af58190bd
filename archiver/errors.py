"""One exception hierarchy for the whole package.

Messages name the thing and the value, so a log line alone tells the user what went wrong.

    ArchiverError                  everything archiver raises on purpose; the CLI prints its
    |                              message as one line (exit 1)
    +-- ConfigError                the config cannot be used: every problem, FILE:LINE (exit 2)
    +-- FetchError                 one fetch failed (reason tag + detail); the item's failure row
    |   +-- BlockedByPolicy        not fetched on purpose: robots.txt, scheme, private address
    |   +-- HostPaused             the host asked us to wait longer than a request may wait
    +-- StorageError               the archive root, a WARC or the index cannot be written or read
    |   +-- SearchError            the browse UI's search cache
    +-- DiscoveryError             a feed, sitemap or listing page cannot be used
    +-- XmlTooBig                  a discovery document past the depth or element caps
    +-- WorkerDied                 an extraction worker died on this item
    +-- DumpError / ExportError    a dump, verify or export cannot go on
    +-- RematchError               a rematch was asked for something the config or the index lacks
    +-- BrokerError                a scaled setup's broker cannot be reached
    +-- HostNameError              a --host / --allowed-host value is not a host name
    +-- BrowserError               a page cannot be rendered, or the browser cannot start
    InjectedFault (RuntimeError)   a failure point's fault: deliberately *not* an ArchiverError,
                                   since it stands for the unexpected

The command line (archiver.cli.main) is the one place these reach the user: a ConfigError's
problems, one a line, and exit 2; any other ArchiverError as one line `archiver: MESSAGE` and
exit 1. Everything else that escapes is a defect and keeps its traceback.

Internal control flow (the last section below). These end a parse or a loop early, or tell
the one caller that handles them what happened; none ever reaches a user. They are *not*
ArchiverErrors on purpose: an `except ArchiverError` on the way must not swallow one.

    ControlFlow
    +-- FeedStopped                a streamed feed cannot go on; carries the entries read so far
    |   +-- FeedNotWellFormed      broken XML here: the lenient parser may still read it (feeds)
    |   +-- FeedAtCap              past a depth or element cap: nothing reads further (feeds)
    +-- FeedAsSitemap              a sitemap URL serves RSS or Atom: read it as a feed (sitemaps)
    +-- StaleConnection            a reused keep-alive connection closed unanswered: retry (fetch)
    +-- SharedPause                a host paused across workers longer than a request may wait
    |                              (raised by scale.hostturns, handled in polite)
    +-- DiffOverBudget             a diff ran past its deadline: show a coarser one (web.diffs)
    +-- TooLarge                   an archived document past the rewriting limits: not replayed
    |                              (web.replay, handled in web.replayapp)
    +-- BrowserGone                the browser's end of the DevTools pipe closed (browser)
    +-- BrowserRefused             the browser answered a command with an error (browser)
"""

from __future__ import annotations

import errno
from dataclasses import dataclass


class ArchiverError(Exception):
    """Base of every error archiver raises on purpose."""


@dataclass(frozen=True)
class ConfigProblem:
    file: str
    line: int
    path: str
    message: str
    value: object = None

    def __str__(self) -> str:
        got = "" if self.value is None else f" (got {self.value!r})"
        return f"{self.file}:{self.line}: {self.path}: {self.message}{got}"


class ConfigError(ArchiverError):
    """The config file cannot be used; carries every problem found, not just the first."""

    def __init__(self, problems: list[ConfigProblem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class FetchError(ArchiverError):
    """One fetch failed; `reason` is a short machine-readable tag, the message says why."""

    def __init__(self, url: str, reason: str, detail: str = ""):
        self.url = url
        self.reason = reason
        self.detail = detail
        super().__init__(f"{url}: {reason}{': ' + detail if detail else ''}")


class BlockedByPolicy(FetchError):
    """The URL is not fetched on purpose (robots.txt, scheme, private address)."""


class StorageError(ArchiverError):
    """The archive root, a WARC file or the index cannot be written or read."""


class SearchError(StorageError):
    """The browse UI's search cache cannot be built or read."""


class HostPaused(FetchError):
    """The host asked us to wait (429/503) longer than a request may wait; retried next pass."""


class DiscoveryError(ArchiverError):
    """A discovery document could not be used (malformed, unsafe, wrong type)."""


class XmlTooBig(ArchiverError):
    """A document past the depth or element cap; the message names the cap."""


class WorkerDied(ArchiverError):
    """An extraction worker process ended while working on this item (crash, out of memory)."""


class DumpError(ArchiverError):
    """A dump or verify cannot go on (a folder that is not a dump, a manifest that does not read)."""


class ExportError(ArchiverError):
    """An export cannot be written (nothing selected, a WARC still open or not found)."""


class RematchError(ArchiverError):
    """A rematch cannot run as asked (a topic the config does not define, a --since that is no time)."""


class HostNameError(ArchiverError):
    """A --host or --allowed-host value is not a bare host name or address."""


class InjectedFault(RuntimeError):
    """Raised at a failure point (faults.check); never raised unless ARCHIVER_FAIL_AT (or
    faults.FAIL_AT) names it."""


class BrokerError(ArchiverError):
    """The task broker of a scaled setup (scale.broker) cannot be reached or refuses us."""


class BrowserError(ArchiverError):
    """One page could not be rendered in the browser, or the browser cannot be started.

    `exchanges` holds what the fetch function returned for the page before it failed (in
    request order), so nothing already fetched is lost; `blocked` the requests refused."""

    def __init__(self, message: str, url: str | None = None, exchanges: list | None = None,
                 blocked: list[str] | None = None):
        self.url = url
        self.exchanges = exchanges or []
        self.blocked = blocked or []
        super().__init__(f"{url}: {message}" if url else message)


def os_reason(e: OSError) -> str:
    """An OSError's reason, saying so when it means the disk (or a size limit) is full."""
    if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return f"{e.strerror} (the disk is full or a file size limit was reached)"
    return e.strerror or str(e)


# ---------------------------------------------------------------------- internal control flow
# Raised and caught inside archiver (see the module docstring); never shown to a user.


class ControlFlow(Exception):
    """Base of the internal control-flow exceptions: deliberately not an ArchiverError."""


class FeedStopped(ControlFlow):
    """A streamed feed cannot be read further; `entries` holds the candidates read before."""

    def __init__(self, why: str, entries: list):
        super().__init__(why)
        self.why, self.entries = why, entries


class FeedNotWellFormed(FeedStopped):
    """The XML is broken here; the lenient parser may still read it."""


class FeedAtCap(FeedStopped):
    """Past a depth or element cap: no parser is to read further."""


class FeedAsSitemap(ControlFlow):
    """The sitemap is an RSS or Atom feed (sitemaps.org accepts both in a sitemap's place)."""


class StaleConnection(ControlFlow):
    """The server closed the connection before answering (typically a reused keep-alive one)."""


class SharedPause(ControlFlow):
    """The host is paused (a 429/503 seen by some worker) for longer than a request may wait."""

    def __init__(self, seconds: float):
        super().__init__(seconds)
        self.seconds = seconds


class DiffOverBudget(ControlFlow):
    """A diff's line matching ran past its deadline."""


class TooLarge(ControlFlow):
    """An archived document over the rewriting limits; it is not replayed."""


class BrowserGone(ControlFlow):
    """The browser's end of the DevTools pipe closed: it exited, crashed or was killed."""


class BrowserRefused(ControlFlow):
    """The browser answered a command with an error."""

    def __init__(self, method: str, error: dict):
        self.method = method
        self.message = str(error.get("message", error))
        super().__init__(f"{method}: {self.message}")


def first_line(e: BaseException) -> str:
    """A driver's message (SQLAlchemy's runs to the SQL and a link) cut to the line that names the failure."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
