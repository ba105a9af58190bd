"""Citing a capture exactly: permalinks, the citation block, downloads of a capture's WARC
records and texts, word diffs, versions grouped in search, matched terms marked, and
publication dates (shown, exported, filtered by, charted).

A local outlet on 127.0.0.1 is crawled twice (refetch at once): between the passes one word
of one article changes, so it has two versions; the other articles come back unchanged
(revisit records). The UI runs in-process (Starlette's TestClient), on the UI's port and
on the replay port as `archiver serve` routes them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import lxml.html
import pytest
from starlette.testclient import TestClient
from warcio.archiveiterator import ArchiveIterator

from archiver.clock import parse_iso
from archiver.config import load_config
from archiver.crawl import run_pass
from archiver.index import CaptureRow, Index
from archiver.pubdate import published_at, published_day
from archiver.web.app import create_app
from archiver.web.diffs import ADDED, CHANGED, KEEP, REMOVED, diff_texts
from archiver.web.permalink import permalink_ts, resolve
from archiver.web.timeline import timeline

from .conftest import invoke
from .localoutlet import outlet_config
from .rawserver import RawServer, raw
from .test_browse import chromium, start_serve, stop
from .test_item_failures import _feed, _ok

UI, REPLAY = "http://127.0.0.1:8770", "http://127.0.0.1:8772"  # create_app's default ports
PATROLS, SUMMIT, UNDATED = "/2025/06/10/patrols.html", "/2025/06/14/summit.html", "/notes/undated.html"
BEFORE = "Officials met in Manila on Tuesday to review the joint Vietnam patrols, a year after they began."
AFTER = "Officials met in Cebu on Tuesday to review the joint Vietnam patrols, a year after they began."
# text that looks like markup: it must stay text, with the term inside it marked
HOSTILE = "The memo was headed <b>Vietnam</b> & <script>alert(1)</script> in the original."


def article(title: str, published: str | None, first: str) -> bytes:
    meta = f"<meta property='article:published_time' content='{published}'>" if published else ""
    paras = [first, "Both sides said the patrols around Vietnam would continue through the coming season.",
             "Diplomats in the region described the talks as frank and useful for every party involved.",
             HOSTILE.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")]
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>{meta}</head>"
            f"<body><article><h1>{title}</h1>{''.join(f'<p>{p}</p>' for p in paras)}</article></body></html>"
            ).encode()


@dataclass
class Archive:
    root: Path
    config: Path
    rows: dict[str, list[CaptureRow]]  # article path -> its captures, in id order


@pytest.fixture(scope="module")
def archived(tmp_path_factory) -> Archive:
    tmp = tmp_path_factory.mktemp("citation")
    routes = {"/robots.txt": raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
              PATROLS: raw(_ok(article("Vietnam patrols reviewed in Manila", "2025-06-10T09:15:00Z", BEFORE))),
              # an RFC 2822 date, as some sites state it
              SUMMIT: raw(_ok(article("Vietnam summit opens", "Sat, 14 Jun 2025 09:00:00 GMT",
                                      "The summit on Vietnam opened on Saturday with talks on trade and fishing."))),
              UNDATED: raw(_ok(article("Vietnam notes", None,
                                       "Notes from the Vietnam desk, kept without any date on the page.")))}
    with RawServer(routes) as srv:
        routes["/feed.xml"] = raw(_ok(_feed([srv.url(p) for p in (PATROLS, SUMMIT, UNDATED)]), "application/rss+xml"))
        config = outlet_config(tmp / "c.yaml", tmp / "root", [srv.url("/feed.xml")], extra="refetch: {after: [0s]}\n")
        cfg = load_config(config)
        asyncio.run(run_pass(cfg))
        routes[PATROLS] = raw(_ok(article("Vietnam patrols reviewed in Manila", "2025-06-10T09:15:00Z", AFTER)))
        asyncio.run(run_pass(cfg))
    rows: dict[str, list[CaptureRow]] = {}
    with Index.open(tmp / "root", readonly=True) as idx:
        for r in idx.captures(kind="article"):
            rows.setdefault("/" + r.url.split("/", 3)[3], []).append(r)
    assert [r.state for r in rows[PATROLS]] == ["archived", "archived"], rows[PATROLS]
    assert [r.state for r in rows[SUMMIT]] == ["archived", "unchanged"], rows[SUMMIT]
    return Archive(tmp / "root", config, rows)


@pytest.fixture(scope="module")
def ui(archived):
    with TestClient(create_app(archived.root), base_url=UI) as client:
        yield client


def section(body: str, id_: str) -> lxml.html.HtmlElement:
    (el,) = lxml.html.document_fromstring(body).xpath(f"//*[@id='{id_}']")
    return el


def ts14(row: CaptureRow) -> str:
    return "".join(ch for ch in row.fetched_at if ch.isdigit())[:14]


def perma_ts(row: CaptureRow, others: list[CaptureRow]) -> str:
    """A capture's permalink timestamp: to the second, or to the microsecond when another
    capture of its URL was made in the same second (two passes a moment apart can do that)."""
    if any(o.id != row.id and ts14(o) == ts14(row) for o in others):
        return "".join(ch for ch in row.fetched_at if ch.isdigit())
    return ts14(row)


def test_the_permalink_is_the_capture_page_and_replay_stays_on_its_origin(archived: Archive, ui: TestClient):
    old, new = archived.rows[PATROLS]
    for path, row in ((PATROLS, old), (PATROLS, new), (SUMMIT, archived.rows[SUMMIT][1])):  # a revisit too
        body = ui.get(f"/capture/{row.id}").text
        link = section(body, "permalink").get("href")
        assert link == f"/web/{perma_ts(row, archived.rows[path])}/{row.final_url}"
        page = ui.get(link, follow_redirects=False)
        assert page.status_code == 200, page.text
        assert section(page.text, "cite-warc-record-id").text_content() == row.warc_record_id
        assert section(page.text, "permalink").get("href") == link
        # the UI's page holds none of the archived bytes; the replay origin serves them
        assert "<article>" not in page.text and f'href="/replay/{row.id}"' in page.text
    # another time leads to the nearest capture's own permalink, as does the start of a year
    # (to the first capture in it)
    soon = (parse_iso(new.fetched_at) + timedelta(minutes=10)).strftime("%Y%m%d%H%M%S")
    later = ui.get(f"/web/{soon}/{new.final_url}", follow_redirects=False)
    new_ts, old_ts = perma_ts(new, [old]), perma_ts(old, [new])
    assert later.status_code == 302 and later.headers["location"] == f"/web/{new_ts}/{new.final_url}"
    year = ui.get(f"/web/{ts14(old)[:4]}/{new.final_url}")
    assert year.status_code == 200 and year.url.path == f"/web/{old_ts}/{old.final_url}"
    assert ui.get(f"/web/2025/{old.final_url}?x=1", follow_redirects=False).status_code == 404
    with TestClient(create_app(archived.root), base_url=REPLAY) as replay:
        framed = replay.get(f"/web/{new_ts}/{new.final_url}", headers={"Sec-Fetch-Dest": "iframe"})
        assert framed.status_code == 200 and "Cebu" in framed.text and "sandbox" in framed.headers["content-security-policy"]
        opened = replay.get(f"/web/{new_ts}/{new.final_url}", headers={"Sec-Fetch-Dest": "document"},
                            follow_redirects=False)
        assert opened.status_code == 303 and opened.headers["location"] == f"{UI}/web/{new_ts}/{new.final_url}"


def test_the_citation_names_the_record_digest_and_the_text_sha256(archived: Archive, ui: TestClient):
    row = archived.rows[PATROLS][1]
    permalink = f"{UI}/web/{perma_ts(row, archived.rows[PATROLS])}/{row.final_url}"
    page = ui.get(f"/capture/{row.id}")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    body = page.text
    text_file = (archived.root / row.text_path).read_bytes()
    assert section(body, "cite-warc-record-id").text_content() == row.warc_record_id
    assert section(body, "cite-warc-payload-digest").text_content() == row.payload_digest
    assert section(body, "cite-article-text-sha-256").text_content() == row.text_sha256 == \
        hashlib.sha256(text_file).hexdigest()
    assert section(body, "cite-published").text_content() == "2025-06-10T09:15:00Z"
    assert section(body, "cite-archived-at").text_content() == row.fetched_at
    assert section(body, "cite-permalink").text_content() == permalink
    cite = section(body, "citation-text").text_content()
    for part in (row.warc_record_id, row.payload_digest, row.text_sha256, "Vietnam patrols reviewed in Manila",
                 permalink):
        assert part in cite
    assert "citation-check" not in body  # the text file is what was recorded
    # copy buttons, and the one script of the UI's own that runs them
    doc = lxml.html.document_fromstring(body)
    assert doc.xpath("//button[@data-copy='citation-text']") and doc.xpath("//button[@data-copy='permalink']")
    assert [s.get("src") for s in doc.iter("script")] == ["/static/copy.js"]
    script = ui.get("/static/copy.js")
    assert script.status_code == 200 and "clipboard" in script.text
    # the publication date stated as RFC 2822 is also given in ISO 8601
    summit = ui.get(f"/capture/{archived.rows[SUMMIT][0].id}").text
    assert section(summit, "cite-published-iso-8601").text_content() == "2025-06-14T09:00:00Z"
    # the texts download byte for byte
    got = ui.get(f"/capture/{row.id}/article.txt")
    assert got.status_code == 200 and got.content == text_file
    assert got.headers["content-disposition"] == f'attachment; filename="capture-{row.id}-article.txt"'
    assert ui.get(f"/capture/{row.id}/page.txt").content == (archived.root / row.page_text_path).read_bytes()


def _members(path: Path) -> dict[str, tuple[str, bytes]]:
    """record id -> (type, the record's gzip member as it is in the file)."""
    data = path.read_bytes()
    out = {}
    it = ArchiveIterator(io.BytesIO(data))
    for rec in it:
        rid, rtype = rec.rec_headers.get_header("WARC-Record-ID"), rec.rec_type
        it.read_to_end()
        out[rid] = (rtype, data[it.get_record_offset():it.get_record_offset() + it.get_record_length()])
    return out


def test_the_warc_download_holds_exactly_the_captures_records_byte_for_byte(archived: Archive, ui: TestClient):
    row = archived.rows[PATROLS][1]
    got = ui.get(f"/capture/{row.id}/records.warc.gz")
    assert got.status_code == 200 and got.headers["content-disposition"] == \
        f'attachment; filename="capture-{row.id}.warc.gz"'
    original = _members(archived.root / row.warc_file)
    records = []
    it = ArchiveIterator(io.BytesIO(got.content))
    for rec in it:
        rid = rec.rec_headers.get_header("WARC-Record-ID")
        payload = rec.content_stream().read()
        it.read_to_end()
        member = got.content[it.get_record_offset():it.get_record_offset() + it.get_record_length()]
        records.append((rec.rec_type, rid, rec.rec_headers.get_header("WARC-Payload-Digest"), payload, member))
    assert [(t, i) for t, i, *_ in records] == [
        ("response", row.warc_record_id), ("request", row.request_record_id),
        ("conversion", row.conversion_record_id), ("metadata", row.metadata_record_id)]
    for rtype, rid, _, _, member in records:
        assert original[rid] == (rtype, member), rid  # the same gzip member, byte for byte
    assert b"".join(r[4] for r in records) == got.content  # and nothing else
    _, _, digest, payload, _ = records[0]
    assert digest == row.payload_digest == "sha1:" + base64.b32encode(hashlib.sha1(payload).digest()).decode()
    assert b"Cebu" in payload
    # the conversion record is the article text the citation's SHA-256 is of
    assert hashlib.sha256(records[2][3]).hexdigest() == row.text_sha256
    # a revisit comes with the response it refers to, so its payload can be checked
    first, revisit = archived.rows[SUMMIT]
    got = ui.get(f"/capture/{revisit.id}/records.warc.gz")
    types = [(r.rec_type, r.rec_headers.get_header("WARC-Record-ID")) for r in ArchiveIterator(io.BytesIO(got.content))]
    assert types == [("response", first.warc_record_id), ("revisit", revisit.warc_record_id),
                     ("request", revisit.request_record_id)]


def test_a_word_diff_marks_exactly_the_changed_words(archived: Archive, ui: TestClient):
    old, new = archived.rows[PATROLS]
    body = ui.get(f"/capture/{new.id}?diff={old.id}").text
    diff = lxml.html.tostring(section(body, "diff"), encoding="unicode")
    assert re.findall(r"<(ins|del)>(.*?)</\1>", diff) == [("del", "Manila"), ("ins", "Cebu")]
    assert "Officials met in <del>Manila</del><ins>Cebu</ins> on Tuesday" in diff
    # the same from the older capture's page: still from older to newer
    body = ui.get(f"/capture/{old.id}?diff={new.id}").text
    assert re.findall(r"<(ins|del)>(.*?)</\1>", lxml.html.tostring(section(body, "diff"), encoding="unicode")) == \
        [("del", "Manila"), ("ins", "Cebu")]


def test_word_runs_within_changed_lines():
    d = diff_texts("Title\n\nThe patrols began a year ago, officials said.\n\nNothing else changed.\n",
                   "Title\n\nThe joint patrols began two years ago, officials said on Monday.\n\nNothing else changed.\n")
    (changed,) = [r for r in d.rows if r[0] == CHANGED]
    assert changed[2] == [(KEEP, "The "), (ADDED, "joint"), (KEEP, " patrols began "), (REMOVED, "a year"),
                          (ADDED, "two years"), (KEEP, " ago, officials said "), (ADDED, "on Monday"), (KEEP, ".")]
    # the line diff beneath stays whole lines
    assert [tag for tag, _ in d.lines] == [KEEP, KEEP, REMOVED, ADDED, KEEP, KEEP]


def test_versions_of_one_url_are_one_hit_newest_first(archived: Archive, ui: TestClient):
    old, new = archived.rows[PATROLS]
    r = ui.get("/api/search", params={"q": "patrols"}).json()
    (hit,) = [h for h in r["results"] if h["url"].endswith(PATROLS)]
    assert hit["capture_id"] == new.id
    assert hit["versions"] == [{"capture_id": new.id, "fetched_at": new.fetched_at},
                               {"capture_id": old.id, "fetched_at": old.fetched_at}]
    assert r["total"] == len(r["results"]) == 3  # three articles, four archived captures
    page = ui.get("/search", params={"q": "patrols"}).text
    (li,) = [li for li in lxml.html.document_fromstring(page).xpath("//li[@class='hit']")
             if li.xpath(".//a[@class='title']/@href") == [f"/capture/{new.id}"]]
    assert "2 versions" in li.text_content()
    assert li.xpath(".//details[@class='versions']//a/@href") == [f"/capture/{new.id}", f"/capture/{old.id}"]
    # words only the older version has find that version, alone
    r = ui.get("/api/search", params={"q": '"Manila on Tuesday"'}).json()
    assert [h["versions"] for h in r["results"]] == [[{"capture_id": old.id, "fetched_at": old.fetched_at}]]


def test_search_filters_by_publication_date(archived: Archive, ui: TestClient):
    def found(**params: str) -> set[str]:
        r = ui.get("/api/search", params=params)
        assert r.status_code == 200, r.text
        return {"/" + h["url"].split("/", 3)[3] for h in r.json()["results"]}

    assert found() == {PATROLS, SUMMIT, UNDATED}
    assert found(published_from="2025-06-12") == {SUMMIT}
    assert found(published_to="2025-06-11") == {PATROLS}
    assert found(published_from="2025-06-10", published_to="2025-06-14", q="Vietnam") == {PATROLS, SUMMIT}
    assert found(published_from="2025-06-15") == set()
    r = ui.get("/api/search", params={"published_from": "2025-06-14"}).json()
    assert [h["published_at"] for h in r["results"]] == ["2025-06-14T09:00:00Z"]
    bad = ui.get("/api/search", params={"published_to": "14/06/2025"})
    assert bad.status_code == 400 and "published_to '14/06/2025' is not a date" in bad.json()["error"]
    page = ui.get("/search", params={"published_from": "2025-06-12"}).text
    assert 'name="published_from" value="2025-06-12"' in page and "Vietnam summit opens" in page
    assert "Vietnam notes" not in page


def test_matched_terms_are_marked_in_the_escaped_article_text(archived: Archive, ui: TestClient):
    row = archived.rows[PATROLS][1]
    assert row.matched == {"Vietnam": ["page_title", "body"]}
    body = ui.get(f"/capture/{row.id}").text
    text = body.split('<pre class="text" id="article-text">', 1)[1].split("</pre>", 1)[0]
    assert "&lt;b&gt;<mark>Vietnam</mark>&lt;/b&gt; &amp; &lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert text.count("<mark>") == text.count("Vietnam") == 4  # title and three paragraphs
    assert "<script>alert" not in body and re.sub(r"</?mark>", "", text).count("<") == 0


def test_publication_dates_in_captures_jsonl_home_and_topic_timeline(archived: Archive, ui: TestClient):
    res = invoke("captures", "--config", str(archived.config), "--format", "jsonl", "--kind", "article",
                 "--state", "archived")
    assert res.returncode == 0, res.stderr
    by_url = {}
    for line in res.stdout.splitlines():
        o = json.loads(line)
        by_url.setdefault("/" + o["url"].split("/", 3)[3], set()).add(o["published_at"])
    assert by_url == {PATROLS: {"2025-06-10T09:15:00Z"}, SUMMIT: {"2025-06-14T09:00:00Z"}, UNDATED: {None}}

    def counts(body: str) -> tuple[dict[str, int], int]:
        chart = lxml.html.tostring(section(body, "timeline") if 'id="timeline"' in body else
                                   lxml.html.document_fromstring(body).xpath("//svg[@class='chart']")[0],
                                   encoding="unicode")
        published = {day: int(n) for day, n in re.findall(r"<title>(\S+): (\d+) published</title>", chart)}
        captured = sum(int(n) for n in re.findall(r"<title>\S+: (\d+) captures</title>", chart))
        return published, captured

    # two dated articles (the revised one counted once), four archived captures
    for path in ("/", "/topics/vietnam"):
        page = ui.get(path)
        assert page.status_code == 200
        published, captured = counts(page.text)
        assert sum(published.values()) == 2 and captured == 4, (path, published, captured)
        assert all(day.startswith("2025") for day in published)
    assert ui.get("/topics/no-such-topic").status_code == 404


def test_a_permalink_names_one_capture_even_within_one_second():
    def cap(i: int, at: str) -> CaptureRow:
        return CaptureRow(outlet="o", kind="article", state="archived", url="http://o.test/a", fetched_at=at, id=i)

    a, b = cap(1, "2025-06-14T08:30:00.100000Z"), cap(2, "2025-06-14T08:30:00.900000Z")
    c = cap(3, "2025-06-14T08:29:59.950000Z")
    rows = [a, b, c]
    assert [permalink_ts(r, rows) for r in rows] == ["20250614083000100000", "20250614083000900000", "20250614082959"]
    assert [resolve(rows, permalink_ts(r, rows)) for r in rows] == rows
    # a time names the captures made within it before any nearer one outside it
    assert resolve(rows, "20250614083000") == a and resolve(rows, "202506140829") == c
    assert resolve(rows, "202506140830") == a  # within that minute, though c is nearer its start
    assert resolve(rows, "2025") == c and resolve(rows, "") == c and resolve(rows, "20991231") == b
    assert resolve([], "2025") is None


def test_a_capture_downloads_as_a_wacz_of_its_own(archived: Archive, ui: TestClient):
    row = archived.rows[PATROLS][1]
    assert f'href="/capture/{row.id}/capture.wacz"' in ui.get(f"/capture/{row.id}").text
    got = ui.get(f"/capture/{row.id}/capture.wacz")
    assert got.status_code == 200, got.text
    assert got.headers["content-disposition"] == f'attachment; filename="capture-{row.id}.wacz"'
    with zipfile.ZipFile(io.BytesIO(got.content)) as z:
        package = json.loads(z.read("datapackage.json"))
        pages = [json.loads(line) for line in z.read("pages/pages.jsonl").splitlines()]
        warcs = [z.read(n) for n in z.namelist() if n.startswith("archive/")]
    assert [p.get("url") for p in pages[1:]] == [row.final_url]
    assert {r["path"] for r in package["resources"]} >= {"pages/pages.jsonl", "indexes/index.cdxj"}
    response = None
    for data in warcs:
        it = ArchiveIterator(io.BytesIO(data))
        for rec in it:
            it.read_to_end()
            if rec.rec_headers.get_header("WARC-Record-ID") == row.warc_record_id:
                response = data[it.get_record_offset():it.get_record_offset() + it.get_record_length()]
    original = _members(archived.root / row.warc_file)[row.warc_record_id][1]
    assert response == original


def test_copy_buttons_copy_in_a_browser_under_the_uis_csp(archived: Archive):
    sync_api, browser_path = chromium()
    row = archived.rows[PATROLS][1]
    proc, base, _ = start_serve(archived.config)
    problems: list[str] = []
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
            try:
                context = browser.new_context()
                context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
                page = context.new_page()
                # a script or style the CSP refused is a console error; a browser asks for
                # /favicon.ico by itself, which the UI does not have
                page.on("console", lambda m: problems.append(m.text) if m.type == "error"
                        and not m.text.startswith("Failed to load resource") else None)
                page.on("pageerror", lambda e: problems.append(str(e)))
                page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400
                        and not r.url.endswith("/favicon.ico") else None)
                page.goto(f"{base}/capture/{row.id}")
                for key, want in (("citation-text", page.inner_text("#citation-text")),
                                  ("cite-warc-record-id", row.warc_record_id),
                                  ("permalink", page.inner_text("#permalink"))):
                    button = page.locator(f"button[data-copy='{key}']").first
                    button.click()
                    page.wait_for_function("b => b.textContent === 'Copied'", arg=button.element_handle(), timeout=5000)
                    assert page.evaluate("() => navigator.clipboard.readText()") == want, key
                assert page.inner_text("#permalink").startswith(f"{base}/web/")
            finally:
                browser.close()
    finally:
        stop(proc)
    assert problems == []


