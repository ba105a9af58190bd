"""Outlet credentials (headers, cookies): sent to the outlet's own host only, and nowhere else:
not to other hosts, not into WARCs (request records are redacted), logs, warcinfo or
`archiver check-config` output."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

from pytest_httpserver import HTTPServer
from warcio.archiveiterator import ArchiveIterator

from archiver.index import Index

from .conftest import invoke
from .test_blocked import ARTICLE

TOKEN = "tok-7f3a9c1e5b2d4a60"
SESSION = "sess-0d9e8c7b6a5f4e3d"


def write_config(tmp_path: Path, base: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(f"""
storage: {{root: {tmp_path / 'st'}}}
fetch: {{allow_private_networks: true, per_host_delay: 0}}
topics: [{{name: blinken, any: [Blinken]}}]
outlets:
  - name: paywalled
    feeds: ["{base}/rss.xml"]
    headers: {{Authorization: "${{ARCHIVER_TEST_TOKEN}}"}}
    cookies: {{session: "{SESSION}"}}
""")
    return path


def test_credentials_reach_only_their_host_and_are_never_stored_or_logged(httpserver: HTTPServer, tmp_path: Path):
    other = HTTPServer(host="127.0.0.1", port=0)
    other.start()
    try:
        base, elsewhere = httpserver.url_for("").rstrip("/"), other.url_for("").rstrip("/")
        items = (f"<item><title>Blinken story a</title><link>{base}/a.html</link></item>"
                 f"<item><title>Blinken story b</title><link>{elsewhere}/b.html</link></item>")
        feed = f"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title>{items}</channel></rss>"
        auth = {"Authorization": f"Bearer {TOKEN}", "Cookie": f"session={SESSION}"}
        httpserver.expect_request("/robots.txt").respond_with_data("User-agent: *\nAllow: /\n")
        # without both credentials there is no handler: the server answers 500 and nothing is archived
        httpserver.expect_request("/rss.xml", headers=auth).respond_with_data(feed, content_type="application/rss+xml")
        httpserver.expect_request("/a.html", headers=auth).respond_with_data(ARTICLE, content_type="text/html")
        other.expect_request("/robots.txt").respond_with_data("User-agent: *\nAllow: /\n")
        other.expect_request("/b.html").respond_with_data(ARTICLE, content_type="text/html")
        config = write_config(tmp_path, base)
        exe = Path(sys.executable).with_name("archiver")
        env = {**os.environ, "ARCHIVER_TEST_TOKEN": f"Bearer {TOKEN}"}
        res = subprocess.run([str(exe), "crawl", "--config", str(config), "--no-progress", "-vv"],
                             capture_output=True, text=True, env=env, timeout=120)
        assert res.returncode == 0, res.stderr
        for req, _ in other.log:  # the article on another host got no credentials
            assert "Authorization" not in req.headers and "Cookie" not in req.headers
        assert any(req.path == "/b.html" for req, _ in other.log)
        with Index.open(tmp_path / "st", readonly=True) as idx:
            articles = {r.url.rsplit("/", 1)[-1]: r for r in idx.captures(kind="article")}
        assert articles["a.html"].state == "archived" and articles["a.html"].status == 200
        requests = []
        for warc in (tmp_path / "st" / "warc").iterdir():
            raw = warc.read_bytes()
            plain = gzip.decompress(raw)
            assert TOKEN.encode() not in plain and SESSION.encode() not in plain
            with open(warc, "rb") as f:
                for rec in ArchiveIterator(f):
                    if rec.rec_type == "request" and rec.rec_headers.get_header("WARC-Target-URI").startswith(base):
                        h = rec.http_headers
                        requests.append((h.get_header("Authorization"), h.get_header("Cookie")))
        assert requests and set(requests) == {("[redacted]", "[redacted]")}
        assert TOKEN not in res.stdout + res.stderr and SESSION not in res.stdout + res.stderr
        # check-config shows what is sent where, never the values
        shown = subprocess.run([str(exe), "check-config", str(config)], capture_output=True, text=True, env=env)
        assert shown.returncode == 0 and "Authorization" in shown.stdout and "session" in shown.stdout
        assert TOKEN not in shown.stdout and SESSION not in shown.stdout
    finally:
        other.stop()


def test_a_bad_credential_is_reported_without_its_value(tmp_path: Path):
    config = tmp_path / "c.yaml"
    config.write_text(f"""
topics: [{{name: blinken, any: [Blinken]}}]
outlets:
  - name: o
    feeds: ["http://127.0.0.1:9/rss.xml"]
    headers: {{"X-Key": "{TOKEN}\\r\\nX-Injected: 1"}}
    cookies: {{session: "{SESSION};"}}
  - name: p
    feeds: ["http://127.0.0.1:9/rss.xml"]
    headers: {{Authorization: "${{ARCHIVER_UNSET_VARIABLE_FOR_TEST}}"}}
  - name: q
    feeds: ["http://127.0.0.1:9/rss.xml"]
    headers: {{Host: "{SESSION}"}}
""")
    res = invoke("check-config", str(config))
    assert res.returncode == 2
    lines = res.stdout.splitlines()
    assert lines == [
        f"{config}:6: outlets[o].headers: the value of X-Key contains a line break",
        f"{config}:7: outlets[o].cookies: the value of cookie session contains ';' or a line break",
        f"{config}:10: outlets[p].headers: Authorization: environment variable ARCHIVER_UNSET_VARIABLE_FOR_TEST is not set",
        f"{config}:13: outlets[q].headers: Host is set by archiver itself and cannot be configured per outlet",
    ]
    assert TOKEN not in res.stdout and SESSION not in res.stdout
