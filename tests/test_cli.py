"""`archiver crawl` and `archiver demo` as a user runs them."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

from .conftest import invoke, run_cli, write_config


def test_crawl_prints_summary_and_exits_0(site, tmp_path: Path):
    """In a process of its own: the resources line reports that process and its workers."""
    path = write_config(site, tmp_path / "arch")
    proc = run_cli("crawl", "--config", str(path), "--format", "jsonl")
    assert proc.returncode == 0, proc.stderr
    [summary] = [json.loads(line) for line in proc.stdout.splitlines()]
    assert summary["outlet"] == "harbor-times"
    assert [summary[k] for k in ("discovered", "on_topic", "fetched", "archived", "robots", "failed")] == \
        [12, 7, 11, 7, 1, 1]
    assert "wrote warc/" in proc.stderr  # the notes after the summary
    # the pass's own cost; extraction ran in workers, whose memory is their own (~35 MB), not
    # the crawling process's, which getrusage would report through fork + exec
    res = re.search(r"resources: [\d.]+ s CPU, peak memory (\d+) MB; extraction workers [\d.]+ s CPU, "
                    r"peak memory (\d+) MB each at most", proc.stderr)
    assert res, proc.stderr[-500:]
    assert 10 < int(res.group(2)) < int(res.group(1))


def test_unreachable_outlet_is_reported_and_the_pass_ends_cleanly(tmp_path: Path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here now
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
storage: {{root: {tmp_path / 'st'}}}
fetch: {{allow_private_networks: true, timeout: 2}}
topics: [{{name: t, any: [Blinken]}}]
outlets: [{{name: gone, feeds: ["http://127.0.0.1:{port}/rss.xml"]}}]
""")
    proc = invoke("crawl", "--config", str(cfg))
    assert proc.returncode == 0
    assert "gone: feed: http://127.0.0.1:" in proc.stdout and "connect" in proc.stdout
    for col in ("outlet", "discovered", "on-topic", "fetched", "archived", "skipped by robots", "failed",
                "blocked", "already had"):  # the summary table a person reads
        assert col in proc.stdout


def test_unwritable_storage_exits_1(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
storage: {{root: {blocker / 'st'}}}
topics: [{{name: t, any: [Blinken]}}]
outlets: [{{name: o, feeds: ["http://127.0.0.1:9/rss.xml"]}}]
""")
    proc = invoke("crawl", "--config", str(cfg))
    assert proc.returncode == 1
    assert "could not run" in proc.stderr and str(blocker) in proc.stderr


def test_demo_archives_the_sample_outlet(tmp_path: Path):
    proc = invoke("demo", "--storage", str(tmp_path / "demo"))
    assert proc.returncode == 0, proc.stderr
    assert "sample outlet 'harbor-times' serving on http://127.0.0.1:" in proc.stdout
    assert f"WARC files      {tmp_path / 'demo' / 'warc'}" in proc.stdout
    warcs = list((tmp_path / "demo" / "warc").glob("*.warc.gz"))
    assert len(warcs) == 1 and not list((tmp_path / "demo" / "warc").glob("*.open"))
    assert len(list((tmp_path / "demo" / "text").rglob("*.article.txt"))) == 7


def test_the_wrapper_reads_a_config_relative_to_the_callers_folder(site, tmp_path: Path):
    """`scripts/archiver check-config my.yaml` from another folder reads ./my.yaml."""
    import subprocess

    write_config(site, tmp_path / "arch")
    (tmp_path / "my.yaml").write_text((tmp_path / "arch" / "config.yaml").read_text())
    wrapper = Path(__file__).resolve().parent.parent / "scripts" / "archiver"
    proc = subprocess.run(["bash", str(wrapper), "check-config", "my.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("ok"), proc.stdout


def test_errors_end_a_command_as_one_line_and_its_exit_code(tmp_path: Path):
    """cli.main is the one boundary: a StorageError is one `archiver:` line and exit 1, a bad
    config every problem as FILE:LINE and exit 2, and commands return their code to it."""
    from archiver.cli import main

    empty = tmp_path / "empty.yaml"
    empty.write_text(f"""
storage: {{root: {tmp_path / 'nothing-yet'}}}
topics: [{{name: t, any: [Blinken]}}]
outlets: [{{name: o, feeds: ["http://127.0.0.1:9/rss.xml"]}}]
""")
    res = invoke("captures", "--config", str(empty))
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.splitlines() == [f"archiver: no index at {tmp_path / 'nothing-yet' / 'index.sqlite3'}: "
                                       "nothing has been archived under this storage root yet"]

    bad = tmp_path / "bad.yaml"
    bad.write_text("topics: [{name: t, any: [x]}]\noutlets: [{name: o, feedz: []}]\n")
    res = invoke("captures", "--config", str(bad))
    assert res.returncode == 2 and res.stderr.splitlines() and "Traceback" not in res.stderr
    assert all(line.startswith(f"{bad}:") for line in res.stderr.splitlines()), res.stderr
    assert "feedz" in res.stderr

    # the codes come back to a caller of main instead of ending its process
    assert main.main(["check-config", str(bad)], standalone_mode=False) == 2
    assert main.main(["check-config", str(empty)], standalone_mode=False) == 0


def test_an_export_that_cannot_be_written_names_the_file(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
storage: {{root: {tmp_path / 'st'}}}
topics: [{{name: t, any: [Blinken]}}]
outlets: [{{name: o, feeds: ["http://127.0.0.1:9/rss.xml"]}}]
""")
    assert invoke("migrate", "--config", str(cfg)).returncode == 0  # an empty index
    out = tmp_path / "no-such-folder" / "index.cdxj"
    res = invoke("export", "cdxj", "--config", str(cfg), "--out", str(out))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.splitlines() == [f"archiver: {out}.tmp: No such file or directory"]


def test_importing_archiver_reads_no_environment_and_sets_up_no_logging(tmp_path: Path):
    """Crash and failure points are armed by an entry point, never by an import; logging and
    consoles are set up when a command runs, not when its module is loaded."""
    import os
    import subprocess
    import sys

    code = """
import logging, sys
import archiver.cli, archiver.crawl, archiver.daemon, archiver.web.app, archiver.scale.worker
from archiver import faults
assert (faults.ARMED, faults.FAIL_AT) == (False, None), (faults.ARMED, faults.FAIL_AT)
assert logging.getLogger().handlers == [], logging.getLogger().handlers
noisy = {n: logging.getLogger(n).level for n in ("httpx", "httpcore", "readability", "apscheduler.scheduler")}
assert set(noisy.values()) == {logging.NOTSET}, noisy
assert archiver.cli.main.main(["check-config", sys.argv[1]], standalone_mode=False) == 0
assert faults.ARMED and faults.FAIL_AT == ("parse", "story"), (faults.ARMED, faults.FAIL_AT)
"""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
storage: {{root: {tmp_path / 'st'}}}
topics: [{{name: t, any: [Blinken]}}]
outlets: [{{name: o, feeds: ["http://127.0.0.1:9/rss.xml"]}}]
""")
    env = dict(os.environ, ARCHIVER_CRASH_AT="fetch:3", ARCHIVER_FAIL_AT="parse:story")
    proc = subprocess.run([sys.executable, "-c", code, str(cfg)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