def test_publication_dates_are_read_as_pages_state_them():
    assert [published_at(s) for s in ("2025-06-14T08:30:00Z", "2025-06-14T23:30:00.5-05:00", "2025-06-14",
                                      "Sat, 14 Jun 2025 09:00:00 GMT", "June 14, 2025", "14 June 2025")] == [
        "2025-06-14T08:30:00Z", "2025-06-14T23:30:00-05:00", "2025-06-14", "2025-06-14T09:00:00Z",
        "2025-06-14", "2025-06-14"]
    # the day is the one the page states, not the UTC day
    assert published_day("2025-06-14T23:30:00-05:00") == "2025-06-14"
    assert [published_at(s) for s in (None, "", "soon", "0001-01-01T00:00:00", "2025-13-01", "x" * 500)] == [None] * 6


def test_a_timeline_runs_continuously_by_day_month_or_year():
    days = timeline([("2025-06-10", 1), ("2025-06-14", 2)], [("2025-06-14", 3)])
    assert days.unit == "day" and [s.label for s in days.slots] == [f"2025-06-{d}" for d in range(10, 15)]
    assert [(s.published, s.captured) for s in days.slots] == [(1, 0), (0, 0), (0, 0), (0, 0), (2, 3)]
    months = timeline([("2025-01-31", 1), ("2025-06-01", 1)], [("2025-12-02", 4)])
    assert months.unit == "month" and len(months.slots) == 12 and months.slots[-1].captured == 4
    years = timeline([("1999-05-05", 1)], [("2025-06-14", 1)])
    assert years.unit == "year" and len(years.slots) == 27 and (years.slots[0].first, years.slots[0].last) == (
        "1999-01-01", "1999-12-31")
    assert timeline([], []).slots == []
