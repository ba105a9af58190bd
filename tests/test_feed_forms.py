"""Feeds in the forms sites publish: JSON Feed 1.0 and 1.1 beside RSS and Atom; RSS items
whose only URL is a permalink <guid> (and not one whose guid says it is no permalink, nor an
id such as "12345"); Atom entries with several alternates, the HTML one taken.

Every test crawls a real server on 127.0.0.1 and reads the index the crawl wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archiver.errors import DiscoveryError
from archiver.feeds import JSON_FEED_MAX_BYTES, JSON_FEED_MAX_VALUES, parse_feed
from archiver.index import Index

from .rawserver import RawServer, raw
from .test_item_failures import _ok
from .test_sitemap_forms import _asked, _crawl, _stories


def _feed_rows(tmp_path: Path) -> dict:
    with Index.open(tmp_path / "root", readonly=True) as idx:
        return {r.url: r for r in idx.captures(kind="feed")}


def test_json_feeds_are_read(tmp_path: Path):
    routes: dict = {}
    _stories(routes, "/j/1", "/j/2", "/j/5", "/j/6")
    with RawServer(routes) as srv:
        u = srv.url
        v11 = {"version": "https://jsonfeed.org/version/1.1", "title": "Desk", "items": [
            {"id": "1", "url": u("/j/1"), "title": "Vietnam and the US pledge ties",
             "summary": "Talks in Hanoi on Vietnam's trade", "date_published": "2025-06-14T10:00:00Z"},
            {"id": "2", "external_url": u("/j/2"), "content_text": "A link post"},  # no url: external_url
            {"id": "3", "title": "no URL at all"},
            {"id": "4", "url": 12},
            "not an item",
            {"id": "5", "url": "/j/5", "content_html": "<p>Relative <b>url</b></p>"},
        ]}
        v1 = {"version": "https://jsonfeed.org/version/1", "items": [{"id": "6", "url": u("/j/6")}]}
        routes["/feed.json"] = raw(_ok(json.dumps(v11).encode(), "application/feed+json"))
        routes["/v1.json"] = raw(_ok(b"\xef\xbb\xbf" + json.dumps(v1).encode(), "application/json; charset=utf-8"))
        routes["/broken.json"] = raw(_ok(b'{"version": "https://jsonfeed.org/version/1.1", "items": [{"url": ',
                                         "application/feed+json"))
        routes["/api.json"] = raw(_ok(b'{"data": [{"url": "https://e.org/x"}]}', "application/json"))
        flood = b'{"version": "https://jsonfeed.org/version/1.1", "items": [' + b"{}," * JSON_FEED_MAX_VALUES + b"{}]}"
        routes["/flood.json"] = raw(_ok(flood, "application/feed+json"))
        routes["/empty.json"] = raw(_ok(b'{"version": "https://jsonfeed.org/version/1.1", "items": []}',
                                        "application/feed+json"))
        feeds = json.dumps([u(p) for p in ("/feed.json", "/v1.json", "/broken.json", "/api.json", "/flood.json",
                                           "/empty.json")])
        _, archived, stats = _crawl(tmp_path, f"{{name: x, feeds: {feeds}}}")
    assert archived == [u("/j/1"), u("/j/2"), u("/j/5"), u("/j/6")]
    with Index.open(tmp_path / "root", readonly=True) as idx:
        first = next(r for r in idx.captures(kind="article") if r.url == u("/j/1"))
    # the item's title and summary were read: the term was seen there too
    assert first.matched["Vietnam"][:2] == ["feed_title", "feed_summary"], first.matched
    rows = _feed_rows(tmp_path)
    assert rows[u("/feed.json")].error is None and rows[u("/v1.json")].error is None
    assert rows[u("/broken.json")].error.startswith(f"feed {u('/broken.json')} is not valid JSON (")
    assert rows[u("/api.json")].error == (f"feed {u('/api.json')} is JSON but not a JSON Feed (version None, not "
                                          "https://jsonfeed.org/version/1 or /1.1)")
    assert f"over the {JSON_FEED_MAX_VALUES:,} a JSON feed is read with" in rows[u("/flood.json")].error
    assert rows[u("/empty.json")].error == f"feed {u('/empty.json')} lists no entries"
    assert len(stats.errors) == 3, stats.errors  # the empty feed is no problem, only a reason


def test_rss_permalink_guids_and_atom_html_alternates(tmp_path: Path):
    routes: dict = {}
    _stories(routes, "/r/link", "/r/guid", "/r/guid-2", "/a/1", "/a/2", "/a/3", "/a/4")
    with RawServer(routes) as srv:
        u = srv.url
        routes["/rss.xml"] = raw(_ok(f"""<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
