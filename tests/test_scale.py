"""A scaled setup on one machine: `archiver scheduler` + 3 `archiver worker`s against a real
PostgreSQL and Redis on loopback, crawling the synthetic news web (../shared/bench/site,
20 outlets on nginx). One worker is killed with SIGKILL mid-pass and started again.

Closed WARC files are shipped to an S3-compatible store (moto's server on loopback).

Asserted as a user would check it: every on-topic article is archived once and only once,
the index has no duplicate rows and every row points at its record in a closed, valid WARC
that was shipped to the store (the killed worker's open WARC too, repaired on its restart)
and left no copy in a spool, no two requests to one host reached the server machine closer
together than the configured per-host delay (the kernel's receive times, tests/arrivals.py),
and `archiver dump`, `verify`, `export wacz` and `serve` work on the scaled archive, reading
from the store.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from warcio.archiveiterator import ArchiveIterator

from archiver import schema
from archiver.index import Index

from .arrivals import Arrival, ArrivalRelay
from .services import _wait_port, free_port

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("ARCHIVER_SHARED", ROOT.parent / "shared"))
SITE_TOOLS = SHARED / "bench" / "site"
EXE = Path(sys.executable).with_name("archiver")
DELAY = 0.3  # fetch.per_host_delay in this test's config
UPSTREAM = 1000  # nginx listens this far above each public port; the arrival relay takes the public one
sys.path.insert(0, str(ROOT / "bench"))


class Nginx:
    """The bench site's nginx, behind a relay on the site's public addresses that notes when
    each request reached the machine. nginx's own log cannot say: its times are those of its
    event loop's last wake-up, and on a loaded machine it stamped requests up to 0.37 s after
    they arrived (four at one millisecond), so two sent 0.40 s apart were logged 0.03 s apart."""

    def __init__(self, site: Path):
        self.site, self.run = site, site / "run"
        self.conf = self.run / "nginx-test.conf"
        self.pid = self.run / "nginx-test.pid"
        self.relay: ArrivalRelay | None = None

    def __enter__(self) -> "Nginx":
        subprocess.run([sys.executable, str(SITE_TOOLS / "gen_nginx.py"), "--site", str(self.site), "--access-log",
                        "--port-offset", str(UPSTREAM)], check=True, capture_output=True)
        conf = (self.run / "nginx.conf").read_text()
        self.conf.write_text(conf.replace(f"pid {self.run}/nginx.pid;", f"pid {self.pid};"))
        subprocess.run(["nginx", "-p", str(self.run), "-c", str(self.conf), "-e", str(self.run / "error.log")],
                       check=True)
        site = json.loads((self.site / "site.json").read_text(encoding="utf-8"))
        public = [(a["ip"], a["port"]) for a in [site["cdn"], *site["outlets"]]]
        try:
            self.relay = ArrivalRelay({(ip, port): (ip, port + UPSTREAM) for ip, port in public}).__enter__()
        except BaseException:
            self._stop_nginx()
            raise
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.relay is not None:
            self.relay.__exit__(*exc)
        self._stop_nginx()

    def _stop_nginx(self) -> None:
        for _ in range(50):  # nginx writes its pid file just after it starts
            if self.pid.exists():
                break
            time.sleep(0.1)
        os.kill(int(self.pid.read_text().strip()), signal.SIGQUIT)
        for _ in range(100):
            if not self.pid.exists():
                break
            time.sleep(0.1)

    def starts_by_host(self) -> dict[str, list[Arrival]]:
        assert self.relay is not None and not self.relay.errors, self.relay and self.relay.errors[:3]
        return self.relay.by_address()


def _start_worker(cfg: Path, name: str, logs: Path) -> subprocess.Popen:
    return subprocess.Popen([str(EXE), "worker", "--config", str(cfg), "--name", name],
                            stdout=subprocess.DEVNULL, stderr=open(logs / f"{name}.log", "a"))


def _article_rows(index: Index) -> int:
    return sum(index.state_counts("article").values())


@pytest.mark.xdist_group("shared-tools")  # one nginx site on 127.0.0.10-30:18080, one conformance venv
@pytest.mark.slow
def test_scheduler_and_three_workers_archive_every_article_once_politely_even_when_one_dies(
        postgres, redis_server, s3_server, tmp_path: Path):
    missing = [w for w, ok in (("../shared/bench/site", (SITE_TOOLS / "make_site.py").exists()),
                               ("nginx", bool(shutil.which("nginx")))) if not ok]
    if missing:
        if os.environ.get("ARCHIVER_REQUIRE_BENCH"):
            pytest.fail(f"needed for this test: {', '.join(missing)}")
        pytest.skip(f"needs {', '.join(missing)}")
    from site_pass import make_config, score  # bench/site_pass.py: the single-machine pass's config

    # nginx workers run as another user and cannot enter pytest's private tmp folders
    site = Path(tempfile.gettempdir()) / "archiver-test-site"
    subprocess.run([sys.executable, str(SITE_TOOLS / "make_site.py"), "--out", str(site), "--articles", "30",
                    "--outlets", "20", "--port", "18080", "--quiet"], check=True)
    manifest = json.loads((site / "manifest.json").read_text(encoding="utf-8"))
    storage = tmp_path / "archive"
    db = postgres.new_database()
    text = make_config(manifest, storage, workers=0)
    text = text.replace("  per_host_delay: 0.0\n", f"  per_host_delay: {DELAY}\n")
    text = f"index:\n  url: {db}\nscale:\n  broker: {redis_server.url}\n  requeue_after: 4\n" + text
    bucket = s3_server.new_bucket()
    # files of 1 MB close (and ship) while the pass runs, not only when the workers stop
    text = text.replace("  warc:\n", f"  ship_to: s3://{bucket}/warc\n  s3_endpoint: {s3_server.endpoint}\n"
                                     "  warc:\n    rotate_size: 1 MB\n", 1)
    cfg = tmp_path / "scale.yaml"
    cfg.write_text(text)
    logs = tmp_path / "logs"
    logs.mkdir()
    subprocess.run(["redis-cli", "-u", redis_server.url, "FLUSHALL"], capture_output=True)

    subprocess.run([str(EXE), "migrate", "--config", str(cfg)], check=True, capture_output=True)
    with Nginx(site) as nginx:
        workers = {n: _start_worker(cfg, n, logs) for n in ("w1", "w2", "w3")}
        sched = subprocess.Popen([str(EXE), "scheduler", "--config", str(cfg), "--once"],
                                 stdout=open(logs / "scheduler.out", "w"), stderr=open(logs / "scheduler.log", "w"))
        try:
            # kill w2 once the pass is well under way, then bring it back
            with Index.open(storage, readonly=True, url=db) as idx:
                deadline = time.monotonic() + 300
                while _article_rows(idx) < 60 and time.monotonic() < deadline and sched.poll() is None:
                    time.sleep(0.2)
                assert sched.poll() is None, "the pass ended before a worker could be killed"
                workers["w2"].kill()
                workers["w2"].wait()
                killed_at = _article_rows(idx)
            open_left = list((storage / "spool" / "w2" / "warc").glob("*.open"))
            assert open_left, "the killed worker left no open WARC to repair"
            time.sleep(6)  # its messages go to w1 and w3 once its heartbeat is 4 s old
            workers["w2"] = _start_worker(cfg, "w2", logs)
            assert sched.wait(timeout=900) == 0, (logs / "scheduler.log").read_text()[-3000:]
        finally:
            if sched.poll() is None:
                sched.kill()
            for p in workers.values():
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            codes = {n: p.wait(timeout=120) for n, p in workers.items()}
        starts = nginx.starts_by_host()
    assert codes == {"w1": 0, "w2": 0, "w3": 0}, {n: (logs / f"{n}.log").read_text()[-2000:] for n in codes}

    # politeness across workers, at the server: kernel receive times are exact to a few
    # microseconds, so the millisecond allowed is for the clock alone (an NTP slew), not for
    # requests that came early
    assert sum(len(v) for v in starts.values()) > 600
    too_close = [(host, round(b.at - a.at, 4), a.line, b.line) for host, reqs in starts.items()
                 for a, b in zip(reqs, reqs[1:]) if b.at - a.at < DELAY - 0.001]
    assert not too_close, f"{len(too_close)} pairs of requests closer than {DELAY} s to one host: {too_close[:5]}"
    w2_log = (logs / "w2.log").read_text()
    assert "repaired" in w2_log and open_left[0].name.removesuffix(".open") in w2_log

    with Index.open(storage, readonly=True, url=db) as idx:
        arts = list(idx.captures(kind="article"))
        with idx.reading() as c:
            frontier = c.execute(select(schema.frontier.c.state, schema.frontier.c.capture_id)).mappings().all()
        files = {f.name: f for f in idx.warc_files()}
        passes = idx.passes()
    assert killed_at < len(arts)

    # every on-topic article once; nothing fetched twice for one candidate
    truth = {a["url"] for a in manifest["articles"] if a["topics"]}
    kept = Counter(r.final_url for r in arts if r.state == "archived")
    assert max(kept.values()) == 1, [u for u, n in kept.items() if n > 1][:5]
    got = set(kept) & truth
    assert len(got) / len(truth) >= 0.95 and len(got) / len(kept) >= 0.95, (len(truth), len(kept), len(got))
    per_candidate = Counter((r.outlet, r.url) for r in arts)
    assert max(per_candidate.values()) == 1, [k for k, n in per_candidate.items() if n > 1][:5]
    assert all(f["state"] == "settled" for f in frontier) and len(frontier) == len(arts)
    assert {f["capture_id"] for f in frontier} == {r.id for r in arts}
    assert all(p.ended_at for p in passes) and len(passes) == 20
    # the scored view the single-machine test uses agrees
    assert score(manifest, storage, index_url=db)["recall"] >= 0.95

    # every row points at its record, in a closed WARC shipped to the store; no spool copies
    spool_files = sorted((storage / "spool").glob("*/warc/*"))
    assert not spool_files, spool_files[:5]
    assert all(f.state == "shipped" and f.location == f"s3://{bucket}/warc/{n}" for n, f in files.items())
    s3 = s3_server.client()
    stored = {o["Key"].removeprefix("warc/"): o["Size"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert stored == {n: f.size for n, f in files.items()}
    assert open_left[0].name.removesuffix(".open") in files  # the repaired file was shipped too
    by_file = defaultdict(list)
    for r in arts:
        if r.warc_file:
            by_file[Path(r.warc_file).name].append(r)
    assert set(by_file) <= set(files)
    assert {name.split("-")[1] for name in by_file} == {"w1", "w2", "w3"}  # archiver-<worker>-...
    for name, f in files.items():
        data = s3.get_object(Bucket=bucket, Key=f"warc/{name}")["Body"].read()
        assert hashlib.sha256(data).hexdigest() == f.sha256, name
        ids = {}
        it = ArchiveIterator(io.BytesIO(data))
        for rec in it:
            ids[rec.rec_headers.get_header("WARC-Record-ID")] = it.get_record_offset()
        for r in by_file.get(name, []):
            assert ids.get(r.warc_record_id) == r.warc_offset, (name, r.id)

    # the readers find the shipped files through the index
    one = sorted({r.outlet for r in arts})[0]
    dump_dir = tmp_path / "dump"
    done = subprocess.run([str(EXE), "dump", "--config", str(cfg), "--out", str(dump_dir), "--outlet", one,
                           "--kind", "article"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    manifest_files = json.loads((dump_dir / "manifest.json").read_text())["files"]
    assert len(manifest_files) == sum(1 for r in arts if r.outlet == one and r.state == "archived")
    checked = subprocess.run([str(EXE), "verify", str(dump_dir), "--config", str(cfg)],
                             capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0 and f"{len(manifest_files)} ok" in checked.stdout, checked.stdout[-2000:]
    wacz = tmp_path / "one.wacz"
    done = subprocess.run([str(EXE), "export", "wacz", "--config", str(cfg), "--out", str(wacz), "--outlet", one],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    with zipfile.ZipFile(wacz) as z:
        inside = {n.removeprefix("archive/export-") for n in z.namelist() if n.startswith("archive/")}
        assert inside == {Path(r.warc_file).name for r in arts if r.outlet == one and r.state == "archived"}
    sample = next(r for r in arts if r.outlet == one and r.state == "archived")
    port = free_port()
    server = subprocess.Popen([str(EXE), "serve", "--config", str(cfg), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=open(logs / "serve.log", "w"))
    try:
        _wait_port(port, "archiver serve")
        raw = httpx.get(f"http://127.0.0.1:{port}/raw/{sample.id}", timeout=30)
        page = httpx.get(f"http://127.0.0.1:{port}/capture/{sample.id}", timeout=30)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert raw.status_code == 200 and sample.title and sample.title.split()[0] in raw.text
    assert page.status_code == 200 and "cannot read" not in page.text

