"""Discovery parsers on the shapes real feeds and sitemaps come in, and on hostile XML."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from archiver.errors import DiscoveryError
from archiver.feeds import parse_feed
from archiver.listings import listing_links
from archiver.sitemaps import parse_sitemap

NEWS = b"""<?xml version="1.0"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"
        xmlns:news="http://www.google.com/schemas/sitemap-news/0.9"
        xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">
 <url><loc>https://e.org/a.html?utm_source=sm</loc>
  <image:image><image:loc>https://cdn.e.org/a.jpg</image:loc><image:title>photo</image:title></image:image>
  <news:news><news:title>Blinken in Hanoi</news:title><news:publication_date>2025-06-14T10:00:00Z</news:publication_date></news:news>
 </url>
 <url><loc>https://e.org/old.html</loc><lastmod>2020-01-01</lastmod></url>
</urlset>"""


def test_news_sitemap_titles_images_and_age_filter():
    r = parse_sitemap(NEWS, "https://e.org/news.xml", max_age_days=30, now=datetime(2025, 6, 15, tzinfo=timezone.utc))
    assert [(c.url, c.title) for c in r.urls] == [("https://e.org/a.html", "Blinken in Hanoi")]
    assert len(parse_sitemap(NEWS, "https://e.org/news.xml").urls) == 2


def test_sitemap_index_children():
    idx = b"<sitemapindex xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'><sitemap><loc>/s1.xml.gz</loc></sitemap></sitemapindex>"
    assert parse_sitemap(idx, "https://e.org/sitemap.xml").sitemaps == ["https://e.org/s1.xml.gz"]


@pytest.mark.parametrize("doc", [
    b'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]><urlset><url><loc>&b;</loc></url></urlset>',
    b'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY x SYSTEM "file:///etc/passwd">]><urlset><url><loc>&x;</loc></url></urlset>',
])
def test_entity_tricks_are_refused(doc: bytes):
    with pytest.raises(DiscoveryError, match="unsafe XML"):
        parse_sitemap(doc, "https://e.org/s.xml")
    with pytest.raises(DiscoveryError, match="entities"):
        parse_feed(doc.replace(b"urlset", b"rss"), "https://e.org/rss")


def test_html_served_as_feed_or_sitemap_is_an_error():
    with pytest.raises(DiscoveryError, match="not a sitemap"):
        parse_sitemap(b"<html><body>hi</body></html>", "https://e.org/s.xml")
    with pytest.raises(DiscoveryError, match="not an RSS or Atom feed"):
        parse_feed(b"<html><body>hi</body></html>", "https://e.org/rss", "text/html")


def test_atom_and_rss_entries_are_canonical():
    atom = (b"<feed xmlns='http://www.w3.org/2005/Atom'><title>t</title><entry><title>Vietnam &amp; US</title>"
            b"<link rel='alternate' href='/x.html#top'/><id>1</id><summary>S</summary></entry></feed>")
    [c] = parse_feed(atom, "https://e.org/atom.xml").entries
    assert (c.url, c.title, c.summary) == ("https://e.org/x.html", "Vietnam & US", "S")


def test_listing_links_keep_headlines_not_navigation():
    page = ("<a href='/section/world/'>World news from everywhere today</a><a href='/2025/06/x.html'>US and Vietnam"
            " pledge to boost ties</a><a href='/2025/06/y.html'>Short</a><a href='/tag/asia/'>Asia tag page with words</a>"
            "<a href='https://elsewhere.org/z.html'>A story on another site entirely</a>")
    assert [c.url for c in listing_links(page, "https://e.org/section/world/")] == ["https://e.org/2025/06/x.html"]


def test_only_http_and_https_links_become_candidates():
    links = ["file:///etc/passwd", "ftp://e.org/a", "javascript:alert(1)", "data:text/html,hi", "gopher://e.org/",
             "https://e.org/ok.html"]
    feed = ("<rss version='2.0'><channel>" + "".join(f"<item><title>t</title><link>{u}</link></item>" for u in links)
            + "</channel></rss>").encode()
    sitemap = ("<urlset>" + "".join(f"<url><loc>{u}</loc></url>" for u in links) + "</urlset>").encode()
    page = "".join(f"<a href='{u}'>A headline with enough words here</a>" for u in links)
    assert [c.url for c in parse_feed(feed, "https://e.org/rss").entries] == ["https://e.org/ok.html"]
    assert [c.url for c in parse_sitemap(sitemap, "https://e.org/s.xml").urls] == ["https://e.org/ok.html"]
    assert [c.url for c in listing_links(page, "https://e.org/section/")] == ["https://e.org/ok.html"]
