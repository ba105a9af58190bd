#!/usr/bin/env python3
"""Thousands of outlets on one machine: `archiver run` polling 5,000 feeds on a fixed schedule.

    python bench/many_feeds.py [--outlets 5000] [--minutes 30] [--every 15m] [--share 0.05]
                               [--initial 1] [--sample 5] [--out /tmp/archiver-many-feeds]
    python bench/many_feeds.py --quick     # a try: 5 minutes, every 2m

A loopback feed server (this script's `serve`, run as a process of its own: asyncio, one
listening socket per outlet, each on an address of its own, 127.77.A.B) serves every outlet's
RSS feed, robots.txt and the article pages its feed links to, and answers If-None-Match and
If-Modified-Since with 304. Each outlet being its own host, the per-host gap and concurrency
(fetch defaults: 1 s, 2) hold as they would on the web and never serialize outlets. Feed i gains
one item every `every / share`, at a phase of its own, so about `share` of the feeds change
between two polls; each starts with `--initial` items (fetched in the first pass: the warm-up)
and lists its newest 20. Every other article names the config's topic: half the new ones are kept.

The config is a YAML naming a CSV of the outlets (`outlets_from:`), every outlet on `schedule:
{every}` (fixed; the daemon's default jitter, 10 % of the interval). Its load is timed, then
`archiver run` is started and its RSS and CPU, and those of its children (the extraction
workers, summed), are sampled every `--sample` seconds until SIGTERM after `--minutes`.

Printed: polls (feed fetches) and polls/s; CPU ms per poll after warm-up (daemon, children);
the 304 share; RSS after 1 minute, at its peak and at the end, and after warm-up its range and
slope. Warm-up is the first interval (the first pass of every outlet: robots.txt, a full feed,
the initial articles). Flat: after warm-up, RSS max - min <= FLAT_MB. Schedule sustained: every
outlet's feed is fetched once per interval that ended within the run, each time no later than
its nominal time (the daemon's "scheduled X: ..., then from T" log line says when its second
pass is due; then every interval) plus the jitter plus LATE_S; fetch times are the index's
feed captures. On a shared machine the load average is printed beside. The samples are kept
in OUT/samples.json (t, RSS MB, CPU s of the daemon, its workers and the feed server, load).
Exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

from archiver.units import parse_duration as duration

HERE = Path(__file__).resolve()
FEED_ITEMS = 20
PER_BLOCK = 250
RSS_TARGET_MB, FLAT_MB, LATE_S, LOAD_TARGET_S = 150.0, 10.0, 30.0, 2.0
TICK, PAGE = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
ROBOTS = b"User-agent: *\nDisallow: /private/\n"
WORDS = ("harbour council budget rail vote court river energy market school port festival storm "
         "minister trade union bridge hospital election coast").split()


def address(i: int) -> str:
    return f"127.77.{1 + i // PER_BLOCK}.{1 + i % PER_BLOCK}"


# ---------------------------------------------------------------------------------- server


class Feeds:
    """What each feed lists at a given time: `initial` items, then one more every `period`."""

    def __init__(self, n: int, start: float, period: float, initial: int, port: int, seed: int = 1):
        rng = random.Random(seed)
        self.start, self.period, self.initial, self.port = start, period, initial, port
        self.phase = [rng.uniform(0, period) for _ in range(n)]
        self.stats: Counter[str] = Counter()

    def count(self, i: int, now: float) -> int:
        return self.initial + max(0, int((now - self.start + self.phase[i]) // self.period))

    def published(self, i: int, k: int) -> int:
        if k < self.initial:
            return int(self.start - (self.initial - k) * 3600)
        return int(self.start - self.phase[i] + (k - self.initial + 1) * self.period)

    def base(self, i: int) -> str:
        return f"http://{address(i)}:{self.port}"

    def feed(self, i: int, n: int) -> bytes:
        items = []
        for k in range(n - 1, max(-1, n - 1 - FEED_ITEMS), -1):
            url = f"{self.base(i)}/a/{k}.html"
            items.append(f"<item><title>Outlet {i} story {k}: the {WORDS[k % len(WORDS)]}</title><link>{url}</link>"
                         f"<guid>{url}</guid><pubDate>{formatdate(self.published(i, k), usegmt=True)}</pubDate>"
                         f"<description>Story {k} of outlet {i}.</description></item>")
        return (f'<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel><title>Outlet {i}</title>'
                f"<link>{self.base(i)}/</link><description>News of outlet {i}</description>"
                + "".join(items) + "</channel></rss>\n").encode()

    def article(self, i: int, k: int) -> bytes:
        topic = "Vietnam" if (i + k) % 2 == 0 else "the region"
        paras = "".join(f"<p>Paragraph {p} of story {k}: the {WORDS[(k + p) % len(WORDS)]} of {topic} was "
                        f"discussed again today, with officials and residents giving their views at length "
                        f"on what comes next for the {WORDS[(i + p) % len(WORDS)]}.</p>" for p in range(6))
        return (f"<!doctype html><html><head><meta charset=utf-8><title>Outlet {i} story {k}</title></head>"
                f"<body><article><h1>Outlet {i} story {k}: the {WORDS[k % len(WORDS)]}</h1>{paras}</article>"
                "</body></html>\n").encode()

    def answer(self, i: int, path: str, headers: dict[bytes, bytes]) -> tuple[int, bytes, str, str, str]:
        """(status, body, content type, ETag, Last-Modified) for a GET of `path` on outlet i."""
        now = time.time()
        n = self.count(i, now)
        if path == "/robots.txt":
            return self._cond("robots", headers, ROBOTS, "text/plain", '"r"', int(self.start))
        if path == "/feed.xml":
            etag, modified = f'"f{i}.{n}"', self.published(i, n - 1)
            if self._fresh(headers, etag, modified):
                self.stats["feed 304"] += 1
                return 304, b"", "", etag, formatdate(modified, usegmt=True)
            self.stats["feed 200"] += 1
            return 200, self.feed(i, n), "application/rss+xml", etag, formatdate(modified, usegmt=True)
        if path.startswith("/a/") and path.endswith(".html") and path[3:-5].isdigit() and int(path[3:-5]) < n:
            k = int(path[3:-5])
            return self._cond("article", headers, self.article(i, k), "text/html; charset=utf-8", f'"a{i}.{k}"',
                              self.published(i, k))
        self.stats["other 404"] += 1
        return 404, b"not found\n", "text/plain", "", ""

    def _cond(self, kind: str, headers: dict[bytes, bytes], body: bytes, ctype: str, etag: str,
              modified: int) -> tuple[int, bytes, str, str, str]:
        if self._fresh(headers, etag, modified):
            self.stats[f"{kind} 304"] += 1
            return 304, b"", "", etag, formatdate(modified, usegmt=True)
        self.stats[f"{kind} 200"] += 1
        return 200, body, ctype, etag, formatdate(modified, usegmt=True)

    @staticmethod
    def _fresh(headers: dict[bytes, bytes], etag: str, modified: int) -> bool:
        inm = headers.get(b"if-none-match")
        if inm is not None:  # RFC 9110: If-None-Match decides when present
            return etag.encode() in [t.strip().removeprefix(b"W/") for t in inm.split(b",")] or inm.strip() == b"*"
        ims = headers.get(b"if-modified-since")
        if ims is None:
            return False
        try:
            return parsedate_to_datetime(ims.decode("latin-1")).timestamp() >= modified
        except (TypeError, ValueError):
            return False


REASONS = {200: "OK", 304: "Not Modified", 400: "Bad Request", 404: "Not Found"}


class Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; GET only, which is all a crawler sends."""

    def __init__(self, feeds: Feeds, index: dict[str, int], conns: set["Conn"]):
        self.feeds, self.index, self.conns = feeds, index, conns
        self.buf = b""
        self.last = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.t = transport
        self.i = self.index[transport.get_extra_info("sockname")[0]]
        self.conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.conns.discard(self)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self.last = time.monotonic()
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head, self.buf = self.buf[:end], self.buf[end + 4:]
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
            if len(parts) != 3:
                status, body, ctype, etag, modified = 400, b"bad request\n", "text/plain", "", ""
            else:
                status, body, ctype, etag, modified = self.feeds.answer(
                    self.i, parts[1].decode("latin-1").split("?")[0], headers)
            close = headers.get(b"connection", b"").lower() == b"close"
            out = [f"HTTP/1.1 {status} {REASONS[status]}", f"Date: {formatdate(usegmt=True)}", "Server: many-feeds"]
            if etag:
                out += [f"ETag: {etag}", f"Last-Modified: {modified}"]
            if status != 304:
                out += [f"Content-Type: {ctype}", f"Content-Length: {len(body)}"]
            out.append("Connection: close" if close else "Connection: keep-alive")
            self.t.write(("\r\n".join(out) + "\r\n\r\n").encode() + body)
            if close:
                self.t.close()
                return
        if len(self.buf) > 65536:
            self.t.close()


