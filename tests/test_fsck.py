"""`archiver fsck` finds and repairs disagreements between the index and the WARCs."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from archiver.config import load_config
from archiver.crawl import run_pass
from archiver.demo.site import SampleSite

from .conftest import invoke, write_config


def test_fsck_reports_and_repairs(tmp_path: Path):
    with SampleSite(crawl_delay=0.05) as site:
        cfg_path = write_config(site, tmp_path / "arch")
        asyncio.run(run_pass(load_config(cfg_path)))
    root = tmp_path / "arch"
    clean = invoke("fsck", "--config", str(cfg_path))
    assert clean.returncode == 0 and "0 open files, 0 rows without record, 0 records without row" in clean.stdout

    conn = sqlite3.connect(root / "index.sqlite3")
    # a row lost (as if the process died between the WARC flush and the commit) ...
    lost_id, lost_url = conn.execute("SELECT id, final_url FROM captures WHERE kind = 'article' "
                                     "AND state = 'archived' ORDER BY id LIMIT 1").fetchone()
    conn.execute("DELETE FROM captures WHERE id = ?", (lost_id,))
    # ... and a row pointing at nothing
    conn.execute("UPDATE captures SET warc_offset = warc_offset + 7 WHERE kind = 'feed'")
    conn.commit()
    conn.close()
    # ... and a WARC left open by a crash
    warc = next((root / "warc").glob("*.warc.gz"))
    shutil.copy(warc, warc.with_name("archiver-20000101000000000-00000.warc.gz.open"))

    found = invoke("fsck", "--config", str(cfg_path))
    assert found.returncode == 1
    assert "OPEN FILE          warc/archiver-20000101000000000-00000.warc.gz.open" in found.stdout
    assert "ROW WITHOUT RECORD" in found.stdout and "RECORD WITHOUT ROW" in found.stdout
    assert lost_url in found.stdout

    fixed = invoke("fsck", "--config", str(cfg_path), "--repair")
    assert fixed.returncode == 0 and "repaired:" in fixed.stdout
    conn = sqlite3.connect(root / "index.sqlite3")
    row = conn.execute("SELECT kind, state, outlet, topics FROM captures WHERE final_url = ? AND kind = 'article'",
                       (lost_url,)).fetchone()
    conn.close()
    assert row[0] == "article" and row[1] == "archived" and row[2] == "harbor-times" and row[3] != "[]"
    again = invoke("fsck", "--config", str(cfg_path))
    # the copied file's records duplicate the original's, which fsck reports as unindexed copies
    assert "0 open files, 0 rows without record" in again.stdout


def test_rows_in_a_file_a_kill_left_open_are_reported_as_such(tmp_path: Path):
    root = tmp_path / "arch"
    exe = Path(sys.executable).with_name("archiver")
    with SampleSite(crawl_delay=0.05) as site:
        cfg_path = write_config(site, root)
        # killed (-9) at its 8th index commit: seven rows committed, all pointing into the .open file
        env = dict(os.environ, ARCHIVER_CRASH_AT="index-commit:8")
        killed = subprocess.run([str(exe), "crawl", "--config", str(cfg_path), "--no-progress"], env=env,
                                capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    [open_file] = (root / "warc").glob("*.warc.gz.open")
    conn = sqlite3.connect(root / "index.sqlite3")
    rows = conn.execute("SELECT count(*) FROM captures WHERE warc_file = ?",
                        (f"warc/{open_file.name[:-len('.open')]}",)).fetchone()[0]
    conn.close()
    assert rows >= 5

    found = invoke("fsck", "--config", str(cfg_path))
    assert found.returncode == 1  # something to repair
    assert f"OPEN FILE          warc/{open_file.name}" in found.stdout
    in_open = [line for line in found.stdout.splitlines() if line.startswith("IN OPEN FILE ")]
    assert len(in_open) == rows and all("the record is whole; --repair closes the file" in l for l in in_open)
    assert "ROW WITHOUT RECORD" not in found.stdout
    assert f"1 open files ({rows} rows point into them), 0 rows without record" in found.stdout

    fixed = invoke("fsck", "--config", str(cfg_path), "--repair")
    assert fixed.returncode == 0 and f"repaired: repaired {open_file.name}" in fixed.stdout
    assert "ROW WITHOUT RECORD" not in fixed.stdout  # the rows kept their records through the repair
    clean = invoke("fsck", "--config", str(cfg_path))
    assert clean.returncode == 0, clean.stdout
    assert "0 open files, 0 rows without record, 0 records without row" in clean.stdout
