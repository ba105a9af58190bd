"""`archiver scheduler` as a user runs it, without the services a scaled setup needs."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from archiver.demo_site import SampleSite

from .conftest import run_cli, write_config
from .services import Redis, free_port, redis_bin


def test_scheduler_with_an_unreachable_broker_says_so_in_one_line(tmp_path: Path):
    port = free_port()  # nothing listens there: connections are refused at once
    root = tmp_path / "arch"
    with SampleSite() as site:
        cfg = write_config(site, root)
        cfg.write_text(f"scale:\n  broker: redis://:hunter2-broker-pw@127.0.0.1:{port}/0\n" + cfg.read_text())
        res = run_cli("scheduler", "--once", "--config", str(cfg), timeout=60)
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
    from archiver.scheduler import Scheduler
    from archiver.tasks import DISCOVER_QUEUE, queue_sizes

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
