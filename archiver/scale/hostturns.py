"""Per-host turns shared by every worker of a scaled setup, kept in the broker's Redis.

A turn is a lease on the right to start the next request to a host. It is granted when no
other turn is held and the last request's bytes went out at least the gap ago (plus a small
margin), and it is held until our own bytes go out; the time of that send, on Redis's clock
(so machines' clocks need not agree), starts the next gap. Holding the turn to the send, not
to the grant, is what keeps the gap at the server: a request may wait for a global slot, a
connection or a busy event loop after its turn was granted. A live worker renews the lease
for as long as that takes; the turn of a worker that died expires with it.

A turn given back without a recorded send (the request failed before or while its bytes went
out, the record of the send was lost, or it reached Redis after the request was over) counts
as a start when it is given back: the server may have seen it, and a gap too long costs less
than a gap too short.

At most `fetch.per_host_concurrency` requests to a host are in flight across all workers
(each an entry, renewed while its worker lives, that expires if the worker dies). Both hold
together: every two starts are the gap apart whatever the limit, so requests overlap only
when an answer takes longer than the gap. A host that answers 429 or 503 is paused for every
worker (its Retry-After, capped as for a single process): one worker's answer stops the
others' requests too.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Coroutine

from ..errors import SharedPause

log = logging.getLogger(__name__)

_CLOCK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: last-sent, holder, paused-until, in-flight (sorted set: token -> expiry).
# ARGV: gap ms, token, lease ms, limit, in-flight ttl ms.
# Returns {0, 0} (granted), {ms to wait, 0} or {ms of pause left, 1}. With a gap of 0 no
# turn is held: only the pause and the number in flight are checked.
_TAKE = _CLOCK + """
local paused = tonumber(redis.call('GET', KEYS[3]) or '0')
if now < paused then return {paused - now, 1} end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
if redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[4]) then return {25, 0} end
if tonumber(ARGV[1]) > 0 then
  local holder = redis.call('GET', KEYS[2])
  if holder and holder ~= ARGV[2] then
    return {math.max(1, math.min(20, redis.call('PTTL', KEYS[2]))), 0}
  end
  local ready = tonumber(redis.call('GET', KEYS[1]) or '0') + tonumber(ARGV[1])
  if now < ready then return {ready - now, 0} end
  redis.call('SET', KEYS[2], ARGV[2], 'PX', tonumber(ARGV[3]))
end
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[5]), ARGV[2])
-- never shortened: another worker's entries may be meant to last longer
if redis.call('PTTL', KEYS[4]) < tonumber(ARGV[5]) then redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[5])) end
return {0, 0}
"""

# Sets last-sent to now unless it is later already (a send recorded late must not move it back).
_STARTED = """
if now > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], now, 'PX', tonumber(ARGV[2]) + 60000)
end
"""

# KEYS: last-sent, holder. ARGV: token, gap ms. The bytes went out: the next gap starts now.
_SENT = _CLOCK + _STARTED + """
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""

# KEYS: last-sent, holder, in-flight. ARGV: token, gap ms. The request is over; a turn still
# held was never recorded as sent, and counts as sent now.
_DONE = _CLOCK + """
if redis.call('GET', KEYS[2]) == ARGV[1] then
""" + _STARTED + """
  redis.call('DEL', KEYS[2])
end
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""

# KEYS: holder, in-flight. ARGV: token, lease ms, in-flight ttl ms. Our worker is alive.
_RENEW = _CLOCK + """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2])) end
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  redis.call('ZADD', KEYS[2], 'XX', now + tonumber(ARGV[3]), ARGV[1])
  if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3])) end
