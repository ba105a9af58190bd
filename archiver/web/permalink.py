"""Timestamped permalinks: `/web/<timestamp>/<url>`, as the Wayback Machine and pywb spell them.

A timestamp is the capture time's digits (UTC), YYYYMMDDhhmmss, and may be cut short
(`2025` is the start of 2025) or run on to the microsecond (20 digits). A capture is found
for one by preferring captures whose time begins with those digits, then the one nearest
in time. A capture's own permalink has 14 digits, or all 20 when another capture of the
URL falls in the same second, so it always leads back to that capture and no other.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Protocol, Sequence, TypeVar

FULL_DIGITS = 20  # YYYYMMDDhhmmss and microseconds
SECOND_DIGITS = 14

_LEADING_DIGITS = re.compile(r"\d*")
_EPOCH = datetime(1, 1, 1, tzinfo=timezone.utc)
_START = "0000" "0101" "000000" "000000"  # what a timestamp cut short leaves out: January 1, midnight


class Captured(Protocol):
    @property
    def id(self) -> int | None: ...
    @property
    def url(self) -> str: ...
    @property
    def final_url(self) -> str | None: ...
    @property
    def fetched_at(self) -> str: ...


C = TypeVar("C", bound=Captured)


def digits(iso: str) -> str:
    """The digits of an index time (2025-06-14T08:30:00.123456Z -> 20250614083000123456)."""
    return "".join(ch for ch in iso if ch.isdigit())[:FULL_DIGITS]


def moment(ts: str) -> datetime:
    """The start of the time a timestamp names (missing month and day are 01); a timestamp
    that names no real time is the earliest moment, as an empty one is."""
    ts = _LEADING_DIGITS.match(ts).group()[:FULL_DIGITS]  # type: ignore[union-attr]
    if len(ts) < 4:
        return _EPOCH
    try:
        return datetime.strptime(ts + _START[len(ts):], "%Y%m%d%H%M%S%f").replace(tzinfo=timezone.utc)
    except ValueError:
        return _EPOCH


def address(row: Captured) -> str:
    """The URL a capture is cited by: where the page was fetched from, after redirects."""
    return row.final_url or row.url


def resolve(rows: Sequence[C], ts: str, url: str | None = None) -> C | None:
    """The capture `/web/<ts>/<url>` names among `rows` (captures of that URL)."""
    if not rows:
        return None
    prefix = _LEADING_DIGITS.match(ts).group()[:FULL_DIGITS]  # type: ignore[union-attr]
    want = moment(ts)

    def key(r: C) -> tuple[bool, float, bool, int]:
        d = digits(r.fetched_at)
        at = moment(d)
        return (not (prefix and d.startswith(prefix)), abs((at - want).total_seconds()),
                url is not None and address(r) != url, -(r.id or 0))

    return min(rows, key=key)


def permalink_ts(row: Captured, rows: Sequence[Captured]) -> str:
    """The shortest timestamp (14 or 20 digits) that names `row` among `rows`."""
    d = digits(row.fetched_at)
    second = d[:SECOND_DIGITS]
    if any(r.id != row.id and digits(r.fetched_at).startswith(second) for r in rows):
        return d
    return second


def permalink(row: Captured, rows: Sequence[Captured]) -> str:
    """`/web/<timestamp>/<url>` of `row`; `rows` are the captures of its URL."""
    return f"/web/{permalink_ts(row, rows)}/{address(row)}"
