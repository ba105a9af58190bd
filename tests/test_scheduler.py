"""`archiver scheduler` as a user runs it, without the services a scaled setup needs."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from archiver.demo.site import SampleSite

from .conftest import invoke, write_config
from .services import Redis, free_port, redis_bin
from .test_daemon import wait_for


def test_scheduler_with_an_unreachable_broker_says_so_in_one_line(tmp_path: Path):
    port = free_port()  # nothing listens there: connections are refused at once
    root = tmp_path / "arch"
    with SampleSite() as site:
        cfg = write_config(site, root)
        cfg.write_text(f"scale:\n  broker: redis://:hunter2-broker-pw@127.0.0.1:{port}/0\n" + cfg.read_text())
        res = invoke("scheduler", "--once", "--config", str(cfg), timeout=60)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith(f"archiver: broker redis://:***@127.0.0.1:{port}/0 cannot be reached: ")
    assert "Connection refused" in lines[0]
    assert "hunter2-broker-pw" not in res.stdout + res.stderr
    if (root / "index.sqlite3").exists():  # no pass was started that no worker could ever be told about
        conn = sqlite3.connect(root / "index.sqlite3")
        assert conn.execute("SELECT count(*) FROM passes").fetchone()[0] == 0
        conn.close()


def test_a_broker_lost_after_the_start_costs_one_error_and_the_pass_is_sent_again(tmp_path: Path):
    from archiver.config import load_config
    from archiver.errors import BrokerError
    from archiver.scale.scheduler import Scheduler
    from archiver.scale.tasks import DISCOVER_QUEUE, queue_sizes

    if redis_bin() is None:
        if os.environ.get("ARCHIVER_REQUIRE_SERVICES"):
            pytest.fail("redis is not installed (.ci/run installs it from Debian)")
        pytest.skip("needs redis (apt-get install redis-server)")
    with SampleSite() as site:
        cfg_path = write_config(site, tmp_path / "arch")
        outlet = load_config(cfg_path).config.outlets[0].name
        broker = Redis()
        cfg_path.write_text(f"scale:\n  broker: {broker.url}\n" + cfg_path.read_text())
        cfg = load_config(cfg_path)
        with broker:
            s = Scheduler(cfg)
        try:  # the broker is gone now
            with pytest.raises(BrokerError) as lost:
                s.start_pass(outlet)
        finally:
            s.close()
        assert f"broker {broker.url}: cannot send the discovery of pass 1 ({outlet})" in str(lost.value)

        back = Redis()  # the broker again, at the same address
        back.port, back.url = broker.port, broker.url
        with back:
            s = Scheduler(cfg)
            try:
                assert s.resend_undiscovered() == 1  # the pass it could not announce
                assert queue_sizes(s.broker)[DISCOVER_QUEUE] == 1
            finally:
                s.close()


def test_scheduling_survives_a_job_store_that_fails_mid_run_and_resumes(tmp_path: Path, redis_server, caplog):
    """The job store refuses writes for a while (a trigger makes every UPDATE of a job fail, as
    a full disk or a read-only file would): each turn's update_job raises inside a scheduling
    round. The round is logged and tried again, and turns come again once writes work."""
    from archiver.config import load_config
    from archiver.scale.scheduler import Scheduler

    caplog.set_level(logging.INFO)
    with SampleSite() as site:
        cfg_path = write_config(site, tmp_path / "arch")
        text = cfg_path.read_text().replace("schedule: {every: 15m}", "schedule: {every: 1s}")
        broker = redis_server.url.rsplit("/", 1)[0] + "/5"  # a database of its own: its message stays unread
        cfg_path.write_text(f"scale:\n  broker: {broker}\n" + text)
        cfg = load_config(cfg_path)
        s = Scheduler(cfg)
        stop = threading.Event()
        runner = threading.Thread(target=s.forever, args=(stop,), daemon=True)
        runner.start()

        def turns() -> int:  # no worker here: after the first, every turn finds pass 1 still open
            return sum("this turn is skipped" in r.getMessage() for r in list(caplog.records))

        def said(text: str) -> int:
            return sum(text in r.getMessage() for r in list(caplog.records))

        store: sqlite3.Connection | None = None
        try:
            wait_for("turns of the schedule", lambda: turns() >= 2, timeout=20)
            store = sqlite3.connect(tmp_path / "arch" / "scheduler.sqlite3", isolation_level=None, timeout=10)
            store.execute("CREATE TRIGGER refuse_writes BEFORE UPDATE ON apscheduler_jobs "
                          "BEGIN SELECT RAISE(ABORT, 'job writes refused'); END")
            time.sleep(2.5)  # turns fall due and their rounds fail meanwhile
            store.execute("DROP TRIGGER refuse_writes")
            healed = turns()
            wait_for("turns once the job store works again", lambda: turns() >= healed + 2, timeout=20)
            assert runner.is_alive()
            # said when it began, once more at most while it lasted, and when it ended
            assert said("job writes refused") and said("scheduling works again")
            assert 1 <= said("scheduling round failed") <= 2
        finally:
            if store is not None:
                store.close()
            stop.set()
            runner.join(30)
            s.close()
    assert not runner.is_alive()
    conn = sqlite3.connect(tmp_path / "arch" / "index.sqlite3")
    assert conn.execute("SELECT count(*) FROM passes").fetchone()[0] == 1  # one open pass, never doubled
    conn.close()
