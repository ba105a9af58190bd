"""Per-host gaps hold between actual request starts, even when global slots are scarce."""

from __future__ import annotations

import asyncio
import random
import time

from archiver.polite import Gates


def test_gap_holds_between_actual_starts_under_global_contention():
    async def go() -> dict[str, list[float]]:
        gates = Gates(concurrency=2, delay=0.0)
        gates.set_min_delay("slow", 0.2)
        global_slots = asyncio.Semaphore(1)  # every request competes for one global slot
        starts: dict[str, list[float]] = {"slow": [], "fast": []}
        rng = random.Random(7)

        async def request(host: str) -> None:
            async with gates.get(host).slot(global_slots):
                starts[host].append(time.monotonic())
                await asyncio.sleep(rng.uniform(0.0, 0.15))  # a response takes a while

        await asyncio.gather(*(request("slow") for _ in range(6)), *(request("fast") for _ in range(20)))
        return starts

    starts = asyncio.run(go())
    slow = sorted(starts["slow"])
    assert len(slow) == 6 and len(starts["fast"]) == 20
    assert min(b - a for a, b in zip(slow, slow[1:])) >= 0.2 - 0.005
