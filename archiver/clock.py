"""Time as the archive writes it: UTC, microseconds, a trailing Z.

WARC-Date, every index timestamp and the 14/17-digit forms used in CDXJ and replay URLs come
from here, so one capture has one time however it is shown.
"""

from __future__ import annotations

from datetime import datetime, timezone


def warc_date(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_now() -> str:
    """Now, as WARC-Date and every index timestamp have it."""
    return warc_date(datetime.now(timezone.utc))


def timestamp17(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y%m%d%H%M%S%f")[:17]


def parse_iso(s: str) -> datetime:
    """An index timestamp (or any ISO 8601 time with a Z) back as an aware datetime."""
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def iso_seconds(ts: float) -> str:
    """A POSIX time as an ISO 8601 UTC time to the second, for messages."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")