async def serve(a: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    feeds = Feeds(a.outlets, time.time(), duration(a.every) / a.share, a.initial, a.port)
    index = {address(i): i for i in range(a.outlets)}
    conns: set[Conn] = set()
    servers = []
    for i in range(a.outlets):
        sock = socket.create_server((address(i), a.port), backlog=128)
        servers.append(await loop.create_server(lambda: Conn(feeds, index, conns), sock=sock))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    stats = Path(a.stats)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 5)
        except TimeoutError:
            pass
        now = time.monotonic()
        for c in [c for c in conns if now - c.last > a.idle]:  # as a server's keepalive_timeout does
            c.t.close()
        stats.with_suffix(".tmp").write_text(json.dumps(dict(feeds.stats)))
        stats.with_suffix(".tmp").replace(stats)
    for s in servers:
        s.close()
    return 0


# ---------------------------------------------------------------------------------- measuring


def proc_cpu(pid: int) -> tuple[float, float]:
    """(own utime+stime, reaped children's cutime+cstime) in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK, (int(fields[13]) + int(fields[14])) / TICK


def proc_rss(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for k in [int(x) for x in (task / "children").read_text().split()] if (task / "children").exists() else []:
            out += [k, *children(k)]
    return out


def sample(daemon: int, server: int) -> dict[str, float]:
    own, reaped = proc_cpu(daemon)
    kid_rss, kid_cpu = [], reaped
    for k in children(daemon):
        try:
            kid_rss.append(proc_rss(k))
            kid_cpu += proc_cpu(k)[0]
        except OSError:  # gone meanwhile
            pass
    return {"t": time.time(), "rss": proc_rss(daemon), "kids_rss": sum(kid_rss), "kid_max": max(kid_rss, default=0),
            "kids": len(kid_rss), "cpu": own, "kids_cpu": kid_cpu, "server_cpu": sum(proc_cpu(server)),
            "load": os.getloadavg()[0]}


def slope_mb_per_h(points: list[tuple[float, float]]) -> float:
    """Least squares."""
    ts, rs = [t for t, _ in points], [r for _, r in points]
    return statistics.linear_regression(ts, rs).slope * 3600 if len(set(ts)) > 2 else 0.0


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def write_config(out: Path, a: argparse.Namespace) -> Path:
    rows = ["name,feeds"] + [f"feed-{i:05d},http://{address(i)}:{a.port}/feed.xml" for i in range(a.outlets)]
    (out / "outlets.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    config = out / "many.yaml"
    config.write_text(f"""\
