"""Per-host politeness: a cap on parallel requests, a minimum gap between request starts, and
back-off when a host answers 429/503 (its Retry-After honoured up to a cap, else exponential)."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import AsyncIterator, Protocol

from .errors import HostPaused, SharedPause


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


class Ticket:
    """One of a bounded number of places for pages fetched and not yet finished with.

    A pass can fetch faster than it extracts; without a bound, every fetched page waiting
    for an extraction worker stays in memory. A ticket is taken when the first request of
    a page gets its host's turn (not before, so waiting out a Crawl-delay holds none), kept
    through the page's redirects, and given back by the caller when the page is done.
    """

    def __init__(self, places: asyncio.Semaphore):
        self._places = places
        self.held = False

    async def take(self) -> None:
        if not self.held:
            await self._places.acquire()
            self.held = True

    async def take_if_free(self) -> bool:
        """Take a place only if one is free now (no waiting); whether the ticket holds one."""
        if not self.held and not self._places.locked():
            await self._places.acquire()  # free: returns at once
            self.held = True
        return self.held

    def release(self) -> None:
        if self.held:
            self.held = False
            self._places.release()


class SharedTurns(Protocol):
    """Request starts to a host across every process of a scaled setup (see scale/hostturns.py)."""

    async def take(self, host: str, gap: float, limit: int, max_wait: float = float("inf")) -> str:
        """Wait until fewer than `limit` requests to `host` are in flight across all workers,
        no one else may start one before ours is sent, `gap` has passed since the last one
        was, and no pause asked for by the host is running; returns the token of this request
        (in flight until done()). Raises SharedPause when the pause would outlast `max_wait`."""
        ...

    def pause(self, host: str, seconds: float) -> None:
        """The host answered 429/503: no worker starts a request to it for `seconds`."""
        ...

    def sent(self, host: str, token: str) -> None:
        """Our request's bytes went out: the next turn counts its gap from now."""
        ...

    async def done(self, host: str, token: str) -> None:
        """The request is over (answered, failed, or never sent): it is no longer in flight,
        and its turn, if still held, is given back."""
        ...


