#!/usr/bin/env python3
"""How long a config with thousands of outlets takes to load.

    python bench/config_load.py [--outlets 5000] [--rounds 3] [--profile]

Writes, in a temporary folder, three configs of `--outlets` outlets each: all in the YAML
(`outlets:`, every outlet with a home, a feed, topics and a schedule), and the YAML naming an
OPML file (nested in folders of 100, as a feed reader exports) or a CSV file (`outlets_from:`).
For each prints the median of `--rounds` of `archiver.config.load_config` in this process
and of `archiver check-config` end to end in a process of its own (as `python -m archiver`,
so PYTHONPATH may point at another checkout to compare), wall and CPU seconds (on a shared
machine the CPU figure is the steadier one). `--profile`
adds the functions that took longest in one load_config of each (cProfile). Target: every
load under 2 s. Exit 0 when every config loaded (a missed target is reported, not fatal).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import quoteattr

from archiver.config import load_config

TARGET_S = 2.0
HEAD = """\
storage: {{root: {root}}}
topics:
  - {{name: vietnam, any: [Vietnam]}}
  - {{name: south-china-sea, any: [South China Sea]}}
"""


def write_yaml(folder: Path, n: int) -> Path:
    lines = [HEAD.format(root=folder / "storage"), "outlets:"]
    for i in range(n):
        lines += [f"  - name: outlet-{i:05d}", f"    home: https://site{i}.example.com/",
                  f'    feeds: ["https://site{i}.example.com/feed.xml"]', "    topics: [vietnam]",
                  "    schedule: {every: 30m}"]
    path = folder / "yaml.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_opml(folder: Path, n: int) -> Path:
    out = ['<?xml version="1.0" encoding="UTF-8"?>', '<opml version="2.0">',
           "  <head><title>subscriptions</title></head>", "  <body>"]
    for start in range(0, n, 100):
        out.append(f'    <outline text="Folder {start // 100}">')
        for i in range(start, min(n, start + 100)):
            out.append(f"      <outline type=\"rss\" text={quoteattr(f'Outlet {i:05d}: News')} "
                       f'xmlUrl="https://site{i}.example.com/feed.xml" htmlUrl="https://site{i}.example.com/"/>')
        out.append("    </outline>")
    out += ["  </body>", "</opml>"]
    (folder / "outlets.opml").write_text("\n".join(out) + "\n", encoding="utf-8")
    path = folder / "opml.yaml"
    path.write_text(HEAD.format(root=folder / "storage") + "outlets_from: [outlets.opml]\n"
                    "outlet_defaults: {topics: [vietnam], schedule: {every: 30m}}\n", encoding="utf-8")
    return path


def write_csv(folder: Path, n: int) -> Path:
    rows = ["name,home,feeds,topics,every"]
    rows += [f"outlet-{i:05d},https://site{i}.example.com/,https://site{i}.example.com/feed.xml,vietnam,30m"
             for i in range(n)]
    (folder / "outlets.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    path = folder / "csv.yaml"
    path.write_text(HEAD.format(root=folder / "storage") + "outlets_from: [outlets.csv]\n", encoding="utf-8")
    return path


def time_load(path: Path, rounds: int) -> tuple[float, float, int]:
    """Median wall and CPU seconds of load_config, and the outlets it gave."""
    walls, cpus, n = [], [], 0
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        n = len(load_config(path).config.outlets)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), n


def time_cli(path: Path, rounds: int) -> tuple[float, float]:
    """Median wall and CPU seconds of `archiver check-config PATH` in a fresh process."""
    walls, cpus = [], []
    for _ in range(rounds):
        start, used = time.perf_counter(), _children_cpu()
        done = subprocess.run([sys.executable, "-m", "archiver", "check-config", str(path)], capture_output=True,
                              text=True, timeout=300, cwd=path.parent)  # not this checkout's folder: PYTHONPATH decides
        walls.append(time.perf_counter() - start)
        cpus.append(_children_cpu() - used)
        if done.returncode != 0:
            raise SystemExit(f"check-config {path} exited {done.returncode}:\n{done.stdout[-2000:]}"
                             f"{done.stderr[-2000:]}")
    return statistics.median(walls), statistics.median(cpus)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def profile(path: Path, top: int = 15) -> str:
    prof = cProfile.Profile()
    prof.runcall(load_config, path)
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--outlets", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    figures = {}
    with tempfile.TemporaryDirectory(prefix="archiver-config-load-") as tmp:
        folder = Path(tmp)
        configs = {"yaml": write_yaml(folder, args.outlets), "yaml+opml": write_opml(folder, args.outlets),
                   "yaml+csv": write_csv(folder, args.outlets)}
        print(f"{'config':<10} {'outlets':>8} {'load s':>8} {'cpu s':>6} {'check-config s':>15} {'cpu s':>6}  target")
        for kind, path in configs.items():
            try:
                load_config(path)  # once first: pydantic builds its validators on first use
            except Exception as e:  # noqa: BLE001 - an older checkout without outlets_from
                print(f"{kind:<10} not loadable here: {str(e).splitlines()[0][:100]}")
                continue
            wall, cpu, n = time_load(path, args.rounds)
            cli, cli_cpu = time_cli(path, args.rounds)
            met = "met" if max(wall, cli) < TARGET_S else "NOT met"
            print(f"{kind:<10} {n:>8,} {wall:>8.2f} {cpu:>6.2f} {cli:>15.2f} {cli_cpu:>6.2f}  < {TARGET_S:.0f} s {met}")
            figures[kind] = {"outlets": n, "load_s": round(wall, 3), "load_cpu_s": round(cpu, 3),
                             "check_config_s": round(cli, 3), "check_config_cpu_s": round(cli_cpu, 3)}
            if args.profile:
                print(profile(path))
    print(json.dumps({"config_load": figures, "rounds": args.rounds, "target_s": TARGET_S}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
