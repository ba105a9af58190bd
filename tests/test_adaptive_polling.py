"""Adaptive polling: with `schedule: {every, min, max}` a feed that has not changed is fetched
less and less often, one that changes is fetched sooner, always within [min, max].

Real passes against a real feed server on 127.0.0.1; the time the passes go by is polling's
clock, moved by the test instead of waited for.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from archiver import polling
from archiver.config import load_config
from archiver.crawl import run_pass
from archiver.triggers import make_trigger

from .conftest import invoke
from .localoutlet import outlet_config

MIN = 600.0  # the schedules below: every 30m, min 10m, max 6h unless said otherwise
ARTICLE = ("<html><head><title>Harbour news</title></head><body><p>" + "The harbour reopened today. " * 30
           + "</p></body></html>")


class Feed:
    """An RSS feed whose items the test adds; answers 304 to a matching If-None-Match."""

    def __init__(self, server: HTTPServer, items: int = 5, listed: int = 20, etags: bool = True):
        self.server, self.n, self.listed, self.etags = server, items, listed, etags
        self.broken = False  # answers 500
        self.gets = 0  # GETs of the feed, whatever the answer
        server.expect_request("/robots.txt").respond_with_data("User-agent: *\nAllow: /\n")
        server.expect_request("/feed.xml").respond_with_handler(self._answer)
        server.expect_request("/a").respond_with_data(ARTICLE, content_type="text/html")
        self.url = server.url_for("/feed.xml")

    def publish(self, k: int = 1) -> None:
        self.n += k

    def body(self) -> bytes:
        items = "".join(f"<item><title>Story {i}</title><link>{self.server.url_for('/a')}?n={i}</link></item>"
                        for i in range(self.n, max(0, self.n - self.listed), -1))
        return f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{items}</channel></rss>'.encode()

    def _answer(self, request: Request) -> Response:
        self.gets += 1
        if self.broken:
            return Response("down for maintenance", status=500)
        body = self.body()
        etag = '"' + hashlib.sha1(body).hexdigest() + '"'
        if not self.etags:
            return Response(body, content_type="application/rss+xml")
        if request.headers.get("If-None-Match") == etag:
            return Response(status=304, headers={"ETag": etag})
        return Response(body, content_type="application/rss+xml", headers={"ETag": etag})


class Clock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.t = 1_700_000_000.0
        monkeypatch.setattr(polling, "now", lambda: self.t)

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


def config(tmp_path: Path, feed: Feed, schedule: str = "{every: 30m, min: 10m, max: 6h}") -> Path:
    return outlet_config(tmp_path / "c.yaml", tmp_path / "st", [feed.url], outlet=f", schedule: {schedule}")


def polled(cfg_path: Path, feed: Feed) -> bool:
    """Run one pass; whether it fetched the feed."""
    before = feed.gets
    asyncio.run(run_pass(load_config(cfg_path)))
    return feed.gets > before


@pytest.mark.parametrize("etags", [True, False], ids=["answered 304", "same feed again"])
def test_an_unchanged_feed_waits_ever_longer_and_is_fetched_when_its_stretched_interval_is_due(
        httpserver: HTTPServer, tmp_path: Path, clock: Clock, etags: bool):
    feed = Feed(httpserver, etags=etags)
    cfg = config(tmp_path, feed)
    fetched = []
    # passes every 10 minutes for 4 hours; the feed never changes
    for _ in range(25):
        fetched.append(polled(cfg, feed))
        clock.advance(MIN)
    at = [i * 10 for i, f in enumerate(fetched) if f]
    # starts at `every` (30m), then each unchanged poll waits 1.5 times longer: 45m, 67.5m, 101m
    # (each kept to the pass nearest its due time)
    assert at == [0, 30, 70, 140, 240]


def test_the_pass_says_how_many_feeds_were_not_due_and_when_the_next_is(httpserver: HTTPServer, tmp_path: Path,
                                                                        clock: Clock):
    feed = Feed(httpserver)
    cfg = config(tmp_path, feed)
    assert invoke("crawl", "--config", str(cfg), "--no-progress").returncode == 0
    clock.advance(MIN)
    ran = invoke("crawl", "--config", str(cfg), "--no-progress", "--format", "jsonl")
    assert ran.returncode == 0
    assert '"sources_not_due": 1' in ran.stdout
    due = polling._stamp(clock.t - MIN + 1800)[:19]
    said = f"x: 1 feeds, pages or sitemaps not due yet (adaptive schedule); the next, {feed.url}, at {due}"
    assert said in ran.stderr
    status = invoke("status", "--config", str(cfg))
    assert f"x: feeds and pages polled every 10m to 6h; next due: {feed.url} at {due}" in status.stdout


def test_a_changed_feed_is_fetched_sooner(httpserver: HTTPServer, tmp_path: Path, clock: Clock):
    feed = Feed(httpserver)
    cfg = config(tmp_path, feed)
    assert polled(cfg, feed)
    clock.advance(1800)
    assert polled(cfg, feed)  # unchanged: next in 45m
    clock.advance(2700)
    feed.publish(3)
    assert polled(cfg, feed)  # 3 new items in 75 minutes: one every 25m, so polled every 12.5m
    clock.advance(MIN)
    assert polled(cfg, feed)  # the next pass, where unchanged it would have waited 67.5m
    fetched = []
    for _ in range(18):  # unchanged for three hours: the waits grow again
        clock.advance(MIN)
        fetched.append(polled(cfg, feed))
    at = [i for i, f in enumerate(fetched) if f]
    gaps = [b - a for a, b in zip(at, at[1:])]
    assert gaps == sorted(gaps) and gaps[-1] > gaps[0]


def test_a_feed_whose_every_item_is_new_is_fetched_again_after_min(httpserver: HTTPServer, tmp_path: Path,
                                                                    clock: Clock):
    feed = Feed(httpserver, listed=3)
    cfg = config(tmp_path, feed, "{every: 1h, min: 10m, max: 2h}")
    for wait in (3600, 5400):  # quiet: 1h, then 1.5h, then 2h
        assert polled(cfg, feed)
        clock.advance(wait)
    assert polled(cfg, feed)
    clock.advance(7200)
    feed.publish(5)  # more than the 3 the feed lists: some were never seen, so poll as often as allowed
    assert polled(cfg, feed)
    clock.advance(MIN)
    assert polled(cfg, feed)  # 3 items in 4.5 hours alone would have meant 45m


def test_a_quiet_feed_is_never_left_longer_than_max(httpserver: HTTPServer, tmp_path: Path, clock: Clock):
    feed = Feed(httpserver)
    cfg = config(tmp_path, feed, "{every: 1h, min: 10m, max: 2h}")
    fetched = []
    for _ in range(48):  # eight hours of passes, every 10 minutes
        fetched.append(polled(cfg, feed))
        clock.advance(MIN)
    # 1h, then 1.5h, then 2h and no longer
    assert [i * 10 for i, f in enumerate(fetched) if f] == [0, 60, 150, 270, 390]


def test_a_failing_feed_is_tried_again_after_every_not_on_every_pass(httpserver: HTTPServer, tmp_path: Path,
                                                                       clock: Clock):
    feed = Feed(httpserver)
    feed.broken = True
    cfg = config(tmp_path, feed)
    fetched = []
    for _ in range(7):
        fetched.append(polled(cfg, feed))
        clock.advance(MIN)
    assert [i * 10 for i, f in enumerate(fetched) if f] == [0, 30, 60]
    feed.broken = False
    clock.advance(1800)
    assert polled(cfg, feed)


def test_without_min_or_max_every_feed_is_fetched_on_every_pass(httpserver: HTTPServer, tmp_path: Path, clock: Clock):
    feed = Feed(httpserver)
    cfg = config(tmp_path, feed, "{every: 30m}")
    assert all(polled(cfg, feed) for _ in range(3))
    outlet = load_config(cfg).config.outlets[0]
    assert not outlet.schedule.adaptive and make_trigger(outlet, 0).interval.total_seconds() == 1800


def test_an_adaptive_outlet_runs_every_min(httpserver: HTTPServer, tmp_path: Path):
    cfg = load_config(config(tmp_path, Feed(httpserver)))
    assert make_trigger(cfg.config.outlets[0], 0).interval.total_seconds() == MIN


@pytest.mark.parametrize("schedule, problem", [
    ("{every: 30m, min: 1h, max: 6h}", "give min <= every <= max (got min 3600s, every 1800s, max 21600s)"),
    ("{every: 30m, min: 10m, max: 20m}", "give min <= every <= max (got min 600s, every 1800s, max 1200s)"),
    ('{cron: "*/10 * * * *", max: 6h}',
     "'min' and 'max' go with 'every' (the interval a feed starts at), not with 'cron'"),
    ("{every: 30m, min: 0.5}", "'min' must be at least 1 second"),
    ("{every: 30m, max: soon}", "expected a duration such as 30, '45s', '30m' or '2h'"),
])
def test_schedule_bounds_are_checked(tmp_path: Path, schedule: str, problem: str):
    p = tmp_path / "c.yaml"
    p.write_text(f"""\
storage: {{root: {tmp_path / 'st'}}}
topics: [{{name: t, any: [x]}}]
outlets:
  - name: o
    feeds: ["https://e.org/rss"]
    schedule: {schedule}
""")
    ran = invoke("check-config", str(p))
    assert ran.returncode == 2
    lines = ran.stdout.splitlines()
    assert any(line.startswith(f"{p}:6: outlets[o].schedule") and problem in line for line in lines), ran.stdout
