"""Kill -9 the daemon again and again, at seeded moments inside fetches, WARC writes, WARC
rotations and index commits; restart it each time and check the archive after every kill.

The kills land inside those steps through archiver's crash points (ARCHIVER_CRASH_AT, see
archiver/faults.py): the process SIGKILLs itself the N-th time it reaches the step, with a
half-written record put on disk first for `warc-write`. A run that does not reach its point
within the time allowed is killed from outside instead, at whatever it was doing.

After each kill: every closed WARC passes `warcio check` and digest checks and is byte for byte
what it was when first seen closed (bytes lost: 0); the `.open` files the previous kill left
were repaired when the daemon restarted; every index row points at a record with its URL and
digest; nothing is indexed twice. After a final clean run: every on-topic article is there.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
from collections import Counter
from pathlib import Path

from archiver.demo.site import ON_TOPIC, Article, SampleSite
from archiver.faults import POINTS as ALL_POINTS

from .archive_checks import check_closed_warc, complete_members, nothing_indexed_twice, rows_point_at_records, sha256
from .test_daemon import EXE, archived, free_port, health, wait_for

SEED = 20251123
KILLS = 28  # seven at each crash point
MAX_N = {"fetch": 40, "warc-write": 24, "rotation": 1, "index-commit": 12}
# the points of the crawling process itself (`extract` kills a worker; see test_workers.py)
POINTS = tuple(p for p in ALL_POINTS if p in MAX_N)


def big_articles(rng: random.Random, n: int) -> list[Article]:
    """On-topic articles of ~100 KB of text that compresses little, so 1 MB WARCs rotate often
    and no single run can archive them all before its crash point."""
    vocab = ["".join(rng.choice("abcdefghijklmnoprstuvwy") for _ in range(rng.randint(3, 9))) for _ in range(4000)]
    out = []
    for i in range(n):
        paras = tuple(" ".join(rng.choice(vocab) for _ in range(120)).capitalize() + "." for _ in range(110))
        out.append(Article(f"/2025/06/14/briefing-{i:03d}.html", f"Blinken briefing number {i} on the Asia trip",
                           "Desk", "2025-06-14T10:00:00Z", ("Antony Blinken spoke on Saturday.", *paras),
                           ("blinken",)))
    return out


def config(site: SampleSite, root: Path, port: int) -> Path:
    text = site.config_yaml(str(root)).replace(
        '    operator: "archiver demo"\n', '    operator: "archiver demo"\n    rotate_size: 1 MB\n').replace(
        "schedule: {every: 15m}", "schedule: {every: 2s}").replace(
        "discover:\n", f"daemon:\n  listen: 127.0.0.1:{port}\n  jitter: 0\n  shutdown_grace: 10\n"
                       "  close_idle_warc: 3s\ndiscover:\n")
    path = root / "config.yaml"
    path.write_text(text)
    return path


def start(cfg: Path, log: Path, crash_at: str | None) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("ARCHIVER_CRASH_AT", None)
    if crash_at:
        env["ARCHIVER_CRASH_AT"] = crash_at
    with open(log, "a") as f:
        f.write(f"==== start, crash at {crash_at}\n")
    return subprocess.Popen([str(EXE), "run", "--config", str(cfg)], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(log, "a"))


def test_28_seeded_kill_9s_lose_nothing(tmp_path: Path):
    rng = random.Random(SEED)
    extra = big_articles(rng, 240)
    root = tmp_path / "archive"
    root.mkdir()
    log = tmp_path / "daemon.log"
    closed: dict[str, str] = {}  # closed WARC name -> sha256 when first seen
    left_open: set[str] = set()
    figures: Counter = Counter()
    port = free_port()
    with SampleSite(crawl_delay=0) as site:
        for a in extra:
            site.publish(a)
        cfg = config(site, root, port)
        plan = [POINTS[k % len(POINTS)] for k in range(KILLS)]
        rng.shuffle(plan)
        for point in plan:
            n = rng.randint(1, MAX_N[point])
            proc = start(cfg, log, f"{point}:{n}")
            try:
                proc.wait(timeout=12)
                figures[f"self-killed at {point}"] += 1
            except subprocess.TimeoutExpired:  # the point was not reached n times: kill it anyway
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
                figures["killed from outside"] += 1
            assert proc.returncode == -signal.SIGKILL, (point, n, proc.returncode, log.read_text()[-3000:])

            warcs = root / "warc"
            names = {p.name for p in warcs.iterdir()} if warcs.exists() else set()
            # the previous kill's .open files were repaired by this restart
            for name in left_open:
                assert name not in names and name.removesuffix(".open") in names, name
            left_open = {n for n in names if n.endswith(".open")}
            for name in sorted(names - left_open):
                if name in closed:
                    assert sha256(warcs / name) == closed[name], f"closed WARC {name} changed"
                else:
                    figures["records checked"] += check_closed_warc(warcs / name)
                    closed[name] = sha256(warcs / name)
            for name in left_open:
                figures["torn bytes in .open files"] += (warcs / name).stat().st_size - complete_members(warcs / name)
            figures["rows checked"] += rows_point_at_records(root)
            nothing_indexed_twice(root)

        proc = start(cfg, log, None)
        want = {site.base_url + a.path for a in (*ON_TOPIC, *extra)}
        wait_for("healthz 200", lambda: health(port) == 200)
        wait_for("every on-topic article", lambda: set(archived(root)) >= want, timeout=240)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    names = {p.name for p in (root / "warc").iterdir()}
    assert not [n for n in names if n.endswith(".open")]
    for name in sorted(names):
        if name in closed:
            assert sha256(root / "warc" / name) == closed[name], f"closed WARC {name} changed"
        else:
            figures["records checked"] += check_closed_warc(root / "warc" / name)
    figures["rows checked"] += rows_point_at_records(root)
    nothing_indexed_twice(root)
    assert set(archived(root)) == want
    figures["closed WARCs"] = len(names)
    print("crash campaign:", dict(figures))
    kills = sum(v for k, v in figures.items() if k.startswith(("self-killed", "killed from")))
    assert kills == KILLS
    assert sum(v for k, v in figures.items() if k.startswith("self-killed")) >= KILLS * 3 // 4, figures
    assert "repaired" in log.read_text()