class HostGate:
    """Requests to one host wait here; the gap is max(configured delay, robots Crawl-delay).

    The gap is measured between *actual* request starts: a request takes its global slot
    only once its host's turn has come (so a host sitting out a long Crawl-delay holds no
    global slot), its start is recorded after that slot was granted and again when its
    bytes are written (`mark_sent`), the next start is decided only once those bytes were
    written (or the request is over, which then counts as its start), and a waiting request
    re-checks after every sleep, so neither a wait for a global slot, a slow connect nor a
    busy event loop squeezes two requests together.

    `concurrency` caps the requests in flight; the gap holds between every two starts
    whatever the cap, so requests overlap only when an answer takes longer than the gap.
    """

    def __init__(self, concurrency: int, delay: float, host: str = "", shared: SharedTurns | None = None):
        self.host = host
        self.shared = shared
        self.concurrency = concurrency
        self._turn: str | None = None  # the shared turn this process holds for the host, until sent
        self._unsent: asyncio.Event | None = None  # set once the last request let out wrote its bytes
        self._sem = asyncio.Semaphore(concurrency)
        self._lock = asyncio.Lock()
        self._last_start = float("-inf")
        self.configured_delay = delay  # fetch.per_host_delay; a reload changes it in place
        self.robots_delay = 0.0  # the host's robots.txt Crawl-delay, once read
        self.paused_until = 0.0
        self.strikes = 0  # consecutive 429/503 answers

    @property
    def delay(self) -> float:
        return max(self.configured_delay, self.robots_delay)

    def resize(self, concurrency: int) -> None:
        """A new per-host concurrency from a reload: requests in flight release the semaphore
        they took, new ones wait on the new one."""
        if concurrency != self.concurrency:
            self.concurrency = concurrency
            self._sem = asyncio.Semaphore(concurrency)

    def back_off(self, retry_after: float | None, cap: float) -> float:
        """Pause the host after a 429/503; returns the pause in seconds."""
        self.strikes += 1
        if retry_after is None:
            retry_after = max(self.delay, 5.0) * 2 ** (self.strikes - 1)
        pause = min(retry_after, cap)
        self.paused_until = max(self.paused_until, time.monotonic() + pause)
        if self.shared is not None:
            self.shared.pause(self.host, pause)
        return pause

    def recovered(self) -> None:
        self.strikes = 0

    def mark_sent(self) -> None:
        """Called when the request's first bytes are written: the loop may have been busy
        between the slot being granted and the send, and the gap must hold at the server."""
        self._last_start = max(self._last_start, time.monotonic())
        if self._unsent is not None:
            self._unsent.set()
            self._unsent = None
        if self._turn is not None and self.shared is not None:
            token, self._turn = self._turn, None
            self.shared.sent(self.host, token)

    @asynccontextmanager
    async def slot(self, global_slots: asyncio.Semaphore, url: str = "",
                   max_wait: float = float("inf"), ticket: Ticket | None = None) -> AsyncIterator[None]:
        sem = await self._wait_turn(url, max_wait, ticket)
        try:
            token = None
            if self.shared is not None:
                # other workers' requests to this host count too: at most `concurrency`
                # in flight across all of them, the turn held until our bytes are sent
                # (mark_sent) and the next one `delay` later; another worker's 429/503
                # pauses us as well
                try:
                    token = await self.shared.take(self.host, self.delay, self.concurrency, max_wait)
                except SharedPause as e:
                    raise HostPaused(url, "host-backoff", f"the host asked us to wait {e.seconds:.0f}s more "
                                     f"(HTTP 429/503, seen by another worker)") from None
                self._turn = token if self.delay > 0 else None
            try:
                await global_slots.acquire()
            except BaseException:
                await self._done(token)
                raise
            self._last_start = time.monotonic()
            unsent = self._unsent = asyncio.Event() if self.delay > 0 else None
        except BaseException:
            sem.release()
            raise
        finally:
            self._lock.release()
        try:
            yield
        finally:
            try:
                global_slots.release()
                if unsent is not None and self._unsent is unsent:
                    # over without its bytes noted (a failed connect, a write that failed
                    # part-way): the server may have seen it, so it counts as started now
                    self._last_start = max(self._last_start, time.monotonic())
                    unsent.set()
                    self._unsent = None
                await self._done(token)
            finally:
                sem.release()

    async def _wait_turn(self, url: str, max_wait: float, ticket: Ticket | None) -> asyncio.Semaphore:
        """Our turn at the host: returns holding the host's lock, a share of its concurrency
        (the semaphore it came from, which a reload may replace meanwhile) and, with a
        ticket, a place."""
        while True:
            sem = self._sem
            await sem.acquire()
            try:
                await self._lock.acquire()  # one start decision at a time for this host
                try:
                    if await self._ready(url, max_wait, ticket):
                        return sem
                except BaseException:
                    self._lock.release()
                    raise
            except BaseException:
                sem.release()
                raise
            # no place free: wait for one without the host's turn or its share of the host's
            # concurrency. Holding them, this would stall every page of the host, and the
            # pages that hold the places may be waiting for this host (a redirect to it): with
            # few places the pass hung for good. Then the turn is waited for again.
            self._lock.release()
            sem.release()
            assert ticket is not None  # _ready is False only with one
            await ticket.take()

    async def _ready(self, url: str, max_wait: float, ticket: Ticket | None) -> bool:
        """With the host's lock held: wait for the request let out before to start, for the
        gap and any pause; then take a place if one is free. False when none was."""
        while self._unsent is not None:  # the request let out before ours has not started yet
            await self._unsent.wait()
        while True:
            now = time.monotonic()
            if self.paused_until - now > max_wait:
                raise HostPaused(url, "host-backoff", f"the host asked us to wait "
                                 f"{self.paused_until - now:.0f}s more (HTTP 429/503)")
            wait = max(self._last_start + self.delay, self.paused_until) - now
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        return ticket is None or await ticket.take_if_free()

    async def _done(self, token: str | None) -> None:
        if token is not None and self.shared is not None:
            if self._turn == token:
                self._turn = None
            await self.shared.done(self.host, token)


class Gates:
    """Every host's gate. One set per process for as long as it runs: a reload updates them in
    place (`reconfigure`), so last request times, Crawl-delays and back-offs are never forgotten."""

    def __init__(self, concurrency: int, delay: float, shared: SharedTurns | None = None):
        self._concurrency = concurrency
        self._delay = delay
        self._gates: dict[str, HostGate] = {}
        self.shared = shared

    def get(self, host: str) -> HostGate:
        gate = self._gates.get(host)
        if gate is None:
            gate = self._gates[host] = HostGate(self._concurrency, self._delay, host, self.shared)
        return gate

    def reconfigure(self, concurrency: int, delay: float) -> None:
        self._concurrency, self._delay = concurrency, delay
        for gate in self._gates.values():
            gate.configured_delay = delay
            gate.resize(concurrency)

    def set_min_delay(self, host: str, delay: float) -> None:
        """Raise a host's gap (robots.txt Crawl-delay); gaps are measured from the last actual
        start, so the very next request honours the new value."""
        gate = self.get(host)
        gate.robots_delay = max(gate.robots_delay, delay)
