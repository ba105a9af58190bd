"""Per-host turns shared by every worker of a scaled setup, kept in the broker's Redis.

One key per host holds the start time of the last turn given out. Taking a turn is one
atomic script: start = max(now, last + gap), store it, tell the caller how long to wait.
Redis's own clock decides, so workers on machines whose clocks disagree still space their
requests. A margin is added to each gap: a worker may send a little after its turn begins
(a busy event loop), and the next worker must not then come too soon.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)

_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gap = tonumber(ARGV[1])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local start = math.max(now, last + gap)
redis.call('SET', KEYS[1], start, 'PX', (start - now) + gap + 60000)
return {start - now, start}
"""

_NOW = """
local t = redis.call('TIME')
return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

MARGIN = 0.05  # seconds added to every gap across workers


class RedisTurns:
    """`await turns.wait_turn(host, gap)` returns when this process may start a request."""

    def __init__(self, url: str, namespace: str = "archiver"):
        import redis.asyncio as aioredis

        self._client = aioredis.Redis.from_url(url)
        self._take = self._client.register_script(_TAKE)
        self._now = self._client.register_script(_NOW)
        self._prefix = f"{namespace}:host-turn:"

    async def wait_turn(self, host: str, gap: float) -> int:
        wait_ms, start = await self._take(keys=[self._prefix + host], args=[int((gap + MARGIN) * 1000)])
        if int(wait_ms) > 0:
            await asyncio.sleep(int(wait_ms) / 1000)
        return int(start)

    async def on_time(self, turn: int) -> bool:
        return int(await self._now()) <= turn + int(MARGIN * 1000)

    async def aclose(self) -> None:
        await self._client.aclose()
