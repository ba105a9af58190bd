"""Alerts and feeds, as a user meets them: a webhook receiver on 127.0.0.1 gets each new,
updated and removed article once, signed, however the receiver and the daemon come and go;
an SMTP server gets the same as mail; `archiver serve` publishes Atom feeds a feed reader
(feedparser) reads, each entry leading to its capture page."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import feedparser
import pytest

from archiver.config import load_config
from archiver.crawl import run_pass
from archiver.demo.site import Article, article_html

from .conftest import invoke
from .localoutlet import outlet_config
from .smtpsink import SmtpSink
from .test_browse import get, start_serve
from .test_daemon import Daemon, free_port, query, wait_for

SECRET = "kept-out-of-the-file"
TOPICS = "[{name: vietnam, any: [Vietnam]}, {name: blinken, any: [Blinken]}]"


def story(slug: str, title: str, *paragraphs: str) -> Article:
    return Article(f"/news/{slug}.html", title, "Mai Nguyen", "2025-06-14T08:00:00Z", paragraphs, ())


HANOI = story("hanoi-talks", "Hanoi hosts regional trade talks",
              "Trade ministers met in Hanoi on Saturday, with Vietnam pressing for new rules on tariffs.",
              "Delegates said the talks would run for three days.")
DELTA = story("delta-floods", "Floods in the Mekong delta",
              "Heavy rain flooded farms across the Mekong delta in southern Vietnam this week.",
              "Officials said rice exports would not be affected.")
SEOUL = story("blinken-seoul", "Blinken arrives in Seoul",
              "Antony Blinken arrived in Seoul on Sunday for talks on trade and security.",
              "It is the last stop of his trip.")
JAKARTA = story("blinken-jakarta", "Blinken meets Indonesian leaders as Vietnam watches",
                "Secretary of State Antony Blinken met Indonesia's foreign minister in Jakarta.",
                "Vietnam and Indonesia both sent envoys to the dinner that followed.")
TRAM = story("tram-line", "City approves the new tram line", "The council voted for the new line.",
             "Construction starts next spring.")
CORRECTION = "Correction: the talks will run for four days, not three."


class Outlet:
    """A small outlet on 127.0.0.1 whose stories can change, go (404, 410), or be sent to
    its front page, as sites retire stories."""

    def __init__(self, stories: list[Article]):
        self.stories = {a.path: a for a in stories}
        self.gone: dict[str, int] = {}  # path -> 404 or 410
        self.to_home: set[str] = set()
        self.editions = 0
        outlet = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                status, body, headers = outlet.answer(self.path)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(self, path: str) -> tuple[int, bytes, dict[str, str]]:
        html = {"Content-Type": "text/html; charset=utf-8"}
        if path == "/feed.xml":
            items = "".join(f"<item><title>{a.title}</title><link>{self.base}{a.path}</link></item>"
                            for a in self.stories.values())
            feed = (f"<?xml version='1.0'?><rss version='2.0'><channel><title>Outlet</title>"
                    f"<link>{self.base}/</link>{items}</channel></rss>")
            return 200, feed.encode(), {"Content-Type": "application/rss+xml"}
        if path == "/":  # a new edition at every request, naming a topic as front pages do
            self.editions += 1
            return 200, (f"<html><body><h1>Front page</h1><p>Edition {self.editions}: the latest from Vietnam "
                         f"and the harbour.</p></body></html>").encode(), html
        if path in self.to_home:
            return 301, b"", {"Location": "/"}
        if path in self.gone:
            return self.gone[path], b"<html><body>Not here</body></html>", html
        if path in self.stories:
            return 200, article_html(self.stories[path]), html
        return 404, b"", html

    def revise(self, a: Article, paragraph: str) -> None:
        self.stories[a.path] = Article(a.path, a.title, a.byline, a.date, (*a.paragraphs, paragraph), a.topics)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


class Receiver:
    """A webhook receiver on 127.0.0.1 that keeps every POST; `refuse` answers the next N
    POSTs to a path with 503 (a receiver having trouble)."""

    def __init__(self, port: int = 0):
        self.posts: list[Post] = []
        self.refuse: dict[str, int] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = 204
                if receiver.refuse.get(self.path, 0) > 0:
                    receiver.refuse[self.path] -= 1
                    status = 503
                receiver.posts.append(Post(self.path, {k.lower(): v for k, v in self.headers.items()}, body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def accepted(self, path: str) -> list[dict]:
        """The events accepted at `path`, each checked to carry a valid signature."""
        out = []
        for p in self.posts:
            if p.path != path or p.status != 204:
                continue
            want = "sha256=" + hmac.new(SECRET.encode(), p.body, hashlib.sha256).hexdigest()
            assert p.headers.get("x-archiver-signature") == want, f"bad signature on {p.body[:80]!r}"
            event = json.loads(p.body)
            assert p.headers["x-archiver-delivery"] == event["delivery"]
            assert p.headers["content-type"] == "application/json"
            out.append(event)
        return out

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def site_config(path: Path, root: Path, outlet: Outlet, extra: str = "", every: str = "30m") -> Path:
    """The outlet's config; every pass refetches the articles kept before it (six times at most)."""
    return outlet_config(path, root, [f"{outlet.base}/feed.xml"], topics=TOPICS,
                         outlet=f", home: {outlet.base}/, schedule: {{every: {every}}}",
                         extra=f"capture: {{mode: html}}\nrefetch: {{after: [0s, 0s, 0s, 0s, 0s, 0s]}}\n{extra}")


