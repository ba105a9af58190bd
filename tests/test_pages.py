"""Pages as real sites write them: XHTML with an XML declaration is read like any page."""

from __future__ import annotations

import asyncio
from pathlib import Path

from archiver.config import load_config
from archiver.crawl import run_pass
from archiver.extract import extract_page
from archiver.index import Index

from .localoutlet import outlet_config
from .rawserver import RawServer, raw
from .test_item_failures import _feed, _ok

XHTML = ('<?xml version="1.0" encoding="{enc}"?>\n'
         '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" '
         '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\n'
         '<html xmlns="http://www.w3.org/1999/xhtml" lang="en"><head><title>Harbour talks resume</title></head>'
         '<body><div id="story"><h1>Harbour talks resume</h1>'
         + "".join(f"<p>Paragraph {i}: negotiators met again this week, and the delegation from Hanoi said "
                   f"Vietnam would press its case on fishing rights in the disputed waters.</p>" for i in range(5))
         + "</div></body></html>")


def test_an_xml_declaration_does_not_empty_the_text():
    for enc in ("utf-8", "iso-8859-1"):
        ex = extract_page(XHTML.format(enc=enc).encode(enc), "application/xhtml+xml")
        assert ex.title == "Harbour talks resume"
        assert "Vietnam would press its case" in ex.body_text
        assert "Vietnam would press its case" in ex.page_text


def test_an_xhtml_article_matched_only_in_its_body_is_archived(tmp_path: Path):
    page = XHTML.format(enc="utf-8").encode("utf-8")
    routes = {"/robots.txt": raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
              "/talks.xhtml": raw(_ok(page, "application/xhtml+xml; charset=utf-8"))}
    with RawServer(routes) as srv:
        routes["/feed.xml"] = raw(_ok(_feed([srv.url("/talks.xhtml")]), "application/rss+xml"))
        cfg = outlet_config(tmp_path / "c.yaml", tmp_path / "root", [srv.url("/feed.xml")])
        asyncio.run(run_pass(load_config(cfg)))
    with Index.open(tmp_path / "root", readonly=True) as idx:
        (row,) = list(idx.captures(kind="article"))
    assert row.state == "archived" and row.topics == ["vietnam"] and row.matched == {"Vietnam": ["body"]}
    text = (tmp_path / "root" / row.text_path).read_text(encoding="utf-8")
    assert text.startswith("Harbour talks resume\n\n") and "fishing rights" in text
