#!/usr/bin/env python3
"""Open a WACZ written by `archiver export wacz` in ReplayWeb.page, headless, and check that
archived pages render, using the ReplayWeb.page routine of ../shared/checks/warc-conformance
(its tool environment: replaywebpage from npm, Debian's chromium, playwright-core).

    python bench/replayweb_wacz.py FILE.wacz [--samples 6]

Prints one PASS/FAIL line per sampled page; exit 0 when all pass. Loopback only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

CHECK = Path(os.environ.get("ARCHIVER_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "checks" / "warc-conformance"
VENV = Path(os.environ.get("WARC_CONFORMANCE_VENV", "/tmp/conformance-venv"))

INNER = r"""
import glob, importlib.machinery, importlib.util, sys, tempfile
loader = importlib.machinery.SourceFileLoader("wc", sys.argv[1])
spec = importlib.util.spec_from_loader("wc", loader)
wc = importlib.util.module_from_spec(spec)
loader.exec_module(wc)
recs = [r for f in sorted(glob.glob(sys.argv[3] + "/*.warc*")) for r in wc.scan_file(f)]
samples, _ = wc.pick_samples(recs, int(sys.argv[4]))
out = tempfile.mkdtemp(prefix="replayweb-wacz-")
wc.replayweb_checks(sys.argv[2], out, samples, 120)
sys.exit(wc.finish(out))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("wacz")
    ap.add_argument("--samples", type=int, default=6)
    a = ap.parse_args()
    if not (VENV / "bin" / "python").exists():
        # the check builds its tool environment on first use
        subprocess.run([sys.executable, str(CHECK), "--help"], stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(a.wacz) as z:
            for name in z.namelist():
                if name.startswith("archive/") and name.endswith((".warc", ".warc.gz")):
                    z.extract(name, tmp)
        env = {**os.environ, "WARC_CONFORMANCE_IN_VENV": "1"}
        return subprocess.run([str(VENV / "bin" / "python"), "-c", INNER, str(CHECK), os.path.abspath(a.wacz),
                               str(Path(tmp) / "archive"), str(a.samples)], env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
