"""The daemon against a sample outlet whose content changes between polls, as a user runs it."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from archiver.config import load_config
from archiver.jobstore import next_run_times
from archiver.demo.site import ON_TOPIC, Article, SampleSite

from .conftest import invoke
from .test_recover import all_records_ok, rows_point_at_records

EXE = Path(sys.executable).with_name("archiver")
NEW = Article("/2025/06/15/blinken-seoul.html", "Blinken arrives in Seoul on the last leg of his Asia trip",
              "Kim Ji-woo", "2025-06-15T09:00:00Z",
              ("Antony Blinken arrived in Seoul on Sunday for talks on trade and security.",), ("blinken",))
REVISED = ON_TOPIC[1].path  # the South China Sea story gets a correction


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(what: str, predicate: Callable[[], object], timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def query(root: Path, sql: str, *args: object) -> list[tuple]:
    conn = sqlite3.connect(f"file:{root / 'index.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def health(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status
    except OSError:
        return 0


class Daemon:
    def __init__(self, config: Path, log: Path):
        self.config, self.log = config, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Daemon":
        self.proc = subprocess.Popen([str(EXE), "run", "--config", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "a"))
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def config_text(site: SampleSite, root: Path, port: int, every: str = "2s", extra: str = "") -> str:
    return site.config_yaml(str(root)).replace("schedule: {every: 15m}", f"schedule: {{every: {every}}}").replace(
        "discover:\n", f"daemon:\n  listen: 127.0.0.1:{port}\n  jitter: 0\n  shutdown_grace: 10\n"
                       f"refetch:\n  after: [4s]\n{extra}discover:\n")


@pytest.fixture
def running(tmp_path: Path):
    """A daemon of its own for each test, polling the sample outlet every 2 s."""
    port = free_port()
    with SampleSite(crawl_delay=0.05) as site:
        cfg = tmp_path / "config.yaml"
        cfg.write_text(config_text(site, tmp_path, port))
        d = Daemon(cfg, tmp_path / "daemon.log").start()
        try:
            yield site, tmp_path, port, d
        finally:
            if d.proc and d.proc.poll() is None:
                d.proc.kill()
                d.proc.wait(10)


def archived(root: Path) -> Counter:
    return Counter(r[0] for r in query(root, "SELECT final_url FROM captures WHERE kind = 'article' AND state = 'archived'"))


def passes_ended(root: Path) -> int:
    rows = query(root, "SELECT COUNT(*) FROM passes WHERE ended_at IS NOT NULL")
    return rows[0][0] if rows else 0


def first_pass_done(site: SampleSite, root: Path, port: int) -> None:
    """Wait until the daemon answers and its first pass has archived every on-topic article and
    ended (the pass ends a little after its last article: its requisites come after it)."""
    wait_for("healthz 200", lambda: health(port) == 200)
    wait_for("first pass", lambda: len(archived(root)) == len(ON_TOPIC))
    wait_for("the first pass's end", lambda: passes_ended(root) >= 1)


def test_1_first_poll_archives_the_outlet_and_reports_healthy(running):
    site, root, port, d = running
    wait_for("healthz 200", lambda: health(port) == 200)
    wait_for("first pass", lambda: len(archived(root)) == len(ON_TOPIC))
    assert set(archived(root)) == {site.base_url + a.path for a in ON_TOPIC}

    def pass_ended() -> str | None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
        return text if 'archiver_passes_total{outlet="harbor-times",result="ok"}' in text else None

    # the pass ends a little after its last article (its requisites come after it)
    metrics = wait_for("the first pass's end in /metrics", pass_ended)
    assert 'archiver_fetches_total{status_class="2xx"}' in metrics
    assert "archiver_last_success_timestamp_seconds{outlet=\"harbor-times\"}" in metrics
    status = invoke("status", "--config", str(d.config), timeout=30)
    assert status.returncode == 0, status.stderr  # read while the daemon runs
    row = next(line for line in status.stdout.splitlines() if "harbor-times" in line)
    assert "never" not in row and "not scheduled" not in row and "T" in row
    assert "totals:" in status.stdout and "archived" in status.stdout


def test_2_new_articles_appear_and_changed_ones_become_linked_captures(running):
    site, root, port, d = running
    first_pass_done(site, root, port)
    site.revise(REVISED, "Correction: an earlier version misstated the date of the talks.")
    site.publish(NEW)
    new_url, revised_url = site.base_url + NEW.path, site.base_url + REVISED
    wait_for("the new article", lambda: new_url in archived(root))
    wait_for("the revised article's second capture", lambda: archived(root)[revised_url] == 2, timeout=40)
    rows = query(root, "SELECT id, payload_digest, previous_capture_id FROM captures WHERE final_url = ? "
                       "AND state = 'archived' ORDER BY id", revised_url)
    assert rows[1][2] == rows[0][0] and rows[1][1] != rows[0][1]
    # unchanged articles were refetched conditionally: 304 answers, revisit rows, no new copy
    wait_for("conditional refetches", lambda: query(root, "SELECT COUNT(*) FROM captures WHERE kind = 'article' "
                                                          "AND state = 'not_modified'")[0][0] >= 3, timeout=40)
    assert all(n == 1 for url, n in archived(root).items() if url != revised_url)


def test_3_unchanged_feeds_are_fetched_conditionally_and_nothing_is_archived_twice(running):
    site, root, port, d = running
    first_pass_done(site, root, port)

    def feed_revisits() -> int:
        rows = query(root, "SELECT COUNT(*) FROM captures WHERE kind = 'feed' AND state = 'not_modified' "
                           "AND warc_record_id IS NOT NULL")
        return rows[0][0] if rows else 0

    wait_for("a conditional feed fetch answered 304", lambda: any(
        h.path == "/rss.xml" and h.headers.get("if-none-match") and h.status == 304 for h in site.hits))
    wait_for("its revisit record", feed_revisits)
    # articles refetched after refetch.after (4 s) are not archived again: nothing changed
    wait_for("conditional article refetches", lambda: query(
        root, "SELECT COUNT(*) FROM captures WHERE kind = 'article' AND state = 'not_modified'")[0][0] >= 1,
        timeout=40)
    counts = archived(root)
    assert len(counts) == len(ON_TOPIC) and all(n == 1 for n in counts.values()), counts


def test_4_sighup_with_a_broken_config_keeps_the_old_one(running):
    site, root, port, d = running
    wait_for("healthz 200", lambda: health(port) == 200)
    cfg = d.config
    good = cfg.read_text()
    cfg.write_text(good + "\nfetch_typo: 1\n")
    d.proc.send_signal(signal.SIGHUP)
    wait_for("the refusal in the log", lambda: "config reload refused" in d.log.read_text())
    assert "fetch_typo: unknown key" in d.log.read_text()
    passes_before = query(root, "SELECT COUNT(*) FROM passes")[0][0]
    wait_for("passes continuing", lambda: query(root, "SELECT COUNT(*) FROM passes")[0][0] > passes_before + 1)
    assert d.proc.poll() is None and health(port) == 200


def test_5_sigterm_exits_0_with_every_warc_closed_and_valid(running):
    site, root, port, d = running
    first_pass_done(site, root, port)
    wait_for("a second pass's end", lambda: passes_ended(root) >= 2)
    started = time.monotonic()
    assert d.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 10 + 5
    assert not list((root / "warc").glob("*.open"))
    assert all_records_ok(root) > 40
    assert rows_point_at_records(root) > 20
    assert "stopped cleanly" in d.log.read_text()


def test_6_restart_keeps_the_schedule_and_archives_nothing_twice(running):
    site, root, port, d = running
    first_pass_done(site, root, port)
    assert d.stop() == 0
    cfg = d.config
    cfg.write_text(config_text(site, root, port, every="1h"))
    d2 = Daemon(cfg, d.log).start()  # the interval changed: rescheduled half an hour ahead at least
    wait_for("healthz", lambda: health(port) == 200)
    loaded = load_config(cfg)
    wait_for("the new interval in the job store", lambda: next_run_times(loaded).get("harbor-times") and
             next_run_times(loaded)["harbor-times"].timestamp() > time.time() + 1700)
    planned = next_run_times(loaded)["harbor-times"]
    before = sum(archived(root).values())
    assert d2.stop() == 0
    d3 = Daemon(cfg, d.log).start()
    wait_for("healthz after restart", lambda: health(port) == 200)
    time.sleep(1.5)
    assert next_run_times(loaded)["harbor-times"] == planned  # the restart did not reset the schedule
    assert d3.stop() == 0
    assert sum(archived(root).values()) == before


def test_7_kill_9_during_a_pass_then_restart(tmp_path: Path):
    port = free_port()
    with SampleSite(crawl_delay=0.25) as site:
        cfg = tmp_path / "config.yaml"
        cfg.write_text(config_text(site, tmp_path, port, every="2s"))
        d = Daemon(cfg, tmp_path / "daemon.log").start()
        wait_for("a pass under way", lambda: len(list((tmp_path / "warc").glob("*.open"))) == 1, timeout=20)
        time.sleep(1.0)
        os.kill(d.proc.pid, signal.SIGKILL)
        d.proc.wait(10)
        d = Daemon(cfg, tmp_path / "daemon.log").start()
        wait_for("all on-topic articles", lambda: len(archived(tmp_path)) == len(ON_TOPIC), timeout=60)
        assert d.stop() == 0
    assert "repaired" in (tmp_path / "daemon.log").read_text()
    assert not list((tmp_path / "warc").glob("*.open"))
    assert all_records_ok(tmp_path) > 20
    assert rows_point_at_records(tmp_path) > 10
    assert all(n == 1 for n in archived(tmp_path).values())


def test_8_sigterm_lets_the_pass_in_flight_finish_within_the_grace(tmp_path: Path):
    port = free_port()
    with SampleSite(crawl_delay=0.25) as site:
        cfg = tmp_path / "config.yaml"
        # the pass takes a few seconds; the grace is ample, so it ends before the grace does
        cfg.write_text(config_text(site, tmp_path, port, every="1h").replace("shutdown_grace: 10", "shutdown_grace: 40"))
        d = Daemon(cfg, tmp_path / "daemon.log").start()
        wait_for("a pass under way", lambda: len(list((tmp_path / "warc").glob("*.open"))) == 1, timeout=20)
        assert "pass of harbor-times done" not in d.log.read_text()
        assert d.stop(signal.SIGTERM, timeout=60) == 0
    log = d.log.read_text()
    after = log[log.index("stopping: no new passes"):]
    assert "pass of harbor-times done" in after  # finished, not cut off
    assert "CancelledError" not in log and "cancelled" not in after
    assert len(archived(tmp_path)) == len(ON_TOPIC)
    assert not list((tmp_path / "warc").glob("*.open"))
