"""Discovery documents in the encodings news sites use, and documents built to exhaust memory.

Feeds and sitemaps in Shift_JIS, EUC-JP, GB2312, GBK, Big5, EUC-KR, UTF-7, UTF-16 and UTF-32
(with a BOM and without, the encoding named by the XML declaration or only by the HTTP
charset), served by a real server and crawled: their articles are found and archived, and their
titles come through in the right characters (each title's term, in its own script, is matched
in the feed title). Then one crawl per hostile document: 50 MB of nested <x> in a gzip sitemap,
of <x/> in a feed's channel, of empty <url/>, of <p> in a listing page (each under 100 KB on
the wire), and a UTF-32 feed declaring entities. Each crawl ends normally, its peak RSS within
a bound of a harmless crawl's, with the document's reason on its index row, the entries read
before the trouble archived. Last, the parser functions on the same cases, one at a time.
"""

from __future__ import annotations

import tracemalloc
import zlib
from pathlib import Path

import pytest

from archiver.errors import DiscoveryError
from archiver.extract import MAX_PAGE_BYTES
from archiver.feeds import parse_feed
from archiver.index import Index
from archiver.listings import listing_links
from archiver.sitemaps import parse_sitemap

from .rawserver import RawServer
from .test_hostile_documents import STORY, crawl, ok, write_config

# Measured growth over the harmless crawl: 0-95 MB (the crawl holds a 50 MB document's bytes,
# and a listing page's text as well, before it is parsed); before the parsers let go of what
# they had read and listing pages were capped, 0.7-4.4 GB.
RSS_GROWTH_LIMIT_MB = 150

# (name, codec of the bytes, label in the XML declaration, HTTP charset, a term in that script)
ENCODED = [
    ("sjis", "shift_jis", "Shift_JIS", None, "東京"),
    ("eucjp", "euc_jp", "EUC-JP", None, "大阪"),
    ("gb2312", "gb2312", "GB2312", None, "北京"),
    ("gbk", "gbk", "GBK", None, "深圳"),
    ("big5", "big5", "Big5", None, "臺北"),
    ("euckr", "euc_kr", "EUC-KR", None, "서울"),
    ("utf7", "utf-7", "UTF-7", None, "Москва"),
    ("utf16-bom", "utf-16", "UTF-16", None, "ירושלים"),
    ("utf16be", "utf-16-be", "UTF-16", None, "Αθήνα"),
    ("utf32-bom", "utf-32", "UTF-32", None, "Київ"),
    ("utf32le", "utf-32-le", "UTF-32", None, "香港"),
    ("sjis-header", "shift_jis", None, "Shift_JIS", "横浜"),
]


def _decl(label: str | None) -> str:
    return f'<?xml version="1.0" encoding="{label}"?>' if label else '<?xml version="1.0"?>'


def feed_doc(codec: str, label: str | None, title: str, link: str) -> bytes:
    return (f"{_decl(label)}<rss version='2.0'><channel><title>{title}</title><item><title>{title}</title>"
            f"<link>{link}</link><description>{title}</description></item></channel></rss>").encode(codec)


def sitemap_doc(codec: str, label: str | None, title: str, loc: str) -> bytes:
    return (f"{_decl(label)}<urlset xmlns='http://www.sitemaps.org/schemas/sitemap/0.9' "
            "xmlns:news='http://www.google.com/schemas/sitemap-news/0.9'><url>"
            f"<loc>{loc}</loc><news:news><news:title>{title}</news:title></news:news></url></urlset>").encode(codec)


def story(term: str) -> object:
    return ok(f"<html><head><meta charset='utf-8'><title>Story</title></head><body><article><p>{term} and "
              "Antony Blinken: officials met on Saturday for talks about trade and security with their "
              "visitors.</p></article></body></html>".encode("utf-8"), "text/html; charset=utf-8")


