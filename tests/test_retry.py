"""HTTP statuses over time: 410 is never asked again, 404 is asked again after 1 h, 6 h and
24 h and then given up, 5xx backs off; other candidates are unaffected."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

from archiver.config import load_config
from archiver.crawl import run_pass
from archiver.retry import next_try

from .localoutlet import outlet_config
from .rawserver import RawServer, raw
from .test_item_failures import _feed, _ok, _page

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_the_schedule():
    assert next_try([410], T0) is None
    assert next_try([404], T0) == T0 + timedelta(hours=1)
    assert next_try([404, 404], T0) == T0 + timedelta(hours=6)
    assert next_try([404, 404, 404], T0) == T0 + timedelta(hours=24)
    assert next_try([404, 404, 404, 404], T0) is None
    assert next_try([503], T0) == T0 + timedelta(hours=1)
    assert next_try([500, 502, 503, 504, 500], T0) == T0 + timedelta(hours=24)  # 5xx never gives up
    assert next_try([404, 404, 404, 500], T0) == T0 + timedelta(hours=1)  # a new kind starts afresh


def _age_rows(root: Path, hours: float) -> None:
    """Move every capture's time back, as if `hours` had passed."""
    conn = sqlite3.connect(root / "index.sqlite3")
    with conn:
        for (rid, at) in conn.execute("SELECT id, fetched_at FROM captures").fetchall():
            t = datetime.fromisoformat(at.replace("Z", "+00:00")) - timedelta(hours=hours)
            conn.execute("UPDATE captures SET fetched_at = ? WHERE id = ?",
                         (t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), rid))
    conn.close()


def test_gone_missing_and_broken_pages_are_asked_again_on_their_schedule(tmp_path: Path):
    routes = {"/robots.txt": raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
              "/gone": raw(b"HTTP/1.1 410 Gone\r\nContent-Length: 0\r\n\r\n"),
              "/missing": raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
              "/broken": raw(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"),
              "/timeout-like": raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")}
    root = tmp_path / "root"
    with RawServer(routes) as srv:
        paths = ["/gone", "/missing", "/broken", "/timeout-like"]
        routes["/feed.xml"] = raw(_ok(_feed([srv.url(p) for p in paths]), "application/rss+xml"))
        cfg = load_config(outlet_config(tmp_path / "c.yaml", root, [srv.url("/feed.xml")], fetch=", timeout: 2"))

        def one_pass() -> tuple[list[str], int]:
            before = len(srv.requests)
            result = asyncio.run(run_pass(cfg))
            asked = [h.split(b" ", 2)[1].decode() for h in srv.requests[before:]]
            return [p for p in asked if p in paths], result.outlets[0].not_due

        asked, not_due = one_pass()
        assert sorted(asked) == sorted(paths) and not_due == 0
        asked, not_due = one_pass()  # at once: only the failure without a status is asked again
        assert asked == ["/timeout-like"] and not_due == 3
        _age_rows(root, 1.5)
        asked, _ = one_pass()
        assert sorted(asked) == ["/broken", "/missing", "/timeout-like"]
        _age_rows(root, 1.5)  # 1.5 h after the second 404: its next try is 6 h after it
        asked, _ = one_pass()
        assert asked == ["/timeout-like"]
        for _ in range(2):  # the third and fourth 404
            _age_rows(root, 25)
            asked, _ = one_pass()
            assert sorted(asked) == ["/broken", "/missing", "/timeout-like"]
        _age_rows(root, 1000)  # the 404 is dead now; 5xx goes on being asked now and then
        asked, not_due = one_pass()
        assert sorted(asked) == ["/broken", "/timeout-like"] and not_due == 2


def test_summary_names_failed_articles_and_status_counts_urls(tmp_path: Path):
    from .conftest import invoke

    routes = {"/robots.txt": raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
              "/good": raw(_ok(_page("Vietnam talks", "Text."))),
              "/short": raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")}
    for i in range(4):
        routes[f"/err-{i}"] = raw(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
    root = tmp_path / "root"
    with RawServer(routes) as srv:
        links = [srv.url(p) for p in ("/good", "/short", "/err-0", "/err-1", "/err-2", "/err-3")]
        routes["/feed.xml"] = raw(_ok(_feed(links), "application/rss+xml"))
        cfg_path = outlet_config(tmp_path / "c.yaml", root, [srv.url("/feed.xml")], fetch=", timeout: 2")
        first = invoke("crawl", "--config", str(cfg_path), "--no-progress")
        for _ in range(3):  # the short body is asked on every pass, the 5xx ones back off
            again = invoke("crawl", "--config", str(cfg_path), "--no-progress")
            assert again.returncode == 0, again.stderr
        status = invoke("status", "--config", str(cfg_path))
    assert first.returncode == 0, first.stderr
    lines = [l.strip() for l in first.stdout.splitlines()]
    assert any(l.startswith(f"x: article {srv.url('/err-')}") and "HTTP 500" in l for l in lines), first.stdout
    assert any("more failed articles" in l for l in lines), first.stdout
    assert status.returncode == 0, status.stderr
    # 4 passes, one article, five failing URLs (the short body failed 4 times: still one URL)
    assert "totals: 4 passes; articles: 1 archived, 0 updated, 5 failing" in status.stdout, status.stdout
