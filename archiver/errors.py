"""One exception hierarchy for the whole package.

Messages name the thing and the value, so a log line alone tells the user what went wrong.
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


class BrokerError(ArchiverError):
    """The task broker of a scaled setup (scale.broker) cannot be reached or refuses us."""


def os_reason(e: OSError) -> str:
    """An OSError's reason, saying so when it means the disk (or a size limit) is full."""
    if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return f"{e.strerror} (the disk is full or a file size limit was reached)"
    return e.strerror or str(e)
