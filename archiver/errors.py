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
    +-- BrokerError                a scaled setup's broker cannot be reached
    +-- HostNameError              a --host / --allowed-host value is not a host name
    InjectedFault (RuntimeError)   a failure point's fault: deliberately *not* an ArchiverError,
                                   since it stands for the unexpected
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
