"""Extraction worker processes: a worker that dies costs one item, workers die with their
parent, and pages waiting for a worker do not hold places that other hosts could use."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from archiver.polite import HostGate, Ticket
from archiver.workers import ExtractorPool, WorkerDied


def echo_or_die(item: str) -> tuple[str, int]:
    """Runs in a worker: 'die' ends the process as a crash in native code would."""
    if item == "die":
        os._exit(70)
    return item, os.getpid()


def test_a_dying_worker_costs_only_its_own_item():
    async def go() -> list:
        pool = ExtractorPool(2)
        try:
            items = [f"page-{i}" for i in range(12)]
            items.insert(5, "die")
            results = await asyncio.gather(*(pool.run(echo_or_die, it) for it in items), return_exceptions=True)
            after = await pool.run(echo_or_die, "after")
            return [results, after, pool.restarts]
        finally:
            pool.shutdown()

    results, after, restarts = asyncio.run(go())
    died = [r for r in results if isinstance(r, BaseException)]
    assert len(died) == 1 and isinstance(died[0], WorkerDied) and "died twice" in str(died[0])
    assert [r[0] for r in results if not isinstance(r, BaseException)] == [f"page-{i}" for i in range(12)]
    assert after[0] == "after" and restarts >= 2  # the pool was replaced and still works


def test_map_keeps_order_and_runs_in_other_processes():
    with ExtractorPool(2) as pool:
        got = list(pool.map(echo_or_die, ((f"x{i}",) for i in range(50)), chunksize=4))
    assert [g[0] for g in got] == [f"x{i}" for i in range(50)]
    assert os.getpid() not in {g[1] for g in got}
    with ExtractorPool(0) as pool:  # workers: 0 runs here
        assert {g[1] for g in pool.map(echo_or_die, [("a",), ("b",)])} == {os.getpid()}


PARENT = """
import sys, time
from archiver.workers import ExtractorPool
from archiver.extract import extract_page
if __name__ == "__main__":
    pool = ExtractorPool(2)
    list(pool.map(extract_page, [(b"<p>warm up</p>", "text/html")] * 4, chunksize=1))
    print(" ".join(str(p) for p in pool._pool._processes), flush=True)
    time.sleep(60)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux")
def test_workers_die_with_a_killed_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(p) for p in pids), "extraction workers outlived their parent"
    finally:
        proc.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return False


def test_waiting_out_a_crawl_delay_holds_no_place():
    """One place: a page whose host is in its Crawl-delay must not keep another host's page
    from being fetched; the place is taken when the host's turn comes."""
    async def go() -> tuple[bool, bool]:
        places = asyncio.Semaphore(1)
        global_slots = asyncio.Semaphore(8)
        slow, fast = HostGate(1, 30.0), HostGate(1, 0.0)
        slow.mark_sent()  # its next turn is 30 s away
        slow_ticket, fast_ticket = Ticket(places), Ticket(places)

        async def use(gate: HostGate, ticket: Ticket) -> None:
            async with gate.slot(global_slots, ticket=ticket):
                pass

        waiting = asyncio.create_task(use(slow, slow_ticket))
        await asyncio.sleep(0.05)
        await asyncio.wait_for(use(fast, fast_ticket), 2)
        fast_held = fast_ticket.held
        fast_ticket.release()
        waiting.cancel()
        return fast_held, slow_ticket.held

    fast_held, slow_held = asyncio.run(go())
    assert fast_held and not slow_held
