"""Per-host politeness: a cap on parallel requests and a minimum gap between request starts."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator


class HostGate:
    """Requests to one host wait here; the gap is max(configured delay, robots Crawl-delay)."""

    def __init__(self, concurrency: int, delay: float):
        self._sem = asyncio.Semaphore(concurrency)
        self._lock = asyncio.Lock()
        self._next_start = 0.0
        self.delay = delay

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
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