def alerts_config(path: Path, root: Path, outlet: Outlet, alerts: str, extra: str = "", every: str = "30m") -> Path:
    return site_config(path, root, outlet, f"{extra}alerts:\n{alerts}", every)


def start_daemon(cfg_path: Path, log: Path) -> Daemon:
    d = Daemon(cfg_path, log)
    d.proc = subprocess.Popen([str(Path(sys.executable).with_name("archiver")), "run", "--config", str(cfg_path)],
                              env={**os.environ, "ALERT_SECRET": SECRET}, stdout=subprocess.DEVNULL,
                              stderr=open(log, "a"))
    return d


def webhook(url: str, extra: str = "") -> str:
    return f"  - {{webhook: '{url}', secret: '${{ALERT_SECRET}}'{extra}}}\n"


def once_each(events: list[dict]) -> Counter:
    """(event, url) -> how many deliveries; every delivery id must be distinct."""
    ids = [e["delivery"] for e in events]
    assert len(ids) == len(set(ids)), "a delivery was accepted twice"
    return Counter((e["event"], e["url"]) for e in events)


@pytest.fixture
def outlet():
    o = Outlet([HANOI, DELTA, SEOUL, JAKARTA, TRAM])
    yield o
    o.close()


def test_each_event_reaches_its_webhooks_once_signed_and_a_failed_delivery_is_sent_again(
        outlet: Outlet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ALERT_SECRET", SECRET)
    receiver = Receiver()
    try:
        cfg_path = alerts_config(tmp_path / "c.yaml", tmp_path / "archive", outlet,
                                 webhook(f"{receiver.url}/all") +
                                 webhook(f"{receiver.url}/blinken", ", topics: [blinken], events: [new, removed]"))
        assert SECRET not in cfg_path.read_text()
        cfg = load_config(cfg_path)
        u = {a: outlet.base + a.path for a in (HANOI, DELTA, SEOUL, JAKARTA, TRAM)}

        asyncio.run(run_pass(cfg))
        receiver.refuse["/all"] = 1  # the first delivery there fails; the others wait their turn
        first = invoke("alerts", "deliver", "--config", str(cfg_path))
        assert first.returncode == 0, first.stderr
        assert "delivered 2, failed 1, still queued 4" in first.stdout
        assert "answered HTTP 503" in first.stderr
        again = invoke("alerts", "deliver", "--config", str(cfg_path))
        assert "delivered 4, failed 0, still queued 0" in again.stdout, again.stdout + again.stderr

        # the story is corrected; one answers 404, one sends readers to the front page, one 410
        outlet.revise(HANOI, CORRECTION)
        outlet.gone[DELTA.path] = 404
        outlet.to_home.add(SEOUL.path)
        outlet.gone[JAKARTA.path] = 410
        asyncio.run(run_pass(cfg))
        assert invoke("alerts", "deliver", "--config", str(cfg_path)).returncode == 0
        # refetched again: still gone, still corrected: nothing new to tell
        asyncio.run(run_pass(cfg))
        last = invoke("alerts", "deliver", "--config", str(cfg_path))
        assert "delivered 0, failed 0, still queued 0" in last.stdout
    finally:
        receiver.close()

    everything = receiver.accepted("/all")
    assert once_each(everything) == Counter({("new", u[HANOI]): 1, ("new", u[DELTA]): 1, ("new", u[SEOUL]): 1,
                                             ("new", u[JAKARTA]): 1, ("updated", u[HANOI]): 1,
                                             ("removed", u[DELTA]): 1, ("removed", u[SEOUL]): 1,
                                             ("removed", u[JAKARTA]): 1})
    assert once_each(receiver.accepted("/blinken")) == Counter({("new", u[SEOUL]): 1, ("new", u[JAKARTA]): 1,
                                                                ("removed", u[SEOUL]): 1, ("removed", u[JAKARTA]): 1})
    by = {(e["event"], e["url"]): e for e in everything}
    new = by[("new", u[JAKARTA])]
    assert new["state"] == "archived" and new["kind"] == "article" and new["title"] == JAKARTA.title
    assert sorted(new["topics"]) == ["blinken", "vietnam"] and new["terms"] == ["Blinken", "Vietnam"]
    assert re.fullmatch(rf"/web/\d{{14}}/{re.escape(u[JAKARTA])}", new["permalink"])
    assert new["capture_page"] == f"/capture/{new['id']}"
    updated = by[("updated", u[HANOI])]
    assert updated["previous_id"] == by[("new", u[HANOI])]["id"]
    assert f"+ {CORRECTION}" in updated["diff"].splitlines()
    gone = by[("removed", u[DELTA])]
    assert gone["status"] == 404 and gone["reason"] == "answered HTTP 404"
    # the links lead to the last version archived, as a removed page has nothing else to show
    assert gone["capture_page"] == f"/capture/{by[('new', u[DELTA])]['id']}"
    assert gone["permalink"] == by[("new", u[DELTA])]["permalink"] and gone["topics"] == ["vietnam"]
    assert by[("removed", u[JAKARTA])]["reason"] == "answered HTTP 410"
    assert by[("removed", u[SEOUL])]["reason"] == f"redirects to the outlet's home page {outlet.base}/"
    assert ("new", u[TRAM]) not in by  # off topic: not archived, no alert
    # the capture page of a removed article's last version says when the outlet removed it
    from starlette.testclient import TestClient

    from archiver.web.app import create_app
    with TestClient(create_app(tmp_path / "archive"), base_url="http://127.0.0.1:8770") as ui:
        def removed_note(capture_page: str) -> str:
            html = ui.get(capture_page).text
            m = re.search(r'<p class="removed" id="removed">(.*?)</p>', html, re.S)
            return re.sub(r"<[^>]+>", "", m.group(1)) if m else ""
        assert "Removed by the outlet: it answered HTTP 404 at " in removed_note(gone["capture_page"])
        assert "it answered HTTP 410" in removed_note(by[("removed", u[JAKARTA])]["capture_page"])
        assert f"it redirected to the front page {outlet.base}/" in removed_note(by[("removed", u[SEOUL])]["capture_page"])
        assert removed_note(by[("updated", u[HANOI])]["capture_page"]) == ""  # still there, corrected


def test_receiver_down_then_daemon_restarted_loses_nothing_and_sends_each_once(outlet: Outlet, tmp_path: Path):
    hook_port, health_port = free_port(), free_port()
    cfg_path = alerts_config(tmp_path / "c.yaml", tmp_path, outlet, webhook(f"http://127.0.0.1:{hook_port}/hook"),
                             extra=f"daemon: {{listen: '127.0.0.1:{health_port}', jitter: 0, shutdown_grace: 10}}\n",
                             every="2s")

    def outbox(where: str = "1") -> int:
        if not (tmp_path / "index.sqlite3").exists():  # the daemon has not made it yet
            return 0
        rows = query(tmp_path, f"SELECT COUNT(*) FROM outbox WHERE {where}")
        return rows[0][0] if rows else 0

    d = start_daemon(cfg_path, tmp_path / "daemon.log")
    try:
        # nothing listens on the webhook's port: every attempt fails and the deliveries stay queued
        wait_for("the new articles queued", lambda: outbox("event = 'new'") == 4)
        wait_for("a failed attempt", lambda: outbox("attempts > 0 AND last_error IS NOT NULL"))
        outlet.revise(HANOI, CORRECTION)
        outlet.gone[DELTA.path] = 404
        wait_for("the update and the removal queued", lambda: outbox() == 6, timeout=40)
        assert d.stop(signal.SIGTERM) == 0
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
    assert outbox("delivered_at IS NULL") == 6
    assert "delivery to webhook http://127.0.0.1:%d/… failed" % hook_port in d.log.read_text()

    receiver = Receiver(hook_port)
    d = start_daemon(cfg_path, tmp_path / "daemon.log")
    try:
        wait_for("every queued delivery", lambda: len(receiver.accepted("/hook")) >= 6)
        passes = query(tmp_path, "SELECT COUNT(*) FROM passes")[0][0]
        # more passes refetch the same pages: still corrected, still gone, nothing more to tell
        wait_for("two more passes", lambda: query(tmp_path, "SELECT COUNT(*) FROM passes")[0][0] >= passes + 2)
        time.sleep(1.5)
        assert d.stop(signal.SIGTERM) == 0
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
        receiver.close()
    u = {a: outlet.base + a.path for a in (HANOI, DELTA, SEOUL, JAKARTA)}
    assert once_each(receiver.accepted("/hook")) == Counter(
        {("new", u[HANOI]): 1, ("new", u[DELTA]): 1, ("new", u[SEOUL]): 1, ("new", u[JAKARTA]): 1,
         ("updated", u[HANOI]): 1, ("removed", u[DELTA]): 1})
    assert outbox("delivered_at IS NULL") == 0
    assert "stopped cleanly" in d.log.read_text()


def test_a_kill_at_an_index_commit_leaves_each_capture_with_its_deliveries_and_no_other(
        outlet: Outlet, tmp_path: Path):
    receiver = Receiver()
    try:
        cfg_path = alerts_config(tmp_path / "c.yaml", tmp_path, outlet, webhook(f"{receiver.url}/hook"))
        exe = str(Path(sys.executable).with_name("archiver"))
        env = {**os.environ, "ALERT_SECRET": SECRET}
        # the 5th and 6th commits of a crawl are article rows (robots.txt, the feed and the home
        # page come first): killed with their records on disk and their row not committed
        for n in (5, 6):
            crashed = subprocess.run([exe, "crawl", "--config", str(cfg_path), "--no-progress"], timeout=120,
                                     env={**env, "ARCHIVER_CRASH_AT": f"index-commit:{n}"}, capture_output=True)
            assert crashed.returncode == -signal.SIGKILL, crashed.stderr
            kept = {r[0] for r in query(tmp_path, "SELECT id FROM captures WHERE kind = 'article' "
                                                  "AND state = 'archived'")}
            queued = [r[0] for r in query(tmp_path, "SELECT capture_id FROM outbox")]
            assert len(kept) < 4  # the kill cost an article its row
            assert sorted(queued) == sorted(kept)  # committed together, or not at all
        done = subprocess.run([exe, "crawl", "--config", str(cfg_path), "--no-progress"], timeout=120, env=env,
                              capture_output=True)
        assert done.returncode == 0, done.stderr
        ran = invoke("alerts", "deliver", "--config", str(cfg_path), env={"ALERT_SECRET": SECRET})
        assert ran.returncode == 0 and "failed 0" in ran.stdout, ran.stdout + ran.stderr
    finally:
        receiver.close()
    u = {a: outlet.base + a.path for a in (HANOI, DELTA, SEOUL, JAKARTA)}
    assert once_each(receiver.accepted("/hook")) == Counter({("new", url): 1 for url in u.values()})


def test_an_email_alert_reaches_the_smtp_server(outlet: Outlet, tmp_path: Path):
    with SmtpSink() as sink:
        cfg_path = alerts_config(tmp_path / "c.yaml", tmp_path / "archive", outlet,
                                 f"  - email: {{to: [desk@example.org, editor@example.org], "
                                 f"from: archiver@example.org, smtp: '127.0.0.1:{sink.port}', tls: none}}\n"
                                 f"    topics: [vietnam]\n",
                                 extra="daemon: {public_url: 'https://archive.example.org'}\n")
        asyncio.run(run_pass(load_config(cfg_path)))
        ran = invoke("alerts", "deliver", "--config", str(cfg_path))
        assert "delivered 3, failed 0" in ran.stdout, ran.stdout + ran.stderr
        assert "delivered 0, failed 0" in invoke("alerts", "deliver", "--config", str(cfg_path)).stdout
    mails = [email.message_from_bytes(m.data, policy=email.policy.default) for m in sink.mails]
    assert all(m.recipients == ["desk@example.org", "editor@example.org"] for m in sink.mails)
    assert sorted(m["Subject"] for m in mails) == sorted(f"[archiver] new: {a.title}" for a in (HANOI, DELTA, JAKARTA))
    ids = {m["X-Archiver-Delivery"] for m in mails}
    assert len(ids) == 3 and {m["Message-ID"] for m in mails} == {f"<{i}@archiver>" for i in ids}
    hanoi = next(m for m in mails if HANOI.title in m["Subject"])
    text = hanoi.get_body(("plain",)).get_content()
    assert f"URL: {outlet.base}{HANOI.path}" in text and "Matched: Vietnam" in text
    attached = json.loads(next(hanoi.iter_attachments()).get_content())
    # daemon.public_url makes the links absolute
    assert attached["permalink"].startswith("https://archive.example.org/web/")
    assert f"Archived copy: {attached['permalink']}" in text


def test_topic_feeds_list_the_topics_captures_and_lead_to_their_capture_pages(outlet: Outlet, tmp_path: Path):
    cfg_path = site_config(tmp_path / "c.yaml", tmp_path / "archive", outlet)
    cfg = load_config(cfg_path)
    asyncio.run(run_pass(cfg))
    outlet.revise(HANOI, CORRECTION)
    asyncio.run(run_pass(cfg))
    proc, base, _ = start_serve(cfg_path)
    try:
        status, headers, body = get(f"{base}/feeds/vietnam.atom")
        assert status == 200 and headers["content-type"] == "application/atom+xml; charset=utf-8"
        feed = feedparser.parse(body)
        assert not feed.bozo, feed.bozo_exception
        assert feed.feed.title == "archiver: vietnam"
        titles = [e.title for e in feed.entries]
        assert titles[0] == f"{HANOI.title} (new version)"  # newest first
        assert sorted(titles[1:]) == sorted([JAKARTA.title, DELTA.title, HANOI.title])
        for entry in feed.entries:
            assert re.fullmatch(rf"{base}/capture/\d+", entry.link)
            assert "vietnam" in [t.term for t in entry.tags]
            page = get(entry.link)
            assert page[0] == 200 and entry.title.removesuffix(" (new version)") in page[2]
        assert CORRECTION[:30] in feed.entries[0].summary
        assert len({e.id for e in feed.entries}) == 4  # one entry per capture, ids that stay

        everything = feedparser.parse(get(f"{base}/feeds/all.atom")[2])
        assert not everything.bozo
        assert sorted(e.title for e in everything.entries) == sorted(
            titles + [SEOUL.title])  # Seoul: blinken only; the tram story is off topic
        blinken = feedparser.parse(get(f"{base}/feeds/blinken.atom")[2])
        assert sorted(e.title for e in blinken.entries) == sorted([SEOUL.title, JAKARTA.title])
        assert get(f"{base}/feeds/nosuch.atom")[0] == 404
    finally:
        proc.terminate()
        proc.wait(10)


def test_alert_config_problems_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    o = Outlet([])
    try:
        bad = alerts_config(tmp_path / "c.yaml", tmp_path, o,
                            "  - {webhook: 'http://127.0.0.1:9/hook', secret: '${NOT_SET_ANYWHERE}'}\n"
                            "  - {webhook: 'ftp://example.org/x'}\n"
                            "  - {webhook: 'http://127.0.0.1:9/hook', events: [created]}\n"
                            "  - {email: {to: [desk@example.org], from: nobody, smtp: 'localhost:25'}}\n"
                            "  - {webhook: 'http://127.0.0.1:9/hook', email: {to: a@b.c, from: d@e.f, smtp: 'h:25'}}\n")
        typo = alerts_config(tmp_path / "typo.yaml", tmp_path, o,
                             "  - {webhook: 'http://127.0.0.1:9/hook', topics: [vietnm]}\n")
    finally:
        o.close()
    ran = invoke("check-config", str(bad))
    assert ran.returncode == 2
    out = ran.stdout
    assert ":7: alerts[0].secret: environment variable NOT_SET_ANYWHERE is not set" in out
    assert ":8: alerts[1].webhook: not an http(s) URL" in out and "ftp://" not in out  # a webhook URL is a secret
    assert ":9: alerts[2].events: no event 'created' (events are new, updated, removed)" in out
    assert ":10: alerts[3].email.from: not an e-mail address (got 'nobody')" in out
    assert ":11: alerts[4]: an alert is either a webhook: URL or an email: {to, from, smtp}" in out
    assert all(re.match(rf"{re.escape(str(bad))}:\d+: alerts\[", line) for line in out.splitlines()), out
    ran = invoke("check-config", str(typo))
    assert ran.returncode == 2
    assert ":7: alerts[0].topics[0]: names no defined topic (did you mean 'vietnam'? defined: vietnam, blinken)" \
        in ran.stdout
