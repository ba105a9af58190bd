"""A bot challenge served instead of an article is evidence, not an article, and is retried."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pytest_httpserver import HTTPServer
from warcio.archiveiterator import ArchiveIterator

from archiver.config import load_config
from archiver.crawl import run_pass
from archiver.index import Index

CHALLENGE = ("<html><head><title>Are you a robot?</title></head><body><h1>Sorry...</h1>"
             "<p>We've detected unusual activity from your computer network. To continue, please click the box "
             "below to let us know you're not a robot.</p><div class='g-recaptcha'></div></body></html>")
ARTICLE = ("<html><head><title>Blinken in Hanoi</title></head><body><article><h1>Blinken in Hanoi</h1>"
           + "".join(f"<p>Paragraph {i}: Secretary Blinken met leaders in Hanoi to talk about trade and "
                     f"security in the region, officials said on Saturday.</p>" for i in range(6))
           + "</article></body></html>")


def feed(base: str) -> str:
    items = "".join(f"<item><title>Blinken story {n}</title><link>{base}/{n}.html</link></item>" for n in ("a", "b"))
    return f"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title>{items}</channel></rss>"


def test_block_page_is_archived_flagged_and_retried(httpserver: HTTPServer, tmp_path: Path):
    base = httpserver.url_for("").rstrip("/")
    httpserver.expect_request("/robots.txt").respond_with_data("User-agent: *\nAllow: /\n")
    httpserver.expect_request("/rss.xml").respond_with_data(feed(base), content_type="application/rss+xml")
    httpserver.expect_request("/a.html").respond_with_data(ARTICLE, content_type="text/html")
    httpserver.expect_request("/b.html").respond_with_data(CHALLENGE, content_type="text/html")
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(f"""
storage: {{root: {tmp_path / 'st'}}}
fetch: {{allow_private_networks: true, per_host_delay: 0}}
topics: [{{name: blinken, any: [Blinken]}}]
outlets: [{{name: o, feeds: ["{base}/rss.xml"]}}]
""")
    cfg = load_config(cfg_path)
    stats = asyncio.run(run_pass(cfg)).outlets[0]
    assert (stats.archived, stats.blocked, stats.on_topic) == (1, 1, 1)
    with Index.open(cfg.storage_root, readonly=True) as idx:
        rows = {r.url.rsplit("/", 1)[-1]: r for r in idx.captures(kind="article")}
    blocked = rows["b.html"]
    assert blocked.state == "blocked" and blocked.topics == [] and "unusual activity" in blocked.error
    with open(cfg.storage_root / blocked.warc_file, "rb") as f:  # kept as evidence
        f.seek(blocked.warc_offset)
        rec = next(iter(ArchiveIterator(f)))
        assert b"not a robot" in rec.content_stream().read()
    def hits(path: str) -> int:
        return sum(1 for req, _ in httpserver.log if req.path == path)

    before = hits("/a.html"), hits("/b.html")
    stats2 = asyncio.run(run_pass(cfg)).outlets[0]
    assert (hits("/a.html"), hits("/b.html")) == (before[0], before[1] + 1)  # only the blocked one again
    assert stats2.blocked == 1 and stats2.skipped_known == 1
