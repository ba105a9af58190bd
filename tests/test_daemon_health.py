"""The daemon never stops in silence: idle and surplus connections, running out of file
descriptors, a broken job store and a disk below its floor are each logged (without a flood),
reported by /healthz as 503 with the reason, and survived: passes run again once the cause
is gone. Real daemon processes, real sockets, real SQLite files."""

from __future__ import annotations

import asyncio
import re
import resource
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from archiver.config import load_config
from archiver.demo.site import SampleSite
from archiver.errors import ConfigError
from archiver.listener import Listener, Response

from .test_daemon import EXE, archived, config_text, free_port, wait_for

HUGE_FLOOR = 10**15  # 1 PB: more than any test machine has free, so no disk needs filling


def get(port: int, path: str = "/healthz") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def metric(port: int, name: str) -> float | None:
    status, text = get(port, "/metrics")
    m = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if status == 200 and m else None


RECORD = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ [A-Z]+ ([\w.]+): ")


def daemon_records(lines: list[str]) -> list[str]:
    """Log records, less a pass's own report of each document it could not fetch or store."""
    return [line for line in lines if (m := RECORD.match(line)) and not m.group(1).startswith("archiver.crawl")]


def with_floor(text: str, floor: int) -> str:
    return text.replace("  shutdown_grace: 10\n", f"  shutdown_grace: 10\n  min_free_bytes: {floor}\n")