<item><title>1</title><link>{u('/r/link')}</link><guid isPermaLink="false">{u('/r/id-1')}</guid></item>
<item><title>2</title><guid>{u('/r/guid')}</guid></item>
<item><title>3</title><guid isPermaLink="false">{u('/r/not-permalink')}</guid></item>
<item><title>4</title><guid isPermaLink="False">{u('/r/not-permalink-2')}</guid></item>
<item><title>5</title><guid>12345</guid></item>
<item><title>6</title><link>javascript:void(0)</link><guid isPermaLink="true">{u('/r/guid-2')}</guid></item>
</channel></rss>""".encode(), "application/rss+xml"))
        routes["/atom.xml"] = raw(_ok(f"""<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom">
<title>t</title>
<entry><title>1</title><id>tag:x,2025:1</id>
  <link rel="alternate" type="application/json" href="/a/1.json"/>
  <link rel="alternate" type="text/html" href="/a/1"/></entry>
<entry><title>2</title><id>tag:x,2025:2</id><link rel="edit" href="/a/2/edit"/><link href="/a/2"/></entry>
<entry><title>3</title><id>tag:x,2025:3</id>
  <link rel="enclosure" type="audio/mpeg" href="/a/3.mp3"/>
  <link rel="alternate" type="audio/mpeg" href="/a/3-audio"/>
  <link rel="alternate" href="/a/3"/></entry>
<entry><title>4</title><id>{u('/a/id-4')}</id>
  <link rel="http://www.iana.org/assignments/relation/alternate" type="text/html" href="/a/4"/></entry>
</feed>""".encode(), "application/atom+xml"))
        feeds = json.dumps([u("/rss.xml"), u("/atom.xml")])
        _, archived, stats = _crawl(tmp_path, f"{{name: x, feeds: {feeds}}}")
        asked = _asked(srv)
    assert archived == sorted(u(p) for p in ("/r/link", "/r/guid", "/r/guid-2", "/a/1", "/a/2", "/a/3", "/a/4"))
    # guids that are no permalink, or no URL, are never asked for; nor are other alternates
    for path in ("/r/id-1", "/r/not-permalink", "/r/not-permalink-2", "/12345", "/a/1.json", "/a/2/edit",
                 "/a/3.mp3", "/a/3-audio", "/a/id-4"):
        assert path not in asked, path
    assert not stats.errors, stats.errors


def test_json_feeds_are_bounded():
    big = b'{"version": "https://jsonfeed.org/version/1.1", "items": [' + b" " * JSON_FEED_MAX_BYTES + b"]}"
    with pytest.raises(DiscoveryError, match=f"over the {JSON_FEED_MAX_BYTES:,} a JSON feed is read up to"):
        parse_feed(big, "https://e.org/feed.json", "application/feed+json")
    deep = b'{"version": "https://jsonfeed.org/version/1.1", "items": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(DiscoveryError, match="nested too deep"):
        parse_feed(deep, "https://e.org/feed.json", "application/feed+json")
    items = [{"id": str(i), "url": f"https://e.org/{i}"} for i in range(300)]
    doc = json.dumps({"version": "https://jsonfeed.org/version/1", "items": items}).encode()
    assert len(parse_feed(doc, "https://e.org/feed.json", "application/json", limit=100).entries) == 100
