"""Per-host turns shared by every worker of a scaled setup, kept in the broker's Redis.

A turn is a lease on the right to start the next request to a host. It is granted when no
other turn is held and the last request's bytes went out at least the gap ago (plus a small
margin), and it is held until our own bytes go out; the time of that send, on Redis's clock
(so machines' clocks need not agree), starts the next gap. A turn whose holder dies expires.
Holding the turn to the send, not to the grant, is what keeps the gap at the server: a
request may wait for a connection or a busy event loop after its turn was granted.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

log = logging.getLogger(__name__)

_CLOCK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: last-sent, holder. ARGV: gap ms, token, lease ms. Returns 0 (granted) or ms to wait.
_TAKE = _CLOCK + """
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[2] then
  return math.max(1, math.min(20, redis.call('PTTL', KEYS[2])))
end
local ready = tonumber(redis.call('GET', KEYS[1]) or '0') + tonumber(ARGV[1])
if now < ready then return ready - now end
redis.call('SET', KEYS[2], ARGV[2], 'PX', tonumber(ARGV[3]))
return 0
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
        self._prefix = f"{namespace}:host:"
        self._gaps: dict[str, int] = {}
        self._pending: set[asyncio.Task[None]] = set()

    def _keys(self, host: str) -> list[str]:
        return [f"{self._prefix}{host}:sent", f"{self._prefix}{host}:turn"]

    async def take(self, host: str, gap: float) -> str:
        token = uuid.uuid4().hex
        gap_ms = self._gaps[host] = int((gap + MARGIN) * 1000)
        while True:
            wait_ms = int(await self._take(keys=self._keys(host), args=[gap_ms, token, LEASE_MS]))
            if wait_ms <= 0:
                return token
            await asyncio.sleep(wait_ms / 1000)

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
