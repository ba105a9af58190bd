"""`archiver fsck` finds and repairs disagreements between the index and the WARCs."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

from archiver.config import load_config
from archiver.crawl import run_pass
from archiver.demo_site import SampleSite

from .conftest import run_cli, write_config


def test_fsck_reports_and_repairs(tmp_path: Path):
    with SampleSite(crawl_delay=0.05) as site:
        cfg_path = write_config(site, tmp_path / "arch")
        asyncio.run(run_pass(load_config(cfg_path)))
    root = tmp_path / "arch"
    clean = run_cli("fsck", "--config", str(cfg_path))
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

    found = run_cli("fsck", "--config", str(cfg_path))
    assert found.returncode == 1
    assert "OPEN FILE          warc/archiver-20000101000000000-00000.warc.gz.open" in found.stdout
    assert "ROW WITHOUT RECORD" in found.stdout and "RECORD WITHOUT ROW" in found.stdout
    assert lost_url in found.stdout

    fixed = run_cli("fsck", "--config", str(cfg_path), "--repair")
    assert fixed.returncode == 0 and "repaired:" in fixed.stdout
    conn = sqlite3.connect(root / "index.sqlite3")
    row = conn.execute("SELECT kind, state, outlet, topics FROM captures WHERE final_url = ? AND kind = 'article'",
                       (lost_url,)).fetchone()
    conn.close()
    assert row[0] == "article" and row[1] == "archived" and row[2] == "harbor-times" and row[3] != "[]"
    again = run_cli("fsck", "--config", str(cfg_path))
    # the copied file's records duplicate the original's, which fsck reports as unindexed copies
    assert "0 open files, 0 rows without record" in again.stdout
