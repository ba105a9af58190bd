"""Per-host politeness: a cap on parallel requests, a minimum gap between request starts, and
back-off when a host answers 429/503 (its Retry-After honoured up to a cap, else exponential)."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import AsyncIterator

from .errors import FetchError


class HostPaused(FetchError):
    """The host asked us to wait (429/503) longer than a request may wait; retried next pass."""


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP-date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


class HostGate:
    """Requests to one host wait here; the gap is max(configured delay, robots Crawl-delay)."""

    def __init__(self, concurrency: int, delay: float):
        self._sem = asyncio.Semaphore(concurrency)
        self._lock = asyncio.Lock()
        self._next_start = 0.0
        self.delay = delay
        self.paused_until = 0.0
        self.strikes = 0  # consecutive 429/503 answers

    def back_off(self, retry_after: float | None, cap: float) -> float:
        """Pause the host after a 429/503; returns the pause in seconds."""
        self.strikes += 1
        if retry_after is None:
            retry_after = max(self.delay, 5.0) * 2 ** (self.strikes - 1)
        pause = min(retry_after, cap)
        self.paused_until = max(self.paused_until, time.monotonic() + pause)
        return pause

    def recovered(self) -> None:
        self.strikes = 0

    @asynccontextmanager
    async def slot(self, url: str = "", max_wait: float = float("inf")) -> AsyncIterator[None]:
        wait = self.paused_until - time.monotonic()
        if wait > max_wait:
            raise HostPaused(url, "host-backoff", f"the host asked us to wait {wait:.0f}s more (HTTP 429/503)")
        if wait > 0:
            await asyncio.sleep(wait)
        async with self._sem:
            async with self._lock:
                now = time.monotonic()
                wait = self._next_start - now
                self._next_start = max(now, self._next_start) + self.delay
                # sleeping under the lock keeps start times in order and spaced by `delay`
                if wait > 0:
                    await asyncio.sleep(wait)
            yield


class Gates:
    def __init__(self, concurrency: int, delay: float):
        self._concurrency = concurrency
        self._delay = delay
        self._gates: dict[str, HostGate] = {}

    def get(self, host: str) -> HostGate:
        gate = self._gates.get(host)
        if gate is None:
            gate = self._gates[host] = HostGate(self._concurrency, self._delay)
        return gate

    def set_min_delay(self, host: str, delay: float) -> None:
        """Raise a host's gap (robots.txt Crawl-delay); the request already spaced by the
        old gap is pushed back too, so the very next request honours the new one."""
        gate = self.get(host)
        if delay > gate.delay:
            gate._next_start += delay - gate.delay
            gate.delay = delay
