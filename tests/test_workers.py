"""Extraction worker processes: a worker that dies costs one item, workers die with their
parent, and pages waiting for a worker do not hold places that other hosts could use."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archiver.polite import HostGate, Ticket
from archiver.procpool import ExtractorPool, WorkerDied


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
    assert len(died) == 1 and isinstance(died[0], WorkerDied) and "alone in its pool" in str(died[0])
    assert [r[0] for r in results if not isinstance(r, BaseException)] == [f"page-{i}" for i in range(12)]
    assert after[0] == "after" and restarts == 1  # the pool was replaced and still works


def test_map_keeps_order_and_runs_in_other_processes():
    with ExtractorPool(2) as pool:
        got = list(pool.map(echo_or_die, ((f"x{i}",) for i in range(50)), chunksize=4))
    assert [g[0] for g in got] == [f"x{i}" for i in range(50)]
    assert os.getpid() not in {g[1] for g in got}
    with ExtractorPool(0) as pool:  # workers: 0 runs here
        assert {g[1] for g in pool.map(echo_or_die, [("a",), ("b",)])} == {os.getpid()}


PARENT = """
import sys, time
from archiver.procpool import ExtractorPool
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


def test_a_crawl_survives_workers_dying_and_says_which_pages_they_took(tmp_path):
    """ARCHIVER_CRASH_AT=extract:2 kills every extraction worker at its second page, pool
    after pool: the crawl still ends normally, every article has a row, the pages lost with
    a worker say so, and the next crawl archives every on-topic article."""
    from archiver.demo.site import ON_TOPIC, SampleSite
    from archiver.index import Index

    from .conftest import write_config

    exe = Path(sys.executable).with_name("archiver")
    with SampleSite(crawl_delay=0.05) as site:
        config = write_config(site, tmp_path / "archive")
        env = dict(os.environ, ARCHIVER_CRASH_AT="extract:2")
        first = subprocess.run([str(exe), "crawl", "--config", str(config), "--no-progress"], env=env,
                               capture_output=True, text=True, timeout=300)
        assert first.returncode == 0, first.stderr[-2000:]
        with Index.open(tmp_path / "archive", readonly=True) as idx:
            rows = [r for r in idx.captures(kind="article")]
        died = [r for r in rows if r.state == "failed" and "extraction worker died" in (r.error or "")]
        assert died, "no page was recorded as lost with its worker"
        assert {r.state for r in rows} <= {"archived", "off_topic", "failed", "robots", "duplicate"}
        second = subprocess.run([str(exe), "crawl", "--config", str(config), "--no-progress"],
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 0, second.stderr[-2000:]
        with Index.open(tmp_path / "archive", readonly=True) as idx:
            archived = {r.final_url for r in idx.captures(kind="article", state="archived")}
        assert archived == {site.base_url + a.path for a in ON_TOPIC}


def test_map_names_a_dead_worker_instead_of_a_traceback():
    with ExtractorPool(2) as pool:
        with pytest.raises(WorkerDied, match="extraction worker died"):
            list(pool.map(echo_or_die, [("a",), ("die",), ("b",)], chunksize=1))
