"""`archiver export wacz` holds exactly the selected captures: their records copied byte for
byte out of WARC files they share with captures of other topics, their requisites (from
another pass's file, and revisits with their originals), an index of nothing else.

The outlet is a real server on 127.0.0.1; two passes write two WARC files, each mixing
articles about Vietnam (topic A) and coral reefs (topic B), which share a stylesheet.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from archiver.config import load_config
from archiver.crawl import run_pass
from archiver.errors import ExportError
from archiver.export import export_capture_wacz
from archiver.index import CaptureRow, Index
from archiver.stores import StoreSettings
from archiver.warcfiles import WarcFiles

from .conftest import invoke
from .localoutlet import outlet_config
from .rawserver import RawServer, raw
from .test_item_failures import _feed, _ok

CHECKS = Path(__file__).resolve().parents[2] / "shared" / "checks"
TOPICS = "[{name: vietnam, any: [Vietnam]}, {name: reef, any: [coral reef]}]"


def article(title: str, words: str, image: str) -> bytes:
    return (f'<!DOCTYPE html><html><head><title>{title}</title><link rel="stylesheet" href="/static/site.css">'
            f'</head><body><article><h1>{title}</h1><img src="/img/{image}">'
            + "".join(f"<p>Paragraph {i}. {words} Officials spoke at length about trade and the sea.</p>"
                      for i in range(6))
            + "</article></body></html>").encode()


@dataclass(frozen=True)
class Record:
    file: str
    rtype: str
    record_id: str
    uri: str
    links: tuple[str, ...]
    raw: bytes  # the record's gzip member as stored


def records(path: Path) -> list[Record]:
    data = path.read_bytes()
    out = []
    with open(path, "rb") as f:
        it = ArchiveIterator(f, no_record_parse=True)
        for rec in it:
            h = rec.rec_headers
            links = tuple(v for k, v in h.headers if k.lower() in ("warc-concurrent-to", "warc-refers-to"))
            it.read_to_end(rec)
            start, length = it.get_record_offset(), it.get_record_length()
            out.append(Record(path.name, rec.rec_type, h.get_header("WARC-Record-ID"),
                              h.get_header("WARC-Target-URI") or "", links, data[start:start + length]))
    return out


@dataclass
class Outlet:
    root: Path
    config: Path
    a_pages: list[CaptureRow]
    b_pages: list[CaptureRow]
    source: dict[str, Record]  # every record of the archive's WARC files, by id
    url: dict[str, str]  # path on the server -> URL


@pytest.fixture(scope="module")
def outlet(tmp_path_factory) -> Outlet:
    tmp = tmp_path_factory.mktemp("exact")
    root = tmp / "root"
    routes = {"/robots.txt": raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
              "/static/site.css": raw(_ok(b"h1{color:rgb(200,0,0)} body{background:url(/img/bg.png)}", "text/css"))}
    for name in ("bg", "a1", "a2", "a3", "b1", "b2", "b3"):
        routes[f"/img/{name}.png"] = raw(_ok(f"PNG of {name}".encode(), "image/png"))
    for n in (1, 2, 3):
        routes[f"/a{n}"] = raw(_ok(article(f"Talks in Hanoi {n}", "Vietnam and its neighbours met again.",
                                           f"a{n}.png")))
        routes[f"/b{n}"] = raw(_ok(article(f"Reef survey {n}", "The coral reef off the coast bleached.", f"b{n}.png")))
    with RawServer(routes) as srv:
        # a redirect with a body large enough to fill the file: the page it leads to is written to the next
        big = os.urandom(1_100_000)
        routes["/go/a1"] = raw(f"HTTP/1.1 302 Found\r\nLocation: {srv.url('/a1')}\r\n"
                               f"Content-Length: {len(big)}\r\n\r\n".encode() + big)
        cfg = tmp / "c.yaml"
        # a topic-B page first: the shared stylesheet is fetched for it, and used by the others
        for links, extra in ((["/b1", "/go/a1", "/b2", "/a2"], ""),
                             # the next pass fetches requisites again: same payloads, revisits
                             (["/b3", "/a3"], "capture: {requisites: {refresh: 0s}}\n")):
            routes["/feed.xml"] = raw(_ok(_feed([srv.url(p) for p in links]), "application/rss+xml"))
            outlet_config(cfg, root, [srv.url("/feed.xml")], fetch=", concurrency: 1", topics=TOPICS, extra=extra)
            cfg.write_text(cfg.read_text().replace(f"storage: {{root: {root}}}",
                                                   f"storage: {{root: {root}, warc: {{rotate_size: 1MB}}}}"))
            asyncio.run(run_pass(load_config(cfg)))
        url = {p: srv.url(p) for p in routes}
    with Index.open(root, readonly=True) as idx:
        articles = list(idx.captures(kind="article", state="archived"))
    warcs = sorted((root / "warc").glob("*.warc.gz"))
    source = {r.record_id: r for p in warcs for r in records(p)}
    a_pages = [r for r in articles if "vietnam" in r.topics]
    b_pages = [r for r in articles if "reef" in r.topics]
    assert len(a_pages) == 3 and len(b_pages) == 3 and not {r.id for r in a_pages} & {r.id for r in b_pages}
    # the topics share the files; the redirect to a1 is in the file before a1's
    a_files, b_files = ({Path(r.warc_file or "").name for r in rows} for rows in (a_pages, b_pages))
    assert len(warcs) == 3 and len(a_files & b_files) == 2
    a1 = next(r for r in a_pages if r.redirect_record_ids)
    assert source[a1.redirect_record_ids[0]].file != Path(a1.warc_file or "").name
    return Outlet(root, cfg, a_pages, b_pages, source, url)


def unpack(wacz: Path) -> tuple[dict[str, list[Record]], list[tuple[str, str, dict]], list[dict], dict]:
    """(records of each WARC inside, CDXJ entries, pages, datapackage) of a WACZ, checked
    against its own digests on the way."""
    folder = wacz.with_suffix("")
    with zipfile.ZipFile(wacz) as z:
        z.extractall(folder)
        package = json.loads(z.read("datapackage.json"))
        for res in package["resources"]:
            data = z.read(res["path"])
            assert res["hash"] == "sha256:" + hashlib.sha256(data).hexdigest() and res["bytes"] == len(data)
        listed = {res["path"] for res in package["resources"]}
        assert listed == set(z.namelist()) - {"datapackage.json", "datapackage-digest.json"}
        digest = json.loads(z.read("datapackage-digest.json"))
        assert digest["hash"] == "sha256:" + hashlib.sha256(z.read("datapackage.json")).hexdigest()
        warcs = sorted(n for n in z.namelist() if n.startswith("archive/"))
        assert warcs and all(z.getinfo(n).compress_type == zipfile.ZIP_STORED for n in warcs)
        entries = []
        for line in z.read("indexes/index.cdxj").decode().splitlines():
            key, ts, js = line.split(" ", 2)
            entries.append((key, ts, json.loads(js)))
        pages = [json.loads(line) for line in z.read("pages/pages.jsonl").decode().splitlines()]
    return {Path(n).name: records(folder / n) for n in warcs}, entries, pages, package


def belongs_to(pages: list[CaptureRow], source: dict[str, Record]) -> set[str]:
    """Record ids the index and the source files say are the pages' own: response, request,
    redirect hops and their requests, conversion, metadata (provenance, requisites list)."""
    ids = set()
    for p in pages:
        heads = {p.warc_record_id, *p.redirect_record_ids}
        ids |= heads | {p.request_record_id, p.conversion_record_id, p.metadata_record_id}
        ids |= {r.record_id for r in source.values() if set(r.links) & heads and r.rtype != "revisit"}
    return ids - {None}


def test_topic_export_holds_exactly_its_captures_byte_for_byte(outlet: Outlet, tmp_path: Path):
    out = tmp_path / "vietnam.wacz"
    res = invoke("export", "wacz", "--config", str(outlet.config), "--out", str(out), "--topic", "vietnam")
    assert res.returncode == 0, res.stderr
    inside, entries, pages, package = unpack(out)
    got = [r for recs in inside.values() for r in recs]
    by_id = {r.record_id: r for r in got}
    assert len(by_id) == len(got)  # no record twice

    # nothing of a topic-B article: not its records, nor any record naming them
    b_ids = belongs_to(outlet.b_pages, outlet.source)
    b_urls = {outlet.url[p] for p in ("/b1", "/b2", "/b3", "/img/b1.png", "/img/b2.png", "/img/b3.png")}
    assert not b_ids & set(by_id)
    assert not [r.uri for r in got if r.uri in b_urls]
    assert not [r.record_id for r in got if set(r.links) & b_ids]
    assert len(outlet.b_pages[0].metadata_record_id or "") > 0 and outlet.b_pages[0].metadata_record_id not in by_id

    # every record of a topic-A article, byte for byte as the archive has it
    a_ids = belongs_to(outlet.a_pages, outlet.source)
    assert a_ids <= set(by_id), a_ids - set(by_id)
    kinds = {outlet.source[i].rtype for i in a_ids}
    assert kinds == {"response", "request", "conversion", "metadata"}
    assert sum(1 for i in a_ids if outlet.source[i].rtype == "metadata") == 6  # provenance + requisites list, each
    hop = outlet.a_pages[0].redirect_record_ids
    assert hop and outlet.source[hop[0]].uri == outlet.url["/go/a1"]
    for i in a_ids:
        assert by_id[i].raw == outlet.source[i].raw, (outlet.source[i].rtype, outlet.source[i].uri)

    # their requisites: the stylesheet fetched for a topic-B page in the first file, the revisits of
    # the second pass and the originals they repeat, each with its request
    req_urls = {outlet.url[p] for p in ("/static/site.css", "/img/bg.png", "/img/a1.png", "/img/a2.png",
                                        "/img/a3.png")}
    for u in req_urls:
        assert any(r.rtype == "response" and r.uri == u for r in got), u
    revisits = [r for r in got if r.rtype == "revisit"]
    assert {r.uri for r in revisits} == {outlet.url["/static/site.css"], outlet.url["/img/bg.png"]}
    for r in revisits:
        assert r.links[-1] in by_id and by_id[r.links[-1]].rtype == "response"
    for r in got:
        if r.rtype in ("response", "revisit"):
            assert any(q.rtype == "request" and r.record_id in q.links for q in got), r.uri
    # everything but each file's new warcinfo is a copy of a record of the archive
    for name, recs in inside.items():
        assert recs[0].rtype == "warcinfo" and recs[0].record_id not in outlet.source
        assert b"source-warc: " + name.removeprefix("export-").encode() in _body(recs[0].raw)
        for r in recs[1:]:
            assert r.raw == outlet.source[r.record_id].raw
    copied = {r.record_id for r in got} & set(outlet.source)
    assert {outlet.source[i].uri for i in copied} <= req_urls | {
        outlet.url[p] for p in ("/a1", "/a2", "/a3", "/go/a1")} | {""}  # "": the source files' warcinfo

    # the CDXJ index: every line points at a record inside, and what replay needs is there
    offsets = {}
    for name, recs in inside.items():
        at = 0
        for r in recs:
            offsets[(name, at)] = r
            at += len(r.raw)
    for _, _, e in entries:
        r = offsets[(e["filename"], int(e["offset"]))]
        assert r.uri == e["url"] and len(r.raw) == int(e["length"])
    assert {e["url"] for _, _, e in entries} >= req_urls | {p.final_url for p in outlet.a_pages}
    assert not {e["url"] for _, _, e in entries} & b_urls

    assert sorted(p["url"] for p in pages[1:]) == sorted(r.final_url for r in outlet.a_pages)
    assert all("Vietnam" in p["text"] for p in pages[1:])
    assert package["title"] == "archiver: topic vietnam, 3 captures" == pages[0]["title"]
    assert package["selection"]["topics"] == ["vietnam"]


def _body(member: bytes) -> bytes:
    import gzip

    return gzip.decompress(member)


def test_discovery_documents_only_when_asked(outlet: Outlet, tmp_path: Path):
    feeds = {i for i, r in outlet.source.items() if r.uri == outlet.url["/feed.xml"] and r.rtype == "response"}
    plain, asked = tmp_path / "plain.wacz", tmp_path / "asked.wacz"
    for out, flags in ((plain, []), (asked, ["--with-discovery"])):
        res = invoke("export", "wacz", "--config", str(outlet.config), "--out", str(out), "--topic", "vietnam",
                     "--since", "2000-01-01", *flags)
        assert res.returncode == 0, res.stderr
    plain_ids = {r.record_id for recs in unpack(plain)[0].values() for r in recs}
    asked_recs = {r.record_id: r for recs in unpack(asked)[0].values() for r in recs}
    assert not feeds & plain_ids
    assert len(feeds) == 2 and feeds <= set(asked_recs)  # one feed capture per pass
    for i in feeds:
        assert asked_recs[i].raw == outlet.source[i].raw
        assert any(r.rtype == "request" and i in r.links for r in asked_recs.values())


def test_one_capture_exports_alone(outlet: Outlet, tmp_path: Path):
    page = next(p for p in outlet.a_pages if p.final_url == outlet.url["/a2"])
    out = tmp_path / "one.wacz"
    with Index.open(outlet.root, readonly=True) as idx:
        counts = export_capture_wacz(outlet.root, WarcFiles.for_root(outlet.root, idx, StoreSettings()), idx,
                                     page.id or 0, out)
    inside, entries, pages, package = unpack(out)
    got = [r for recs in inside.values() for r in recs]
    ids = {r.record_id for r in got}
    assert belongs_to([page], outlet.source) <= ids
    others = [p for p in outlet.a_pages + outlet.b_pages if p.id != page.id]
    assert not belongs_to(others, outlet.source) & ids
    assert {r.uri for r in got if r.rtype == "response"} == {
        outlet.url[p] for p in ("/a2", "/static/site.css", "/img/bg.png", "/img/a2.png")}
    assert [p["url"] for p in pages[1:]] == [page.final_url]
    assert package["title"].startswith("archiver: Talks in Hanoi 2, captured ") and package["selection"] == {
        "capture_id": page.id}
    assert counts["pages"] == 1 and counts["records"] == len(got) - len(inside)  # the new warcinfo aside
    with Index.open(outlet.root, readonly=True) as idx, pytest.raises(ExportError, match="no capture 99999"):
        export_capture_wacz(outlet.root, WarcFiles.for_root(outlet.root, idx, StoreSettings()), idx, 99999,
                            tmp_path / "none.wacz")
    assert not (tmp_path / "none.wacz").exists()


def test_a_rendered_page_exports_with_its_dom_screenshot_and_what_its_scripts_fetched(tmp_path: Path):
    from .test_browser_capture import NO_ROBOTS, config, js_article, story_json

    routes = {"/robots.txt": NO_ROBOTS, "/story": raw(js_article("/api/story.json")),
              "/api/story.json": raw(story_json("Vietnam and its neighbours met in Hanoi.")),
              "/reef": raw(js_article("/api/reef.json")),
              "/api/reef.json": raw(story_json("The coral reef off the coast bleached again."))}
    with RawServer(routes) as srv:
        routes["/feed.xml"] = raw(_ok(_feed([srv.url("/reef"), srv.url("/story")]), "application/rss+xml"))
        cfg = config(tmp_path, srv.url("/feed.xml"), "browser")
        cfg.write_text(cfg.read_text().replace("topics: [{name: vietnam, any: [Vietnam]}]", f"topics: {TOPICS}"))
        asyncio.run(run_pass(load_config(cfg)))
        story, reef = srv.url("/story"), srv.url("/reef")
    root = tmp_path / "root"
    source = {r.record_id: r for p in sorted((root / "warc").glob("*.warc.gz")) for r in records(p)}
    with Index.open(root, readonly=True) as idx:
        made = {r.kind: r for r in idx.captures() if r.kind in ("dom", "screenshot")
                and r.discovered_via_url == story}
        kept = {r.final_url: r.topics for r in idx.captures(kind="article", state="archived")}
    assert set(made) == {"dom", "screenshot"} and kept == {story: ["vietnam"], reef: ["reef"]}
    out = tmp_path / "story.wacz"
    res = invoke("export", "wacz", "--config", str(cfg), "--out", str(out), "--topic", "vietnam")
    assert res.returncode == 0, res.stderr
    got = {r.record_id: r for recs in unpack(out)[0].values() for r in recs}
    for row in made.values():
        assert got[row.warc_record_id or ""].raw == source[row.warc_record_id or ""].raw
    assert {r.uri for r in got.values() if r.rtype == "resource"} == {f"urn:dom:{story}", f"urn:screenshot:{story}"}
    assert srv.url("/api/story.json") in {r.uri for r in got.values() if r.rtype == "response"}
    assert not [r.uri for r in got.values() if r.uri in (reef, srv.url("/api/reef.json"), f"urn:dom:{reef}",
                                                       f"urn:screenshot:{reef}")]
    for r in got.values():
        if r.record_id in source:
            assert r.raw == source[r.record_id].raw


def test_files_moved_to_an_s3_store_export_the_same_records(outlet: Outlet, s3_server, tmp_path: Path):
    import shutil

    from archiver.export import export_wacz
    from archiver.dump import Selection
    from archiver.stores import file_sha256, store_for

    local = tmp_path / "local.wacz"
    assert invoke("export", "wacz", "--config", str(outlet.config), "--out", str(local), "--topic",
                  "vietnam").returncode == 0
    root = tmp_path / "moved"
    shutil.copytree(outlet.root, root)
    settings = StoreSettings(ship_to=f"s3://{s3_server.new_bucket()}/warc", s3_endpoint=s3_server.endpoint)
    store = store_for(settings)
    assert store is not None
    with Index.open(root) as idx:
        for path in sorted((root / "warc").glob("*.warc.gz")):
            sha, size = file_sha256(path)
            idx.record_warc_closed(path.name, "w1", path.as_uri(), size, "2026-01-01T00:00:00Z")
            idx.record_warc_shipped(path.name, store.put(path, path.name, sha), size, sha, "2026-01-01T00:00:00Z")
            path.unlink()  # only the store has it now
    out = tmp_path / "stored.wacz"
    with Index.open(root, readonly=True) as idx:
        export_wacz(root, WarcFiles.for_root(root, idx, settings), idx, out,
                    Selection(topics=("vietnam",), kind="article"))
    ours = {r.record_id: r.raw for recs in unpack(out)[0].values() for r in recs[1:]}
    theirs = {r.record_id: r.raw for recs in unpack(local)[0].values() for r in recs[1:]}
    assert ours == theirs and len(ours) > 30
    assert not list(tmp_path.glob(".download-*")) and not list(tmp_path.glob(".export-*"))


def _tool(name: str) -> Path:
    venv = Path(os.environ.get("WARC_CONFORMANCE_VENV", "/tmp/conformance-venv"))
    tool = venv / "bin" / name
    if not tool.exists():
        if os.environ.get("ARCHIVER_REQUIRE_BENCH"):
            pytest.fail(f"{tool} is missing ({CHECKS / 'warc-conformance'} installs it on first run)")
        pytest.skip(f"{tool} is missing ({CHECKS / 'warc-conformance'} installs it on first run)")
    return tool


@pytest.mark.xdist_group("shared-tools")  # one nginx site on 127.0.0.10-30:18080, one conformance venv
def test_topic_export_passes_wacz_validate(outlet: Outlet, tmp_path: Path):
    wacz = _tool("wacz")
    out = tmp_path / "vietnam.wacz"
    assert invoke("export", "wacz", "--config", str(outlet.config), "--out", str(out), "--topic",
                  "vietnam").returncode == 0
    proc = subprocess.run([str(wacz), "validate", "-f", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "succeeded" in proc.stdout + proc.stderr, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.mark.xdist_group("shared-tools")  # one nginx site on 127.0.0.10-30:18080, one conformance venv
@pytest.mark.slow
def test_topic_export_passes_the_warc_conformance_check(outlet: Outlet, tmp_path: Path):
    check = CHECKS / "warc-conformance"
    if not check.exists():
        if os.environ.get("ARCHIVER_REQUIRE_BENCH"):
            pytest.fail(f"{check} is missing")
        pytest.skip(f"{check} is missing")
    out = tmp_path / "vietnam.wacz"
    assert invoke("export", "wacz", "--config", str(outlet.config), "--out", str(out), "--topic",
                  "vietnam").returncode == 0
    with zipfile.ZipFile(out) as z:
        z.extractall(tmp_path / "unpacked")
    proc = subprocess.run([sys.executable, str(check), str(tmp_path / "unpacked" / "archive"), "--skip",
                           "replayweb", "--out", str(tmp_path / "conformance")],
                          capture_output=True, text=True, timeout=1200)
    print(proc.stdout[-4000:])
    assert proc.returncode == 0 and ", 0 failed" in proc.stdout