storage: {{root: {out / 'storage'}}}
fetch: {{allow_private_networks: true}}
daemon: {{listen: "{a.listen}", shutdown_grace: 20, jitter: {a.jitter}}}
topics:
  - {{name: vietnam, any: [Vietnam]}}
outlets_from: [outlets.csv]
outlet_defaults: {{topics: [vietnam], schedule: {{every: {a.every}}}}}
""", encoding="utf-8")
    return config


def time_load(config: Path) -> tuple[float, float]:
    """Medians of 3 (s): load_config in this process, `archiver check-config` end to end."""
    from archiver.config import load_config

    load_config(config)  # pydantic builds its validators on first use
    walls: tuple[list[float], list[float]] = ([], [])
    for _ in range(3):
        t = time.perf_counter()
        load_config(config)
        walls[0].append(time.perf_counter() - t)
        subprocess.run([str(Path(sys.executable).with_name("archiver")), "check-config", str(config)], check=True,
                       capture_output=True)
        walls[1].append(time.perf_counter() - t - walls[0][-1])
    return statistics.median(walls[0]), statistics.median(walls[1])


def scheduled_at(log_path: Path) -> tuple[dict[str, float], Counter[str]]:
    """outlet -> when its second pass was due (its grid: one interval apart from then on,
    each up to the jitter late), by the daemon's "scheduled X: ..., first pass at T, then
    from T2" line; and the daemon's warnings and errors by the start of their message."""
    added: dict[str, float] = {}
    problems: Counter[str] = Counter()
    for line in log_path.open(errors="replace"):
        try:
            rec = json.loads(line)
        except ValueError:
            problems["(not JSON) " + line[:60]] += 1
            continue
        msg = rec.get("message", "")
        if msg.startswith("scheduled ") and ", then from " in msg:
            added[msg.split()[1].rstrip(":")] = epoch(msg.rsplit(", then from ", 1)[1])
        if rec.get("level") in ("warning", "error", "critical"):
            problems[f"{rec['level']}: {msg[:70]}"] += 1
    return added, problems