end
return 1
"""

# KEYS: paused-until. ARGV: pause ms. A longer pause already running is kept.
_PAUSE = _CLOCK + """
local untl = now + tonumber(ARGV[1])
if untl > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], untl, 'PX', tonumber(ARGV[1]) + 1000)
end
return 1
"""

MARGIN = 0.05  # seconds added to every gap: the send is recorded a little after it happens
LEASE = 15.0  # seconds a turn outlives its worker; a live worker renews it


class RedisTurns:
    def __init__(self, url: str, namespace: str = "archiver", in_flight_ttl: float = 300.0,
                 lease: float = LEASE):
        import redis.asyncio as aioredis

        self._client = aioredis.Redis.from_url(url)
        self._take = self._client.register_script(_TAKE)
        self._sent = self._client.register_script(_SENT)
        self._done = self._client.register_script(_DONE)
        self._renew = self._client.register_script(_RENEW)
        self._pause = self._client.register_script(_PAUSE)
        self._prefix = f"{namespace}:host:"
        # a request of a worker that died stops counting as in flight after this long
        self._ttl_ms = int(in_flight_ttl * 1000)
        self._lease_ms = int(lease * 1000)
        self._gaps: dict[str, int] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._alive: dict[str, asyncio.Task[None]] = {}  # token -> its renewal, until done()

    def _key(self, host: str, what: str) -> str:
        return f"{self._prefix}{host}:{what}"

    async def take(self, host: str, gap: float, limit: int, max_wait: float = float("inf")) -> str:
        token = uuid.uuid4().hex
        gap_ms = self._gaps[host] = int((gap + MARGIN) * 1000) if gap > 0 else 0
        keys = [self._key(host, k) for k in ("sent", "turn", "paused", "inflight")]
        while True:
            wait_ms, paused = (int(x) for x in await self._take(
                keys=keys, args=[gap_ms, token, self._lease_ms, limit, self._ttl_ms]))
            if wait_ms <= 0:
                self._alive[token] = asyncio.get_running_loop().create_task(self._keep(host, token))
                return token
            if paused and wait_ms / 1000 > max_wait:
                raise SharedPause(wait_ms / 1000)
            await asyncio.sleep(wait_ms / 1000)

    def pause(self, host: str, seconds: float) -> None:
        self._background(self._record_pause(host, seconds))

    async def _record_pause(self, host: str, seconds: float) -> None:
        try:
            await self._pause(keys=[self._key(host, "paused")], args=[max(1, int(seconds * 1000))])
        except Exception as e:  # this worker still pauses; the others learn from their own 429
            log.warning("pause of %s not recorded in Redis: %s", host, e)

    def sent(self, host: str, token: str) -> None:
        # called from the transport as the bytes go out (not a coroutine): recorded right after
        self._background(self._record_sent(host, token))

    async def _record_sent(self, host: str, token: str) -> None:
        try:
            await self._sent(keys=[self._key(host, "sent"), self._key(host, "turn")],
                             args=[token, self._gaps.get(host, 0)])
        except Exception as e:  # done() then counts the send from its own time
            log.warning("host turn of %s not ended in Redis: %s", host, e)

    async def done(self, host: str, token: str) -> None:
        keep = self._alive.pop(token, None)
        if keep is not None:
            keep.cancel()
        try:
            await self._done(keys=[self._key(host, k) for k in ("sent", "turn", "inflight")],
                             args=[token, self._gaps.get(host, 0)])
        except Exception as e:  # the entries expire by themselves
            log.warning("request to %s not marked done in Redis: %s", host, e)

    async def _keep(self, host: str, token: str) -> None:
        """Renew the turn (until sent) and the place in flight of a request of ours until it is
        done, however long it waits to go out: only a dead worker's entries may expire."""
        keys = [self._key(host, "turn"), self._key(host, "inflight")]
        while True:
            await asyncio.sleep(min(self._lease_ms, self._ttl_ms) / 3000)
            try:
                await self._renew(keys=keys, args=[token, self._lease_ms, self._ttl_ms])
            except Exception as e:  # the next renewal may get through before the lease ends
                log.warning("host turn of %s not renewed in Redis: %s", host, e)

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def aclose(self) -> None:
        for keep in self._alive.values():
            keep.cancel()
        self._alive.clear()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self._client.aclose()