def _sources(charset: str | None) -> tuple[str, ...]:
    # the crawl hands parse_sitemap no HTTP charset (the sitemap protocol says UTF-8), so a
    # sitemap whose encoding only its header names is not among them
    return ("feed",) if charset else ("feed", "sitemap")


def test_feeds_and_sitemaps_in_every_encoding_are_crawled(tmp_path: Path):
    with RawServer({"/robots.txt": ok(b"", "text/plain")}) as server:
        outlets = ""
        for name, codec, label, charset, term in ENCODED:
            ctype = "application/xml" + (f"; charset={charset}" if charset else "")
            for source in _sources(charset):
                make = feed_doc if source == "feed" else sitemap_doc
                article = server.url(f"/a/{name}-{source}.html")
                server.routes[f"/{source}-{name}.xml"] = ok(make(codec, label, f"{term} talks", article), ctype)
                server.routes[f"/a/{name}-{source}.html"] = story(term)
            docs = ", ".join(f'{s}s: ["{server.url(f"/{s}-{name}.xml")}"]' for s in _sources(charset))
            outlets += f"\n  - {{name: {name}, {docs}}}"
        terms = ", ".join(f'"{t}"' for *_, t in ENCODED)
        config = tmp_path / "config.yaml"
        config.write_text(f"""
storage: {{root: {tmp_path / "archive"}}}
fetch: {{allow_private_networks: true, per_host_delay: 0, timeout: 5}}
discover: {{max_age_days: null}}
topics: [{{name: places, any: [{terms}]}}]
outlets:{outlets}
""", encoding="utf-8")
        status, _, err = crawl(config)
        assert status == 0, err[-3000:]

    with Index.open(tmp_path / "archive", readonly=True) as idx:
        rows = {r.url.split("/", 3)[3]: r for r in idx.captures()}
    for name, _, _, charset, term in ENCODED:
        for source in _sources(charset):
            doc = rows[f"{source}-{name}.xml"]
            assert doc.state == "archived" and doc.error is None, (name, source, doc.error)
            article = rows.get(f"a/{name}-{source}.html")
            assert article is not None, f"{name}: the {source}'s article was not found"
            assert article.state == "archived", (name, source, article.state, article.error)
            # the term matched in the feed's or sitemap's title: it was decoded right
            assert "feed_title" in article.matched.get(term, []), (name, source, article.matched)


