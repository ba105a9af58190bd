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


def test_a_start_waits_for_the_bytes_of_the_request_before_not_only_for_its_slot():
    # per_host_concurrency 2 in one process: the first request's bytes go out 0.3 s after it
    # got its slot (a slow connect, a busy loop); the second may not go out before them, nor
    # within the gap after them
    async def go() -> list[float]:
        gate = Gates(concurrency=2, delay=0.2).get("h")
        global_slots = asyncio.Semaphore(8)
        sends: list[float] = []

        async def request(connect: float) -> None:
            async with gate.slot(global_slots):
                await asyncio.sleep(connect)
                gate.mark_sent()  # what the transport calls as the request's bytes are written
                sends.append(time.monotonic())
                await asyncio.sleep(0.5)  # the answer

        await asyncio.gather(request(0.3), request(0.0))
        return sorted(sends)

    first, second = asyncio.run(go())
    assert second - first >= 0.2 - 0.001


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


def test_a_429_one_worker_gets_pauses_the_host_for_every_worker(redis_server):
    # fetchers with the host turns of a scaled setup, as separate workers have them
    from archiver.settings import FetchSettings
    from archiver.fetch import Fetcher
    from archiver.scale.hostturns import RedisTurns

    from .rawserver import RawServer, raw

    arrivals: list[tuple[str, float]] = []

    def timed(path: str, data: bytes):
        inner = raw(data)

        async def handler(reader, writer):
            arrivals.append((path, time.monotonic()))
            await inner(reader, writer)
        return handler

    routes = {"/slow-down": timed("/slow-down", b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 2\r\n"
                                                b"Content-Length: 0\r\n\r\n"),
              "/ok": timed("/ok", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")}
    namespace = f"test-pause-{time.monotonic_ns()}"

    async def go(srv: RawServer):
        workers = []
        for timeout in (30, 30, 1):
            f = Fetcher(FetchSettings(allow_private_networks=True, per_host_delay=0, timeout=timeout))
            f.gates.shared = RedisTurns(redis_server.url, namespace)
            workers.append(f)
        a, b, c = workers
        try:
            first = await a.fetch(srv.url("/slow-down"))
            await asyncio.sleep(0.2)  # the pause reaches Redis
            impatient = await c.fetch(srv.url("/ok"))  # may wait 1 s, the pause has ~1.8 s left
            second = await b.fetch(srv.url("/ok"))
            return first, impatient, second
        finally:
            for f in workers:
                await f.gates.shared.aclose()
                await f.aclose()

    with RawServer(routes) as srv:
        first, impatient, second = asyncio.run(go(srv))
    assert first.final is not None and first.final.status == 429
    assert impatient.error is not None and impatient.error.reason == "host-backoff"
    assert "another worker" in str(impatient.error)
    assert second.error is None and second.final is not None and second.final.status == 200
    (p1, t1), (p2, t2) = arrivals
    assert (p1, p2) == ("/slow-down", "/ok") and t2 - t1 >= 1.9, arrivals


@pytest.mark.parametrize("limit", [1, 2])
def test_per_host_concurrency_holds_across_workers(redis_server, limit: int):
    # three workers, each allowed `limit` requests to the host, fetch six slow pages at once:
    # the server never has more than `limit` of them in flight
    from archiver.settings import FetchSettings
    from archiver.fetch import Fetcher
    from archiver.scale.hostturns import RedisTurns

    from .rawserver import RawServer

    now_serving, most = [0], [0]

    async def slow(reader, writer):
        now_serving[0] += 1
        most[0] = max(most[0], now_serving[0])
        await asyncio.sleep(0.4)
        now_serving[0] -= 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    namespace = f"test-concurrency-{time.monotonic_ns()}"

    async def go(srv: RawServer):
        workers = []
        for _ in range(3):
            f = Fetcher(FetchSettings(allow_private_networks=True, per_host_delay=0, per_host_concurrency=limit))
            f.gates.shared = RedisTurns(redis_server.url, namespace)
            workers.append(f)
        try:
            return await asyncio.gather(*(f.fetch(srv.url(f"/page-{i}-{j}")) for i, f in enumerate(workers)
                                          for j in range(2)))
        finally:
            for f in workers:
                await f.gates.shared.aclose()
                await f.aclose()

    with RawServer({f"/page-{i}-{j}": slow for i in range(3) for j in range(2)}) as srv:
        results = asyncio.run(go(srv))
    assert all(r.error is None and r.final.status == 200 for r in results)
    assert most[0] == limit


def test_a_page_waiting_for_a_place_does_not_hold_its_host_from_a_page_that_has_one():
    # one place (fetch.concurrency 1): page A holds it and is redirected to host Y, where
    # page B waits for a place. B must wait without Y's turn, or neither ever finishes
    from archiver.settings import FetchSettings
    from archiver.fetch import Fetcher
    from archiver.polite import Ticket

    from .rawserver import RawServer, raw

    ok = raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    with RawServer({"/a2": ok, "/b": ok}, host="127.0.0.2") as y:
        moved = raw(b"HTTP/1.1 301 Moved Permanently\r\nLocation: " + y.url("/a2").encode()
                    + b"\r\nContent-Length: 0\r\n\r\n")

        async def slow_redirect(reader, writer):
            await asyncio.sleep(0.6)  # B reaches Y's gate meanwhile
            await moved(reader, writer)

        with RawServer({"/a": slow_redirect}) as x:
            async def go():
                f = Fetcher(FetchSettings(allow_private_networks=True, per_host_delay=0))
                places = asyncio.Semaphore(1)

                async def page(url: str):
                    ticket = Ticket(places)
                    try:
                        return await f.fetch(url, ticket=ticket)
                    finally:
                        ticket.release()
                try:
                    a = asyncio.ensure_future(page(x.url("/a")))
                    await asyncio.sleep(0.3)
                    b = asyncio.ensure_future(page(y.url("/b")))
                    return await asyncio.wait_for(asyncio.gather(a, b), 20)
                finally:
                    await f.aclose()

            a, b = asyncio.run(go())
    assert a.final is not None and a.final.status == 200 and a.final.url == y.url("/a2")
    assert b.final is not None and b.final.status == 200
