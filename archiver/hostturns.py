"""Per-host turns shared by every worker of a scaled setup, kept in the broker's Redis.

A turn is a lease on the right to start the next request to a host. It is granted when no
other turn is held and the last request's bytes went out at least the gap ago (plus a small
margin), and it is held until our own bytes go out; the time of that send, on Redis's clock
(so machines' clocks need not agree), starts the next gap. A turn whose holder dies expires.
Holding the turn to the send, not to the grant, is what keeps the gap at the server: a
request may wait for a connection or a busy event loop after its turn was granted.

A host that answers 429 or 503 is paused for every worker (its Retry-After, capped as for
a single process): one worker's answer stops the others' requests too.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from .polite import SharedPause

log = logging.getLogger(__name__)

_CLOCK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: last-sent, holder, paused-until. ARGV: gap ms, token, lease ms.
# Returns {0, 0} (granted), {ms to wait, 0} or {ms of pause left, 1}. With a gap of 0 only
# a pause is checked: nothing is held, so hosts without a delay cost one round trip.
_TAKE = _CLOCK + """
local paused = tonumber(redis.call('GET', KEYS[3]) or '0')
if now < paused then return {paused - now, 1} end
if tonumber(ARGV[1]) == 0 then return {0, 0} end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[2] then
  return {math.max(1, math.min(20, redis.call('PTTL', KEYS[2]))), 0}
end
local ready = tonumber(redis.call('GET', KEYS[1]) or '0') + tonumber(ARGV[1])
if now < ready then return {ready - now, 0} end
redis.call('SET', KEYS[2], ARGV[2], 'PX', tonumber(ARGV[3]))
return {0, 0}
"""

# KEYS: paused-until. ARGV: pause ms. A longer pause already running is kept.
_PAUSE = _CLOCK + """
local untl = now + tonumber(ARGV[1])
if untl > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], untl, 'PX', tonumber(ARGV[1]) + 1000)
end
return 1
"""

# KEYS: last-sent, holder. ARGV: token, gap ms, sent (1) or given back (0).
_END = _CLOCK + """
if ARGV[3] == '1' then
  redis.call('SET', KEYS[1], now, 'PX', tonumber(ARGV[2]) + 60000)
end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""

MARGIN = 0.05  # seconds added to every gap: the send is recorded a little after it happens
LEASE_MS = 15_000  # a turn not ended by then (its holder died) is free again


class RedisTurns:
    def __init__(self, url: str, namespace: str = "archiver"):
        import redis.asyncio as aioredis

        self._client = aioredis.Redis.from_url(url)
        self._take = self._client.register_script(_TAKE)
        self._end = self._client.register_script(_END)
        self._pause = self._client.register_script(_PAUSE)
        self._prefix = f"{namespace}:host:"
        self._gaps: dict[str, int] = {}
        self._pending: set[asyncio.Task[None]] = set()

    def _keys(self, host: str) -> list[str]:
        return [f"{self._prefix}{host}:sent", f"{self._prefix}{host}:turn", f"{self._prefix}{host}:paused"]

    async def take(self, host: str, gap: float, max_wait: float = float("inf")) -> str:
        token = uuid.uuid4().hex
        gap_ms = self._gaps[host] = int((gap + MARGIN) * 1000) if gap > 0 else 0
        while True:
            wait_ms, paused = (int(x) for x in await self._take(keys=self._keys(host),
                                                                args=[gap_ms, token, LEASE_MS]))
            if wait_ms <= 0:
                return token if gap_ms else ""
            if paused and wait_ms / 1000 > max_wait:
                raise SharedPause(wait_ms / 1000)
            await asyncio.sleep(wait_ms / 1000)

    def pause(self, host: str, seconds: float) -> None:
        task = asyncio.get_running_loop().create_task(self._record_pause(host, seconds))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _record_pause(self, host: str, seconds: float) -> None:
        try:
            await self._pause(keys=self._keys(host)[2:], args=[max(1, int(seconds * 1000))])
        except Exception as e:  # this worker still pauses; the others learn from their own 429
            log.warning("pause of %s not recorded in Redis: %s", host, e)

    def sent(self, host: str, token: str) -> None:
        # called from the transport as the bytes go out (not a coroutine): recorded right after
        task = asyncio.get_running_loop().create_task(self._finish(host, token, True))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def give_back(self, host: str, token: str) -> None:
        await self._finish(host, token, False)

    async def _finish(self, host: str, token: str, sent: bool) -> None:
        try:
            await self._end(keys=self._keys(host), args=[token, self._gaps.get(host, 0), "1" if sent else "0"])
        except Exception as e:  # the lease runs out by itself; the next turn waits for that
            log.warning("host turn of %s not ended in Redis: %s", host, e)

    async def aclose(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self._client.aclose()