class Run:
    """`archiver run` as a child process; its log is read into memory as it comes."""

    def __init__(self, config: Path, preexec_fn: Callable[[], None] | None = None):
        self.proc = subprocess.Popen([str(EXE), "run", "--config", str(config)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     preexec_fn=preexec_fn)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def count(self, text: str) -> int:
        return sum(text in line for line in list(self.lines))

    def text(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        self._reader.join(10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def wait_pass_done(run: Run, after: int = 0, timeout: float = 40) -> None:
    wait_for("a pass done", lambda: run.count("pass of harbor-times done") > after, timeout=timeout)


def open_idle(port: int, n: int) -> list[socket.socket]:
    """n connections that never send a byte (non-blocking connects: a full queue must not stall us)."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
    return socks


@pytest.fixture
def many_fds():
    """Room in this process for the idle connections a test opens."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1400 if hard == resource.RLIM_INFINITY else min(hard, 1400)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield want
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _few_fds() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


def test_idle_connections_beyond_the_fd_limit_cost_nothing(tmp_path: Path, many_fds: int):
    n = min(1100, many_fds - 200)
    assert n > 256 * 2, f"this process may open only {many_fds} files"  # more than the daemon may
    port = free_port()
    with SampleSite(crawl_delay=0.02) as site:
        cfg = tmp_path / "config.yaml"
        cfg.write_text(config_text(site, tmp_path, port, every="2s"))
        run = Run(cfg, preexec_fn=_few_fds)
        try:
            wait_pass_done(run)
            before_lines, passes = len(run.lines), run.count("pass of harbor-times done")
            idle = open_idle(port, n)
            try:
                # the surplus is closed at once, the rest time out: /healthz answers again
                wait_for("healthz 200 with the idle connections still open on our side",
                         lambda: get(port) == (200, "ok\n"), timeout=30)
                wait_pass_done(run, after=passes)  # the schedule goes on
                assert run.proc.poll() is None
                refused = metric(port, "archiver_http_connections_refused_total")
            finally:
                for s in idle:
                    s.close()
            noise = daemon_records(run.lines[before_lines:])
            assert len(noise) < 100, "".join(noise[-40:])
            assert not any("Traceback" in line or "Too many open files" in line for line in run.lines[before_lines:])
            assert sum("closing new ones at once" in line for line in noise) == 1  # once, not per connection
            assert refused is not None and refused >= n // 2  # most were closed at once
            assert run.stop() == 0
        finally:
            run.kill()


def test_out_of_descriptors_accept_backs_off_and_scheduling_survives(tmp_path: Path):
    port = free_port()
    with SampleSite(crawl_delay=0.02) as site:
        cfg = tmp_path / "config.yaml"
        cfg.write_text(config_text(site, tmp_path, port, every="2s"))
        run = Run(cfg)
        try:
            wait_pass_done(run)
            limits = resource.prlimit(run.proc.pid, resource.RLIMIT_NOFILE)
            before_lines = len(run.lines)
            # no new descriptor at all: accept, sockets, SQLite's journal and WARC files all fail
            resource.prlimit(run.proc.pid, resource.RLIMIT_NOFILE, (3, limits[1]))
            waiting = open_idle(port, 200)  # queued in the listen backlog, each one an EMFILE
            try:
                time.sleep(6)  # passes fall due and fail; accepts fail: long enough for a flood to show
                noise = daemon_records(run.lines[before_lines:])
                assert len(noise) < 100, "".join(noise[-60:])
                assert run.proc.poll() is None
                resource.prlimit(run.proc.pid, resource.RLIMIT_NOFILE, limits)
                passes = run.count("pass of harbor-times done")
                wait_for("healthz 200 once descriptors are back", lambda: get(port) == (200, "ok\n"), timeout=40)
                wait_pass_done(run, after=passes, timeout=60)  # passes run again
            finally:
                for s in waiting:
                    s.close()
            assert sum("cannot accept connections" in line for line in noise) == 1, "".join(noise)
            # the job store needs no new descriptor (WAL, on its pooled connection); its own
            # failures are the tests below
            assert run.stop() == 0
        finally:
            run.kill()


def test_low_free_space_is_503_waits_for_room_and_recovers_on_reload(tmp_path: Path):
    port = free_port()
    with SampleSite(crawl_delay=0.02) as site:
        cfg = tmp_path / "config.yaml"
        text = config_text(site, tmp_path, port, every="2s")
        cfg.write_text(with_floor(text, HUGE_FLOOR))
        run = Run(cfg)
        try:
            # started below the floor: says why, answers 503, writes nothing, waits
            wait_for("the room message", lambda: run.count("waiting for room before starting"), timeout=20)
            status, body = get(port)
            assert status == 503 and "below daemon.min_free_bytes" in body and str(tmp_path) in body, body
            assert metric(port, "archiver_healthy") == 0
            free = metric(port, "archiver_storage_free_bytes")
            assert free is not None and 0 < free < HUGE_FLOOR
            assert metric(port, "archiver_storage_min_free_bytes") == HUGE_FLOOR
            time.sleep(2.5)
            assert run.proc.poll() is None and not (tmp_path / "index.sqlite3").exists()
            assert run.count("waiting for room before starting") == 1  # said once, not every look

            # room appears (the floor is lowered): passes run, healthy
            cfg.write_text(with_floor(text, 1 << 20))
            run.proc.send_signal(signal.SIGHUP)
            wait_for("healthz 200 after the reload", lambda: get(port) == (200, "ok\n"), timeout=30)
            wait_for("articles archived", lambda: len(archived(tmp_path)) > 0, timeout=40)
            assert metric(port, "archiver_healthy") == 1

            # and the reverse while running: 503, and no pass starts
            wait_pass_done(run)
            cfg.write_text(with_floor(text, HUGE_FLOOR))
            run.proc.send_signal(signal.SIGHUP)
            wait_for("healthz 503 after raising the floor", lambda: get(port)[0] == 503, timeout=20)
            assert "below daemon.min_free_bytes" in get(port)[1]
            wait_for("a pass held back", lambda: run.count("pass of harbor-times not started"), timeout=20)
            started = run.count("pass of harbor-times starting")
            time.sleep(4.5)  # two intervals
            assert run.count("pass of harbor-times starting") == started
            assert run.stop() == 0
            assert "Traceback" not in run.text(), run.text()[-3000:]
        finally:
            run.kill()


def test_a_broken_job_store_is_logged_retried_reported_and_recovered(tmp_path: Path):
    port = free_port()
    with SampleSite(crawl_delay=0.02) as site:
        cfg = tmp_path / "config.yaml"
        cfg.write_text(config_text(site, tmp_path, port, every="1s"))
        run = Run(cfg)
        try:
            wait_pass_done(run)
            wait_for("healthz 200", lambda: get(port) == (200, "ok\n"))
            store = tmp_path / "scheduler.sqlite3"
            before_lines = len(run.lines)
            # the job store's file turns into something that is not a database (its header zeroed),
            # under an exclusive lock so no write of the daemon's is cut in two
            lock = sqlite3.connect(store, isolation_level=None, timeout=10)
            lock.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # else page 1 is read from the WAL
            lock.execute("BEGIN EXCLUSIVE")
            with open(store, "r+b") as f:
                header = f.read(100)
                f.seek(0)
                f.write(bytes(100))
            lock.execute("ROLLBACK")
            lock.close()
            try:
                wait_for("healthz 503 naming the job store",
                         lambda: get(port)[0] == 503 and "job store" in get(port)[1], timeout=20)
                assert "file is not a database" in get(port)[1]
                assert run.count("file is not a database") >= 1 and run.proc.poll() is None
                # passes cannot start: after two intervals and the grace, /healthz says so too
                wait_for("the overdue reason", lambda: "no pass started" in get(port)[1], timeout=40)
                assert metric(port, "archiver_healthy") == 0
                assert (metric(port, "archiver_job_store_errors_total") or 0) > 1
                broken = run.lines[before_lines:]
            finally:
                with open(store, "r+b") as f:
                    f.write(header)
            started = run.count("pass of harbor-times starting")
            wait_for("healthz 200 once the job store is back", lambda: get(port) == (200, "ok\n"), timeout=30)
            wait_for("a pass after the repair", lambda: run.count("pass of harbor-times starting") > started,
                     timeout=30)
            assert run.count("works again") >= 1
            assert len(broken) < 100, "".join(broken)  # retried, not flooded
            assert run.stop() == 0
        finally:
            run.kill()


def test_started_on_a_broken_job_store_it_stays_up_and_schedules_once_it_is_gone(tmp_path: Path):
    port = free_port()
    store = tmp_path / "scheduler.sqlite3"
    store.write_bytes(b"not a database\n" * 500)
    with SampleSite(crawl_delay=0.02) as site:
        cfg = tmp_path / "config.yaml"
        cfg.write_text(config_text(site, tmp_path, port, every="2s"))
        run = Run(cfg)
        try:
            wait_for("healthz 503 naming the job store",
                     lambda: get(port)[0] == 503 and "job store" in get(port)[1], timeout=30)
            assert "file is not a database" in get(port)[1]
            time.sleep(4)  # retried meanwhile, quietly
            assert run.proc.poll() is None and run.count("pass of harbor-times starting") == 0
            noise = daemon_records(run.lines)
            assert len(noise) < 30 and "Traceback" not in run.text(), run.text()
            store.unlink()  # the fix: the broken file goes, and the schedule is made anew
            wait_for("healthz 200", lambda: get(port) == (200, "ok\n"), timeout=30)
            wait_pass_done(run)
            assert run.stop() == 0
        finally:
            run.kill()


def test_min_free_bytes_is_validated_with_file_and_line(tmp_path: Path):
    cfg = tmp_path / "config.yaml"
    with SampleSite() as site:
        text = config_text(site, tmp_path, 8771)
    cfg.write_text(with_floor(text, 0).replace("min_free_bytes: 0", "min_free_bytes: plenty"))
    line = next(i for i, t in enumerate(cfg.read_text().splitlines(), 1) if t.startswith("  min_free_bytes:"))
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert [str(p) for p in e.value.problems] == [
        f"{cfg}:{line}: daemon.min_free_bytes: expected a size such as 1000000 or '1 GB' (got 'plenty')"]
    cfg.write_text(with_floor(text, 0).replace("min_free_bytes: 0", "min_free_bytes: 512 MiB"))
    assert load_config(cfg).config.daemon.min_free_bytes == 512 * 2**20
    cfg.write_text(text)
    assert load_config(cfg).config.daemon.min_free_bytes == 256 * 2**20


def test_listener_bounds_connections_time_and_request_size():
    async def scenario() -> None:
        listener = Listener("127.0.0.1", 0, lambda method, path: Response(200, f"{method} {path}\n".encode()),
                            max_connections=3, request_timeout=0.5, max_request_bytes=1024)
        listener.start()
        port = listener.ports[0]

        async def ask(data: bytes) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(data)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            return answer

        try:
            assert (await ask(b"GET /healthz?x=1 HTTP/1.1\r\nHost: a\r\n\r\n")).endswith(b"\r\n\r\nGET /healthz\n")
            assert (await ask(b"HEAD /healthz HTTP/1.1\r\n\r\n")).endswith(b"Connection: close\r\n\r\n")
            assert (await ask(b"POST / HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405 ")
            assert (await ask(b"hello\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
            assert (await ask(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 300)).startswith(b"HTTP/1.1 431 ")
            # three idle connections fill it: a fourth is closed at once, unanswered
            idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
            await asyncio.sleep(0.1)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                assert await asyncio.wait_for(reader.read(), 5) == b""  # closed without a word
            except ConnectionResetError:
                pass
            writer.close()
            assert listener.stats.refused == 1
            # a client trickling a byte at a time is cut off by the request timeout all the same
            reader, writer = idle[0]
            cut = False
            for _ in range(50):  # 5 s of trickling, ten times the timeout
                try:
                    writer.write(b"G")
                    await writer.drain()
                except ConnectionError:
                    cut = True
                await asyncio.sleep(0.1)
                if cut or reader.at_eof():
                    break
            assert cut or reader.at_eof()
            for r, w in idle[1:]:
                assert await asyncio.wait_for(r.read(), 5) == b""  # timed out
                w.close()
            await asyncio.sleep(0.1)
            assert listener.stats.timed_out == 3 and listener.connections == 0
            assert (await ask(b"GET /metrics HTTP/1.1\r\n\r\n")).endswith(b"GET /metrics\n")
        finally:
            await listener.aclose()

    asyncio.run(scenario())
