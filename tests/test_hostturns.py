"""Host turns across workers (archiver/scale/hostturns.py) against a real Redis: every
RedisTurns or Fetcher here stands for one worker, with its own connections to Redis, and a
request's time is when the server machine's kernel received it (tests/arrivals.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from archiver.settings import FetchSettings
from archiver.fetch import Fetcher
from archiver.scale.hostturns import RedisTurns

from .arrivals import ArrivalRelay
from .rawserver import RawServer
from .services import free_port

HOST = "http://127.0.0.1:9"  # the turns never connect: a host is only a name to them
GAP = 0.3


def _namespace() -> str:
    return f"test-turns-{time.monotonic_ns()}"


def test_a_turn_given_back_without_a_recorded_send_still_spaces_the_next_request(redis_server):
    # the transport reports a send without waiting for Redis (it cannot wait), so the report
    # can be lost, or reach Redis after the request was over (a fast answer), or never be made
    # (a write that failed after bytes went out); the server may have seen the request all the
    # same, so the next worker waits the gap from the moment the turn was given back
    async def go() -> float:
        ns = _namespace()
        a, b = RedisTurns(redis_server.url, ns), RedisTurns(redis_server.url, ns)
        try:
            token = await a.take(HOST, GAP, 2)
            await a.done(HOST, token)
            given_back = time.monotonic()
            await asyncio.wait_for(b.take(HOST, GAP, 2), timeout=10)
            return time.monotonic() - given_back
        finally:
            await a.aclose()
            await b.aclose()

    assert asyncio.run(go()) >= GAP


def test_a_turn_stays_held_while_its_request_waits_longer_than_the_lease_to_go_out(redis_server):
    # the lease frees the turn of a worker that died; a live one whose request waits (a slow
    # connect, every global slot taken) keeps it, or a second worker starts alongside
    async def go() -> float:
        ns = _namespace()
        a, b = RedisTurns(redis_server.url, ns, lease=1.0), RedisTurns(redis_server.url, ns, lease=1.0)
        try:
            token = await a.take(HOST, GAP, 2)
            other = asyncio.ensure_future(b.take(HOST, GAP, 2))
            await asyncio.sleep(2.0)  # two leases
            sent = time.monotonic()
            a.sent(HOST, token)
            await asyncio.wait_for(other, timeout=10)
            granted = time.monotonic()
            await a.done(HOST, token)
            await b.done(HOST, other.result())
            return granted - sent
        finally:
            await a.aclose()
            await b.aclose()

    assert asyncio.run(go()) >= GAP


HOLDER = """
import asyncio, sys
from archiver.scale.hostturns import RedisTurns

async def main():
    turns = RedisTurns(sys.argv[1], sys.argv[2], in_flight_ttl=2.0, lease=2.0)
    await asyncio.wait_for(turns.take(sys.argv[3], 0.3, 1), timeout=10)
    print("holding", flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


def test_a_live_worker_keeps_its_turn_past_the_lease_and_a_killed_one_frees_it(redis_server):
    # a worker whose turn (lease 2 s) and place in flight (2 s) are renewed while it lives,
    # with per_host_concurrency 1: another worker gets neither until the first one is killed
    ns = _namespace()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, redis_server.url, ns, HOST],
                              stdout=subprocess.PIPE, text=True)

    async def go() -> bool:
        turns = RedisTurns(redis_server.url, ns)
        try:
            waiting = asyncio.ensure_future(turns.take(HOST, 0.3, 1))
            await asyncio.sleep(3.0)  # past the lease
            kept = not waiting.done()
            os.kill(holder.pid, signal.SIGKILL)
            await asyncio.wait_for(waiting, timeout=15)  # a bound on a hang: the entries expire within 2 s
            await turns.done(HOST, waiting.result())
            return kept
        finally:
            await turns.aclose()

    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        assert asyncio.run(go()), "another worker got the turn while its holder was alive"
    finally:
        holder.kill()
        holder.wait(timeout=10)


@pytest.mark.parametrize("limit", [1, 2])
def test_every_two_starts_are_the_delay_apart_and_at_most_the_limit_in_flight(redis_server, limit: int):
    # per_host_concurrency caps the requests to a host in flight across all workers;
    # per_host_delay spaces every two starts whatever the cap. Answers take 0.6 s against a
    # 0.2 s delay: with a cap of 2 a second request starts while the first is answered, and a
    # third, due 0.25 s later, waits for an answer
    delay, serving, most = 0.2, [0], [0]

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        serving[0] += 1
        most[0] = max(most[0], serving[0])
        await asyncio.sleep(0.6)
        serving[0] -= 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    slow.close = False  # type: ignore[attr-defined]
    ns = _namespace()

    async def go(base: str) -> list:
        workers = []
        for _ in range(3):
            f = Fetcher(FetchSettings(allow_private_networks=True, per_host_delay=delay, per_host_concurrency=limit,
                                      timeout=10))
            f.gates.shared = RedisTurns(redis_server.url, ns)
            workers.append(f)
        try:
            return await asyncio.gather(*(f.fetch(f"{base}/page-{i}") for i, f in enumerate(workers)))
        finally:
            for f in workers:
                await f.gates.shared.aclose()
                await f.aclose()

    with RawServer({"/robots.txt": slow} | {f"/page-{i}": slow for i in range(3)}) as srv:
        port = free_port()
        with ArrivalRelay({("127.0.0.1", port): ("127.0.0.1", srv.port)}) as relay:
            results = asyncio.run(go(f"http://127.0.0.1:{port}"))
    assert all(r.error is None and r.final is not None and r.final.status == 200 for r in results), \
        [str(r.error) for r in results]
    assert not relay.errors, relay.errors
    starts = [a.at for a in relay.by_address()[f"127.0.0.1:{port}"]]
    assert len(starts) == 6  # each worker's robots.txt and page
    assert min(b - a for a, b in zip(starts, starts[1:])) >= delay - 0.001  # the clock's slack only
    assert most[0] == limit
