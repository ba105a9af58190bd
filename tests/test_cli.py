"""`archiver crawl` and `archiver demo` as a user runs them."""

from __future__ import annotations

import re
import socket
from pathlib import Path

from .conftest import run_cli, write_config


def test_crawl_prints_summary_and_exits_0(site, tmp_path: Path):
    path = write_config(site, tmp_path / "arch")
    proc = run_cli("crawl", "--config", str(path))
    assert proc.returncode == 0, proc.stderr
    line = next(l for l in proc.stdout.splitlines() if "harbor-times" in l)
    cells = [c.strip() for c in line.strip("│ ").split("│")]
    assert cells[0] == "harbor-times"
    assert cells[1:7] == ["12", "7", "11", "7", "1", "1"]  # discovered, on-topic, fetched, archived, robots, failed
    for col in ("discovered", "on-topic", "fetched", "archived", "skipped by robots", "failed"):
        assert col in proc.stdout
    assert "wrote warc/" in proc.stdout
    # the pass's own cost; extraction ran in workers, whose memory is their own (~35 MB), not
    # the crawling process's, which getrusage would report through fork + exec
    res = re.search(r"resources: [\d.]+ s CPU, peak memory (\d+) MB; extraction workers [\d.]+ s CPU, "
                    r"peak memory (\d+) MB each at most", proc.stdout)
    assert res, proc.stdout[-500:]
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
    proc = run_cli("crawl", "--config", str(cfg))
    assert proc.returncode == 0
    assert "gone: feed: http://127.0.0.1:" in proc.stdout and "connect" in proc.stdout


def test_unwritable_storage_exits_1(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
storage: {{root: {blocker / 'st'}}}
topics: [{{name: t, any: [Blinken]}}]
outlets: [{{name: o, feeds: ["http://127.0.0.1:9/rss.xml"]}}]
""")
    proc = run_cli("crawl", "--config", str(cfg))
    assert proc.returncode == 1
    assert "could not run" in proc.stderr and str(blocker) in proc.stderr


def test_demo_archives_the_sample_outlet(tmp_path: Path):
    proc = run_cli("demo", "--storage", str(tmp_path / "demo"))
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
