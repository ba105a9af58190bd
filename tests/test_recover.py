"""Kill -9 in the middle of a pass, then run again: every WARC valid, every row a real record."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator

from archiver.demo.site import ON_TOPIC, SampleSite
from archiver.index import Index
from archiver.recover import repair_open_warc

from .archive_checks import check_closed_warc, rows_point_at_records
from .conftest import write_config
from .test_warc import exchange


def test_torn_write_is_cut_and_file_renamed(tmp_path: Path):
    from archiver.warc import WarcWriter

    w = WarcWriter(tmp_path, "t", 10**9, {"software": "t"})
    for n in (1, 2):
        w.write_exchange(**exchange(n))
    w.flush()
    path = next((tmp_path / "warc").glob("*.open"))
    whole = path.stat().st_size
    with open(path, "ab") as f:  # a record that was half written when the process died
        f.write(gzip.compress(b"WARC/1.1\r\nWARC-Type: response\r\nContent-Length: 99999\r\n\r\nshort")[:40])
    report = repair_open_warc(path)
    assert (report.records, report.kept_bytes) == (5, whole)  # warcinfo + 2 x (response, request)
    assert not path.exists() and report.path.exists()
    with open(report.path, "rb") as f:
        assert len(list(ArchiveIterator(f, check_digests=True))) == 5


def all_records_ok(root: Path) -> int:
    """Every closed WARC passes `warcio check` and every record's digests verify; returns the count."""
    return sum(check_closed_warc(p) for p in (root / "warc").glob("*.warc.gz"))


def test_kill_9_mid_pass_then_rerun(tmp_path: Path):
    exe = Path(sys.executable).with_name("archiver")
    with SampleSite(crawl_delay=0.3) as site:  # slow enough to be killed in the middle
        cfg = write_config(site, tmp_path / "arch")
        for delay in (1.2, 2.5):
            proc = subprocess.Popen([str(exe), "crawl", "--config", str(cfg), "--no-progress"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(delay)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        root = tmp_path / "arch"
        assert list((root / "warc").glob("*.open"))  # the kill left a file being written
        final = subprocess.run([str(exe), "crawl", "--config", str(cfg), "--no-progress"], capture_output=True,
                               text=True, timeout=120)
        assert final.returncode == 0, final.stderr
    assert not list((root / "warc").glob("*.open"))
    assert all_records_ok(root) > 20
    assert rows_point_at_records(root) > 10
    with Index.open(root, readonly=True) as idx:
        finals = [r.final_url for r in idx.captures(kind="article", state="archived")]
    assert len(finals) == len(set(finals)) and len(finals) == len(ON_TOPIC)  # nothing twice, nothing missing