def schedule_report(db: Path, added: dict[str, float], every: float, jitter: float,
                    t_end: float) -> tuple[dict[str, object], list[tuple[str, float]]]:
    """When each outlet's feed was fetched against when its job said: a poll is on schedule
    when it came no later than jitter + LATE_S after its nominal time."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    passes = conn.execute("SELECT started_at, ended_at FROM passes WHERE ended_at IS NOT NULL").fetchall()
    feeds = conn.execute("SELECT outlet, status, fetched_at FROM captures WHERE kind = 'feed'").fetchall()
    conn.close()
    polls: dict[str, list[float]] = {}
    for outlet, _, t in feeds:
        polls.setdefault(outlet, []).append(epoch(t))
    late, missing, over = [], 0, 0
    for outlet, t0 in added.items():
        got = sorted(polls.get(outlet, []))[1:]
        k = 0
        while t0 + k * every + jitter * every + LATE_S <= t_end:
            nominal = t0 + k * every
            hit = [t for t in got if nominal - 10 <= t <= nominal + every / 2]
            if hit:
                late.append(hit[0] - nominal)
                over += hit[0] - nominal > jitter * every + LATE_S
            else:
                missing += 1
            k += 1
    firsts = [min(v) for v in polls.values()]
    durations = sorted(epoch(e) - epoch(s) for s, e in passes)
    late.sort()

    def pct(xs: list[float], p: float) -> float | None:
        return round(xs[min(len(xs) - 1, int(len(xs) * p))], 2) if xs else None

    return ({"outlets_polled": len(polls), "passes": len(passes),
             "first_polls_spread_s": round(max(firsts) - min(firsts), 1) if firsts else None,
             "rounds_checked": len(late) + missing, "rounds_missing": missing, "rounds_late": over,
             "lateness_s": {"median": pct(late, 0.5), "p99": pct(late, 0.99), "max": pct(late, 1.0)},
             "pass_s": {"median": pct(durations, 0.5), "p99": pct(durations, 0.99)}},
            [(str(st), epoch(t)) for _, st, t in feeds])


# ---------------------------------------------------------------------------------- main


def at(samples: list[dict[str, float]], t: float) -> dict[str, float]:
    return ([s for s in samples if s["t"] <= t] or samples[:1])[-1]


def run(a: argparse.Namespace) -> int:
    every = duration(a.every)
    out = Path(a.out)
    subprocess.run(["rm", "-rf", str(out)], check=True)
    out.mkdir(parents=True)
    config = write_config(out, a)
    load_s, check_s = time_load(config)
    print(f"config: {a.outlets:,} outlets from a CSV; load_config {load_s:.2f} s, `archiver check-config` "
          f"{check_s:.2f} s end to end (target < {LOAD_TARGET_S:g} s)", flush=True)
    stats_file = out / "server-stats.json"
    server = subprocess.Popen([sys.executable, str(HERE), "serve", "--outlets", str(a.outlets), "--every", a.every,
                               "--share", str(a.share), "--initial", str(a.initial), "--port", str(a.port),
                               "--idle", str(a.idle), "--stats", str(stats_file)], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    if server.stdout.readline().strip() != "ready":
        raise SystemExit("the feed server did not start")
    log_path = out / "daemon.log"
    exe = Path(sys.executable).with_name("archiver")
    t0 = time.time()
    daemon = subprocess.Popen([str(exe), "run", "--config", str(config), "--log-format", "json"],
                              stdout=subprocess.DEVNULL, stderr=open(log_path, "w"))
    samples: list[dict[str, float]] = []
    try:
        while time.time() - t0 < a.minutes * 60 and daemon.poll() is None:
            samples.append(sample(daemon.pid, server.pid))
            time.sleep(max(0.0, a.sample - (time.time() - samples[-1]["t"])))
        if daemon.poll() is not None:
            raise SystemExit(f"the daemon exited early with {daemon.returncode}; see {log_path}")
        samples.append(sample(daemon.pid, server.pid))
        t_end = time.time()
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(120)
        stop_s = time.time() - t_end
    finally:
        for p in (daemon, server):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
    (out / "samples.json").write_text(json.dumps(samples))
    served = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    added, problems = scheduled_at(log_path)
    report, feed_rows = schedule_report(out / "storage" / "index.sqlite3", added, every, a.jitter, t_end)
    warm = t0 + every  # the second round starts here: every host's state exists, the backfill is done
    w = at(samples, warm)
    last = samples[-1]
    polls = [t for _, t in feed_rows if t <= t_end]
    steady = [(st, t) for st, t in feed_rows if w["t"] <= t <= t_end]
    not_modified = sum(1 for st, _ in steady if st == "304")
    cpu = last["cpu"] - w["cpu"]
    kids_cpu = last["kids_cpu"] - w["kids_cpu"]
    after = [(s["t"], s["rss"]) for s in samples if s["t"] >= warm]
    rss_after = [r for _, r in after] or [0.0]
    flat = bool(after) and max(rss_after) - min(rss_after) <= FLAT_MB
    peak = max(s["rss"] for s in samples)
    wall = t_end - t0
    by_10s = Counter(int(t // 10) for t in polls)
    loads = [s["load"] for s in samples]
    print(f"run: {a.minutes:g} min, every {a.every} (jitter {a.jitter:.0%}), {a.outlets:,} outlets on "
          f"{a.outlets:,} loopback hosts, {a.share:.0%} of feeds changing per interval, {a.initial} initial items; "
          f"load average {min(loads):.2f}-{max(loads):.2f} (median {statistics.median(loads):.2f}, 2 cores shared)")
    print(f"polls: {len(polls):,} feed fetches ({len(polls) / wall:.2f}/s over the run, busiest 10 s "
          f"{max(by_10s.values(), default=0) / 10:.1f}/s); after warm-up {len(steady):,}, "
          f"{100 * not_modified / (n := max(1, len(steady))):.1f}% answered 304")
    per = 1000 / n
    print(f"CPU per poll after warm-up: daemon {cpu * per:.2f} ms, extraction workers {kids_cpu * per:.2f} ms, "
          f"feed server {(last['server_cpu'] - w['server_cpu']) * per:.2f} ms; whole run: daemon {last['cpu']:.1f} s, "
          f"workers {last['kids_cpu']:.1f} s")
    print(f"daemon RSS MB: at 1 min {at(samples, t0 + 60)['rss']:.1f}, peak {peak:.1f}, end {last['rss']:.1f}; "
          f"after warm-up {min(rss_after):.1f}-{max(rss_after):.1f} "
          f"(slope {slope_mb_per_h(after):+.1f} MB/h): {'flat' if flat else 'NOT flat'} "
          f"(rule: max - min <= {FLAT_MB:g} MB from the second interval on)")
    print(f"children: {int(last['kids'])} extraction workers, {last['kids_rss']:.1f} MB together at the end, "
          f"largest peak sample {max(s['kid_max'] for s in samples):.1f} MB")
    lat = report["lateness_s"]
    assert isinstance(lat, dict)
    sustained = report["rounds_missing"] == 0 and report["rounds_late"] == 0 and \
        report["outlets_polled"] == a.outlets and report["rounds_checked"]
    print(f"schedule: {report['outlets_polled']:,} of {a.outlets:,} outlets polled, {report['passes']:,} passes, "
          f"first polls spread over {report['first_polls_spread_s']} s; {report['rounds_checked']:,} later "
          f"rounds due in the run, {report['rounds_missing']} missing, {report['rounds_late']} later than jitter + "
          f"{LATE_S:g} s; feed fetch after nominal time (jitter {a.jitter * every:.0f} s included) median {lat['median']} "
          f"s, p99 {lat['p99']} s, max {lat['max']} s: {'sustained' if sustained else 'NOT sustained'}")
    print(f"pass wall s median {report['pass_s']['median']}, p99 {report['pass_s']['p99']}; "  # type: ignore[index]
          f"stop: exit {code} in {stop_s:.1f} s; served {dict(sorted(served.items()))}")
    for what, n in problems.most_common(8):
        print(f"  log {n:>6} x {what}")
    ok = bool(sustained and flat and peak <= RSS_TARGET_MB and max(load_s, check_s) < LOAD_TARGET_S and code == 0)
    print(json.dumps({"many_feeds": {
        "outlets": a.outlets, "minutes": a.minutes, "every": a.every, "polls": len(polls), "polls_per_s":
        round(len(polls) / wall, 2), "polls_after_warm_up": len(steady), "share_304": round(not_modified / n, 3),
        "cpu_ms_per_poll": round(cpu * per, 2), "workers_cpu_ms_per_poll": round(kids_cpu * per, 2),
        "rss_mb": [at(samples, t0 + 60)["rss"], peak, last["rss"], min(rss_after), max(rss_after)],
        "schedule": report, "config_load_s": round(load_s, 3), "check_config_s": round(check_s, 3),
        "load_average": [min(loads), statistics.median(loads), max(loads)], "targets_met": ok}}))
    print(f"targets (RSS <= {RSS_TARGET_MB:g} MB and flat, schedule sustained, config load < {LOAD_TARGET_S:g} s): "
          f"{'met' if ok else 'NOT met'}")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", nargs="?", default="run", choices=("run", "serve"))
    ap.add_argument("--outlets", type=int, default=5000)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--every", default="15m")
    ap.add_argument("--share", type=float, default=0.05, help="share of feeds gaining an item per interval")
    ap.add_argument("--initial", type=int, default=1, help="items each feed lists at the start")
    ap.add_argument("--jitter", type=float, default=0.1, help="the config's daemon.jitter (the default)")
    ap.add_argument("--sample", type=float, default=5.0, help="seconds between RSS samples")
    ap.add_argument("--port", type=int, default=18090)
    ap.add_argument("--listen", default="127.0.0.1:18772", help="the daemon's /healthz address")
    ap.add_argument("--idle", type=float, default=30.0, help="seconds the server keeps an idle connection")
    ap.add_argument("--out", default="/tmp/archiver-many-feeds")
    ap.add_argument("--stats", default="", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="5 minutes, every 2m: a try")
    a = ap.parse_args()
    if a.command == "serve":
        return asyncio.run(serve(a))
    if a.quick:
        a.minutes, a.every = 5, "2m"
    if a.outlets > PER_BLOCK * 254:
        raise SystemExit(f"--outlets: at most {PER_BLOCK * 254}")
    return run(a)


if __name__ == "__main__":
    sys.exit(main())
