"""Per-host gaps hold between actual request starts, even when global slots are scarce."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from archiver.polite import Gates, retry_after_seconds


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


@pytest.mark.parametrize("value, pause", [
    ("2", 2.0),                                 # seconds
    ("Mon, 01 Jan 1990 00:00:00 GMT", 0.0),     # a date in the past: no wait
    ("Fri, 31 Dec 9999 23:59:59 GMT", 600.0),   # absurd date: the cap
    ("9" * 400, 600.0),                         # absurd number (overflows to infinity): the cap
    ("-5", 5.0), ("soon", 5.0), ("1.5", 5.0), ("\x00\xff", 5.0),  # unreadable: own back-off (delay, doubling)
])
def test_retry_after_forms_and_absurd_values_end_in_a_bounded_pause(value: str, pause: float):
    gate = Gates(concurrency=1, delay=5.0).get("http://h")
    assert gate.back_off(retry_after_seconds(value), cap=600.0) == pytest.approx(pause, abs=0.01)
