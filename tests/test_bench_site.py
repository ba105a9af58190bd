"""A pass over the synthetic multi-outlet news web (../shared/bench/site), scored against its manifest.

Needs nginx (`.ci/run` installs it) and ../shared; takes a few minutes, mostly honouring the
outlets' robots.txt Crawl-delay. Deselect locally with `-m "not slow"`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("ARCHIVER_SHARED", ROOT.parent / "shared"))


@pytest.mark.xdist_group("shared-tools")  # one nginx site on 127.0.0.10-30:18080, one conformance venv
@pytest.mark.slow
def test_pass_over_synthetic_news_web_finds_the_on_topic_articles(tmp_path: Path):
    missing = [what for what, ok in (("../shared/bench/site", (SHARED / "bench" / "site" / "make_site.py").exists()),
                                     ("nginx", bool(shutil.which("nginx") or Path("/usr/sbin/nginx").exists())))
               if not ok]
    if missing:
        if os.environ.get("ARCHIVER_REQUIRE_BENCH"):
            pytest.fail(f"needed for this test: {', '.join(missing)}")
        pytest.skip(f"needs {', '.join(missing)}")
    out = tmp_path / "archive"
    # nginx workers run as another user and cannot enter pytest's private tmp folders;
    # the generator skips work when this folder already holds a site with these parameters
    site = Path(tempfile.gettempdir()) / "archiver-test-site"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "site_pass.py"), "--articles", "30",
                           "--site", str(site), "--port", "18080", "--out", str(out), "--conformance"],
                          capture_output=True, text=True, timeout=1500)
    print(proc.stdout[-4000:])
    print(proc.stderr[-2000:])
    report = json.loads(proc.stdout[proc.stdout.index("{\n"): proc.stdout.rindex("\n}") + 2])
    assert report["on_topic_truth"] > 30
    assert report["recall"] >= 0.95 and report["precision"] >= 0.95
    assert "warc-conformance:" in proc.stdout and ", 0 failed" in proc.stdout
    assert proc.returncode == 0
