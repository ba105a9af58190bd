"""One pass over the sample outlet, checked the way a user would check an archive."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator

from archiver.crawl import run_pass
from archiver.demo.site import DELETED, DISALLOWED, ON_TOPIC, REDIRECTS
from archiver.index import Index

from .conftest import Crawled, invoke


def records(root: Path) -> list[dict]:
    out = []
    for path in sorted((root / "warc").glob("*.warc.gz")):
        with open(path, "rb") as f:
            it = ArchiveIterator(f, check_digests=True)
            for rec in it:
                h = rec.rec_headers
                body = rec.content_stream().read() if rec.rec_type in ("conversion", "metadata") else b""
                if rec.rec_type == "response":
                    rec.content_stream().read()
                out.append({"type": rec.rec_type, "id": h.get_header("WARC-Record-ID"),
                            "uri": h.get_header("WARC-Target-URI"), "file": path.name,
                            "refers_to": h.get_header("WARC-Refers-To"), "body": body,
                            "status": rec.http_headers.get_statuscode() if rec.http_headers else None,
                            "digest_ok": rec.digest_checker.passed})
    return out


def article_rows(c: Crawled):
    with Index.open(c.root, readonly=True) as idx:
        return list(idx.captures(kind="article"))


def test_archived_urls_are_exactly_the_on_topic_articles(crawled: Crawled):
    base = crawled.site.base_url
    archived = {r.final_url for r in article_rows(crawled) if r.state == "archived"}
    assert archived == {base + a.path for a in ON_TOPIC}
    stats = crawled.result.outlets[0]
    assert stats.archived == len(ON_TOPIC)
    assert stats.failed == 1  # the deleted article
    assert stats.robots == 1


def test_every_warc_record_passes_digest_checks_and_no_open_files(crawled: Crawled):
    recs = records(crawled.root)
    assert recs and recs[0]["type"] == "warcinfo"
    assert all(r["digest_ok"] is not False for r in recs)
    assert sum(1 for r in recs if r["digest_ok"] is True) > 20
    assert not list((crawled.root / "warc").glob("*.open"))


def test_every_index_row_points_at_a_response_with_its_url_and_digest(crawled: Crawled):
    with Index.open(crawled.root, readonly=True) as idx:
        rows = [r for r in idx.captures() if r.warc_file]
    assert len(rows) > 15
    for row in rows:
        data = (crawled.root / row.warc_file).read_bytes()
        member = data[row.warc_offset: row.warc_offset + row.warc_length]
        assert gzip.decompress(member).startswith(b"WARC/1.1\r\nWARC-Type: response\r\n")  # exactly one record
        recs = list(ArchiveIterator(io.BytesIO(member)))
        assert len(recs) == 1
        rec = recs[0]
        assert rec.rec_headers.get_header("WARC-Target-URI") == row.final_url
        assert rec.rec_headers.get_header("WARC-Payload-Digest") == row.payload_digest
        assert rec.rec_headers.get_header("WARC-Record-ID") == row.warc_record_id


def test_robots_disallowed_urls_are_never_requested(crawled: Crawled):
    paths = [h.path for h in crawled.site.hits]
    assert "/robots.txt" in paths
    assert not [p for p in paths if p.startswith(DISALLOWED)]
    rows = [r for r in article_rows(crawled) if r.state == "robots"]
    assert [r.url for r in rows] == [crawled.site.base_url + "/private/vietnam-briefing.html"]
    assert "robots" in rows[0].error


def test_requests_to_the_host_are_spaced_by_the_robots_crawl_delay(crawled: Crawled):
    # per_host_delay is 0.05 s in the config; robots.txt says Crawl-delay 0.1, which wins
    times = sorted(h.at for h in crawled.site.hits)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(gaps) > 20 and min(gaps) >= 0.095


def test_discovery_documents_are_archived_and_cited_by_their_candidates(crawled: Crawled):
    by_id = {r["id"]: r for r in records(crawled.root)}
    base = crawled.site.base_url
    with Index.open(crawled.root, readonly=True) as idx:
        docs = {r.url: r for r in idx.captures() if r.kind in ("feed", "sitemap", "page", "search", "robots")}
    for path in ("/rss.xml", "/atom.xml", "/sitemap.xml", "/sitemap-news.xml", "/section/world/", "/robots.txt"):
        row = docs[base + path]
        assert by_id[row.warc_record_id]["uri"] == base + path
    assert any("/search?q=" in u for u in docs)
    for row in article_rows(crawled):
        assert row.discovered_via_url in docs, row.url
        assert by_id[row.discovered_via_record_id]["uri"] == row.discovered_via_url
    # the news sitemap was reached through the sitemap index named in robots.txt
    only_in_sitemap = next(r for r in article_rows(crawled) if r.url.endswith("east-china-sea-fishing.html"))
    assert only_in_sitemap.discovered_via_url == base + "/sitemap-news.xml"


def test_redirect_chain_hops_are_each_archived(crawled: Crawled):
    base = crawled.site.base_url
    row = next(r for r in article_rows(crawled) if r.url == base + "/s/77")
    assert row.final_url == base + REDIRECTS["/story/77"]
    recs = {r["id"]: r for r in records(crawled.root)}
    hops = [recs[i] for i in row.redirect_record_ids]
    assert [(h["uri"], h["status"]) for h in hops] == [(base + "/s/77", "301"), (base + "/story/77", "301")]


def test_deleted_article_is_recorded_as_failed(crawled: Crawled):
    row = next(r for r in article_rows(crawled) if r.url.endswith(DELETED))
    assert row.state == "failed" and row.status == 404 and "404" in row.error and row.warc_file is None


def test_gzip_response_is_stored_as_sent_and_extracted(crawled: Crawled):
    row = next(r for r in article_rows(crawled) if r.url.endswith("blinken-asia-trip.html"))
    with open(crawled.root / row.warc_file, "rb") as f:
        f.seek(row.warc_offset)
        rec = next(iter(ArchiveIterator(f)))
        assert rec.http_headers.get_header("Content-Encoding") == "gzip"
        raw = rec.raw_stream.read()
    assert raw[:2] == b"\x1f\x8b"  # the body as sent, still compressed
    text = (crawled.root / row.text_path).read_text(encoding="utf-8")
    assert text.startswith("Blinken\u2019s Asia trip: five stops, one message\n\n")
    assert "five capitals in eight days" in text


def test_windows_1252_page_decodes(crawled: Crawled):
    row = next(r for r in article_rows(crawled) if r.url.endswith("vietnam-diplomacy-2025.html"))
    text = (crawled.root / row.text_path).read_text(encoding="utf-8")
    assert "\u20ac2 billion" in text and "\u201cencouraging\u201d" in text
    assert row.title == "Vietnam\u2019s diplomacy in 2025: a new position"


def test_near_misses_and_boilerplate_mentions_are_off_topic(crawled: Crawled):
    states = {r.url.rsplit("/", 1)[-1]: r.state for r in article_rows(crawled)}
    # "Vietnamese", "trip to Asia", "East China Sea", and Blinken only in a "Most read" box
    assert states["vietnamese-food-festival.html"] == "off_topic"
    assert states["east-china-sea-fishing.html"] == "off_topic"
    assert states["city-tram-line.html"] == "off_topic"


def test_provenance_records_terms_and_places(crawled: Crawled):
    row = next(r for r in article_rows(crawled) if (r.final_url or "").endswith("blinken-hanoi-visit.html"))
    assert "utm_source" not in row.url  # tracking parameters dropped before fetching
    assert row.topics == ["blinken", "vietnam"]
    assert row.matched["Blinken"] == ["feed_title", "page_title", "body"]
    assert row.byline == "Mai Nguyen" and row.published == "2025-06-14T08:30:00Z" and row.language == "en"
    assert row.extractor == "readability-lxml" and row.extractor_version
    recs = {r["id"]: r for r in records(crawled.root)}
    conv = recs[row.conversion_record_id]
    meta = recs[row.metadata_record_id]
    assert conv["type"] == "conversion" and conv["refers_to"] == row.warc_record_id
    assert conv["body"] == (crawled.root / row.text_path).read_bytes()
    assert meta["type"] == "metadata" and meta["refers_to"] == row.warc_record_id
    fields = meta["body"].decode()
    assert f"via-record-id: {row.discovered_via_record_id}" in fields
    assert "matched: Blinken in feed_title, page_title, body" in fields


def test_page_text_file_is_whole_page_rendering(crawled: Crawled):
    row = next(r for r in article_rows(crawled) if (r.final_url or "").endswith("blinken-hanoi-visit.html"))
    page = (crawled.root / row.page_text_path).read_text(encoding="utf-8")
    assert "  • World" in page and "    • Asia" in page  # nested navigation list
    assert "Most read" in page and "File photo. (Harbor Times)" in page
    assert "http" not in page and page.endswith("\n") and not page.endswith("\n\n")


def test_captures_jsonl_has_documented_fields(crawled: Crawled):
    proc = invoke("captures", "--config", str(crawled.config_path), "--format", "jsonl")
    assert proc.returncode == 0, proc.stderr
    objs = [json.loads(line) for line in proc.stdout.splitlines()]
    fields = {"url", "final_url", "status", "fetched_at", "outlet", "topics", "matched", "discovered_via",
              "warc_file", "warc_offset", "warc_length", "warc_record_id", "payload_digest", "content_type",
              "text_path", "text_sha256", "error"}
    assert objs and all(fields <= set(o) for o in objs)
    art = [o for o in objs if o["kind"] == "article" and o["state"] == "archived"]
    assert len(art) == len(ON_TOPIC)
    assert all(o["warc_file"].startswith("warc/") and o["text_sha256"] for o in art)
    table = invoke("captures", "--config", str(crawled.config_path), "--format", "table")
    assert table.returncode == 0 and "harbor-times" in table.stdout


def test_second_pass_archives_nothing_twice(crawled: Crawled):
    result = asyncio.run(run_pass(crawled.cfg))
    stats = result.outlets[0]
    assert stats.archived == 0 and stats.skipped_known >= len(ON_TOPIC)
    with Index.open(crawled.root, readonly=True) as idx:
        finals = [r.final_url for r in idx.captures(kind="article", state="archived")]
    assert len(finals) == len(set(finals)) == len(ON_TOPIC)