def gzipped(head: bytes, unit: bytes, total: int) -> bytes:
    """`head` then `unit` repeated to `total` bytes, gzip-compressed without holding it whole."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [z.compress(head)]
    block = unit * ((1 << 20) // len(unit))
    size = len(head)
    while size < total:
        piece = block[: total - size]
        out.append(z.compress(piece))
        size += len(piece)
    out.append(z.flush())
    return b"".join(out)


MB50 = 49_000_000  # under fetch.max_decoded_bytes (50 MB), so the whole document is there to parse
URLSET = b"<?xml version='1.0'?><urlset xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'>"


def hostile_routes(base: str) -> dict[str, object]:
    item = f"<item><title>Blinken</title><link>{base}/story-x-flood.html</link></item>".encode()
    # feedparser's lenient parser expands an entity declared on a line of its own: 400 million
    # characters from 280 KB
    utf32 = (f'<?xml version="1.0" encoding="UTF-32"?>\n<!DOCTYPE rss [\n<!ENTITY a "{"B" * 40_000}">\n]>\n'
             f'<rss version="2.0"><channel><item><title>Blinken</title><description>{"&a;" * 10_000}</description>'
             f"<link>{base}/story-utf32.html</link></item></channel></rss>").encode("utf-32")
    gz = b"Content-Encoding: gzip\r\n"
    return {
        "/robots.txt": ok(b"", "text/plain"),
        "/calm.xml": ok(f"<rss version='2.0'><channel><item><title>Blinken</title><link>{base}/story-calm.html"
                        "</link></item></channel></rss>".encode(), "application/rss+xml"),
        "/nested-x.xml.gz": ok(gzipped(URLSET + f"<url><loc>{base}/story-nested-x.html</loc></url>".encode(),
                                       b"<x>", MB50), "application/gzip"),
        "/x-flood.xml": ok(gzipped(b"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title>" + item,
                                   b"<x/>", MB50), "application/rss+xml", gz),
        "/empty-url.xml.gz": ok(gzipped(URLSET + f"<url><loc>{base}/story-empty-url.html</loc></url>".encode(),
                                        b"<url/>", MB50), "application/gzip"),
        "/p-listing.html": ok(gzipped(f"<html><body><a href='{base}/story-p-listing.html'>Blinken arrives in "
                                      "Hanoi for talks</a>".encode(), b"<p>", MB50), "text/html", gz),
        "/utf32-entities.xml": ok(utf32, "application/rss+xml"),
        **{f"/story-{n}.html": STORY for n in ("calm", "nested-x", "x-flood", "empty-url", "p-listing", "utf32")},
    }


# document -> (what the outlet lists it as, its path, the reason its row must give, whether the
# article it names before the trouble is archived)
HOSTILE = {
    "nested-x": ("sitemaps", "/nested-x.xml.gz", "nested more than 256 deep", True),
    "x-flood": ("feeds", "/x-flood.xml", "more than 1,000,000 elements", True),
    "empty-url": ("sitemaps", "/empty-url.xml.gz", "more than 1,000,000 elements", True),
    "p-listing": ("pages", "/p-listing.html", None, True),  # the crawl notes nothing on a listing's row
    "utf32": ("feeds", "/utf32-entities.xml", "declares XML entities", False),
}


@pytest.fixture(scope="module")
def hostile_server():
    with RawServer({}) as server:
        server.routes.update(hostile_routes(server.url("")))
        yield server


@pytest.fixture(scope="module")
def calm_rss(hostile_server, tmp_path_factory) -> int:
    tmp = tmp_path_factory.mktemp("calm")
    config = write_config(tmp / "calm.yaml", tmp / "archive", f"""
  - {{name: calm, feeds: ["{hostile_server.url('/calm.xml')}"]}}""")
    status, peak, err = crawl(config)
    assert status == 0, err[-3000:]
    print(f"\nharmless crawl: peak RSS {peak} MB")
    return peak


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_document_costs_bounded_memory_and_names_its_reason(name, hostile_server, calm_rss, tmp_path):
    listed_as, path, reason, archived = HOSTILE[name]
    config = write_config(tmp_path / "config.yaml", tmp_path / "archive", f"""
  - {{name: docs, {listed_as}: ["{hostile_server.url(path)}"]}}""")
    status, peak, err = crawl(config)
    print(f"\n{name}: peak RSS {peak} MB (harmless crawl {calm_rss} MB)")
    assert status == 0, err[-3000:]

    with Index.open(tmp_path / "archive", readonly=True) as idx:
        rows = {r.url.removeprefix(hostile_server.url("")): r for r in idx.captures()}
    doc = rows[path]
    assert doc.state == "archived"  # the document itself is kept, whatever it does to a parser
    if reason is not None:
        assert reason in (doc.error or ""), doc.error
    article = rows.get(f"/story-{name}.html")
    if archived:  # what was read before the trouble is used
        assert article is not None and article.state == "archived", article
    else:
        assert article is None
    assert peak - calm_rss < RSS_GROWTH_LIMIT_MB, f"{name}: {peak} MB against {calm_rss} MB"


# ---------------------------------------------------------------- the parser functions

@pytest.mark.parametrize("name,codec,label,charset,term", ENCODED)
def test_parsers_read_each_encoding(name, codec, label, charset, term):
    ctype = "application/xml" + (f"; charset={charset}" if charset else "")
    feed = parse_feed(feed_doc(codec, label, f"{term} talks", "/a.html"), "https://e.org/feed", ctype)
    assert [(c.url, c.title, c.summary) for c in feed.entries] == [("https://e.org/a.html", f"{term} talks",
                                                                    f"{term} talks")]
    assert feed.problem is None
    sm = parse_sitemap(sitemap_doc(codec, label, f"{term} talks", "https://e.org/b.html"), "https://e.org/sm.xml",
                       content_type=ctype)
    assert [(c.url, c.title) for c in sm.urls] == [("https://e.org/b.html", f"{term} talks")]


def test_declaration_is_read_before_a_server_default_charset_that_contradicts_it():
    body = feed_doc("shift_jis", "Shift_JIS", "東京 talks", "/a.html")
    for ctype in ("text/xml; charset=utf-8", "application/rss+xml; charset=ISO-8859-1"):
        assert [c.title for c in parse_feed(body, "https://e.org/feed", ctype).entries] == ["東京 talks"], ctype
    # and a declaration the bytes contradict gives way to the header that reads them
    body = feed_doc("utf-8", "Shift_JIS", "Zürich – talks", "/a.html")
    assert [c.title for c in parse_feed(body, "https://e.org/feed", "text/xml; charset=utf-8").entries] == \
        ["Zürich – talks"]


def test_a_broken_feed_in_a_multibyte_encoding_is_read_leniently_in_its_characters():
    body = ('<?xml version="1.0" encoding="Shift_JIS"?><rss version="2.0"><channel><item><title>東京 talks</title>'
            '<description>東京<br>大阪</description><link>https://e.org/a.html</link></item></channel></rss>'
            ).encode("shift_jis")
    r = parse_feed(body, "https://e.org/feed")
    assert [c.title for c in r.entries] == ["東京 talks"] and "read leniently" in (r.problem or "")


def test_a_parser_failure_on_one_document_is_that_documents_discovery_error():
    # broken, so read leniently, and its link holds a lone surrogate no URL can be made of
    body = (b"<rss version='2.0'><channel><item><title>Blinken & co</title><link>https://e.org/a&#xD800;b.html"
            b"</link></item></channel></rss>")
    with pytest.raises(DiscoveryError, match=r"feed https://e.org/feed could not be parsed: UnicodeEncodeError"):
        parse_feed(body, "https://e.org/feed")


ENTITY_FEED = ('<?xml version="1.0" encoding="{}"?><!DOCTYPE rss [<!ENTITY a "Blinken">]><rss version="2.0">'
               "<channel><item><title>&a;</title><link>https://e.org/a.html</link></item></channel></rss>")


def _encoded(doc: str, codec: str) -> bytes:
    # UTF-7 may spell "<!" as "+ADwAIQ-": the bytes never say <!ENTITY, only the text does
    body = doc.encode(codec)
    return body.replace(b"<!ENTITY", b"+ADwAIQ-ENTITY") if codec == "utf-7" else body


@pytest.mark.parametrize("codec", ["utf-32", "utf-32-le", "utf-7"])
def test_entity_declarations_are_refused_in_any_encoding(codec):
    doc = ENTITY_FEED.format(codec.removesuffix("-le").upper())
    with pytest.raises(DiscoveryError, match="entities"):
        parse_feed(_encoded(doc, codec), "https://e.org/feed")
    # broken as well, so only the lenient parser would read it: refused all the same
    with pytest.raises(DiscoveryError, match="entities"):
        parse_feed(_encoded(doc.replace("</title>", "</titel>"), codec), "https://e.org/feed")


ITEM = "<item><title>Blinken</title><link>https://e.org/a.html</link></item>"


def test_deep_nesting_stops_with_what_was_read():
    deep = "<x>" * 300 + "</x>" * 300
    r = parse_feed(f"<rss><channel>{ITEM}{deep}</channel></rss>".encode(), "https://e.org/feed")
    assert [c.url for c in r.entries] == ["https://e.org/a.html"] and "nested more than 256 deep" in r.problem
    with pytest.raises(DiscoveryError, match="nested more than 256 deep"):
        parse_feed(f"<rss><channel>{deep}{ITEM}</channel></rss>".encode(), "https://e.org/feed")
    sm = parse_sitemap(f"<urlset><url><loc>https://e.org/a.html</loc></url>{deep}</urlset>".encode(), "https://e.org/s")
    assert [c.url for c in sm.urls] == ["https://e.org/a.html"] and "nested more than 256 deep" in sm.problem
    # 255 levels inside the root is within the cap
    ok_deep = "<x>" * 255 + "</x>" * 255
    assert parse_feed(f"<rss><channel>{ITEM}</channel>{ok_deep}</rss>".encode(), "https://e.org/feed").problem is None


def test_element_count_stops_with_what_was_read():
    r = parse_feed(f"<rss><channel>{ITEM}{'<x/>' * 2000}</channel></rss>".encode(), "https://e.org/feed",
                   max_elements=1000)
    assert len(r.entries) == 1 and "more than 1,000 elements" in r.problem
    sm = parse_sitemap(f"<urlset><url><loc>https://e.org/a.html</loc></url>{'<url/>' * 2000}</urlset>".encode(),
                       "https://e.org/s", max_elements=1000)
    assert len(sm.urls) == 1 and "more than 1,000 elements" in sm.problem


def _peak_kb(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] // 1024
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("doc", [
    f"<rss><channel>{ITEM}{'<x/>' * 100_000}</channel></rss>",
    f"<rss><channel><item><title>Blinken</title><link>https://e.org/a.html</link><description>"
    f"{'<x/>' * 100_000}</description></item></channel></rss>",
    f"<urlset><url><loc>https://e.org/a.html</loc></url>{'<url/>' * 100_000}</urlset>",
    f"<urlset><url><loc>https://e.org/a.html</loc></url>{'<x><y/></x>' * 50_000}</urlset>",
])
def test_what_the_parsers_have_read_is_let_go(doc: str):
    """100,000 elements held would be ~8 MB; read and dropped, a few hundred KB."""
    body = doc.encode()
    parse = parse_sitemap if doc.startswith("<urlset") else parse_feed
    assert _peak_kb(lambda: parse(body, "https://e.org/doc")) < 3000


def test_listing_page_is_read_up_to_the_article_cap():
    link = "<a href='/2025/{0}.html'>Blinken arrives in Hanoi for talks {0}</a>"
    page = f"<p>{link.format('first')}</p><p>{'x' * MAX_PAGE_BYTES}</p>{link.format('beyond')}"
    assert [c.url for c in listing_links(page, "https://e.org/section/")] == ["https://e.org/2025/first.html"]
    page = link.format("first") + "<p>" * 50_000 + link.format("second") + "<p>" * 50_000 + link.format("beyond")
    assert [c.url for c in listing_links(page, "https://e.org/section/", max_bytes=200_000)] == \
        ["https://e.org/2025/first.html", "https://e.org/2025/second.html"]
    # anchors keep their text, markup inside them included, while everything else is dropped;
    # an <a> left open holds what follows, other anchors included, as in the whole tree
    page = ("<div><p>x</p></div>" * 1000 + "<a href='/2025/x.html'>US <b>and</b> Vietnam <i>pledge</i></a>"
            "<a href='/2025/open.html'>Left open <!-- not text --><p><a href='/2025/y.html'>Blinken lands in "
            "Hanoi today</a> ends</p>")
    assert sorted((c.url, c.title) for c in listing_links(page, "https://e.org/section/")) == [
        ("https://e.org/2025/open.html", "Left open Blinken lands in Hanoi today ends"),
        ("https://e.org/2025/x.html", "US and Vietnam pledge"),
        ("https://e.org/2025/y.html", "Blinken lands in Hanoi today")]
