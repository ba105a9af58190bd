"""`archiver export wacz | cdxj`: files that standard web-archive tools open."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from archiver.index import Index

from .conftest import Crawled, invoke
from .test_export_exact import records

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ROOT.parent / "shared" / "checks"


def cdxj_entries(text: str) -> list[tuple[str, str, dict]]:
    out = []
    for line in text.splitlines():
        key, ts, js = line.split(" ", 2)
        out.append((key, ts, json.loads(js)))
    return out


def test_wacz_holds_the_selection_with_index_pages_and_digests(crawled: Crawled, tmp_path: Path):
    out = tmp_path / "blinken.wacz"
    res = invoke("export", "wacz", "--config", str(crawled.config_path), "--out", str(out), "--topic", "blinken")
    assert res.returncode == 0, res.stderr
    with Index.open(crawled.root, readonly=True) as idx:
        articles = [r for r in idx.captures(kind="article", state="archived") if "blinken" in r.topics]
        others = [r for r in idx.captures(kind="article", state="archived") if "blinken" not in r.topics]
        responses = [r for r in idx.captures() if r.warc_file and r.state in ("archived", "blocked")]
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        assert {"datapackage.json", "datapackage-digest.json", "indexes/index.cdxj", "pages/pages.jsonl"} <= names
        package = json.loads(z.read("datapackage.json"))
        # every resource is listed with its real digest and size
        for res_ in package["resources"]:
            data = z.read(res_["path"])
            assert res_["hash"] == "sha256:" + hashlib.sha256(data).hexdigest() and res_["bytes"] == len(data)
        digest = json.loads(z.read("datapackage-digest.json"))
        assert digest["hash"] == "sha256:" + hashlib.sha256(z.read("datapackage.json")).hexdigest()
        warcs = sorted(n for n in names if n.startswith("archive/"))
        assert warcs and all(z.getinfo(n).compress_type == zipfile.ZIP_STORED for n in warcs)
        z.extractall(tmp_path / "unpacked")
        pages = [json.loads(line) for line in z.read("pages/pages.jsonl").decode().splitlines()]
        assert pages[0]["format"] == "json-pages-1.0" and pages[0]["hasText"] is True
        assert sorted(p["url"] for p in pages[1:]) == sorted(r.final_url for r in articles)
        assert not {p["url"] for p in pages[1:]} & {r.final_url for r in others}
        assert all(p["title"] and "Blinken" in p["text"] for p in pages[1:])
        entries = cdxj_entries(z.read("indexes/index.cdxj").decode())
    # each WARC inside: a warcinfo record of the export, then records copied byte for byte
    source = {r.record_id: r for p in sorted((crawled.root / "warc").glob("*.warc.gz")) for r in records(p)}
    place = {}
    for n in warcs:
        recs, at = records(tmp_path / "unpacked" / n), 0
        assert recs[0].rtype == "warcinfo" and recs[0].record_id not in source
        for rec in recs:
            assert rec is recs[0] or rec.raw == source[rec.record_id].raw
            place[rec.record_id] = (Path(n).name, at)
            at += len(rec.raw)
    assert {r.warc_record_id for r in articles} <= set(place)
    assert not {r.warc_record_id for r in others} & set(place)
    # the CDXJ resolves every capture in the exported WARCs to its record
    by_pos = {(e["filename"], int(e["offset"])): (ts, e) for _, ts, e in entries}
    for r in responses:
        if r.warc_record_id not in place:
            continue
        ts, e = by_pos[place[r.warc_record_id]]
        assert e["url"] == (r.final_url or r.url) and int(e["length"]) == r.warc_length
        assert ts == "".join(ch for ch in r.fetched_at if ch.isdigit())[:14]


def test_wacz_with_nothing_selected_is_a_clear_error(crawled: Crawled, tmp_path: Path):
    out = tmp_path / "none.wacz"
    res = invoke("export", "wacz", "--config", str(crawled.config_path), "--out", str(out), "--topic", "no-such")
    assert res.returncode == 1 and "nothing to export" in res.stderr and not out.exists()


def test_cdxj_export_is_sorted_and_covers_every_response(crawled: Crawled, tmp_path: Path):
    out = tmp_path / "index.cdxj"
    res = invoke("export", "cdxj", "--config", str(crawled.config_path), "--out", str(out))
    assert res.returncode == 0, res.stderr
    lines = out.read_text().splitlines()
    assert lines == sorted(lines)
    entries = cdxj_entries(out.read_text())
    positions = {(e["filename"], int(e["offset"])) for _, _, e in entries}
    with Index.open(crawled.root, readonly=True) as idx:
        rows = [r for r in idx.captures() if r.warc_file and r.state in ("archived", "blocked")]
    assert rows and all((Path(r.warc_file).name, r.warc_offset) in positions for r in rows)


@pytest.mark.xdist_group("shared-tools")  # one nginx site on 127.0.0.10-30:18080, one conformance venv
@pytest.mark.slow
def test_wacz_passes_wacz_validate_and_the_warc_conformance_check(crawled: Crawled, tmp_path: Path):
    check = CHECKS / "warc-conformance"
    if not check.exists():
        if os.environ.get("ARCHIVER_REQUIRE_BENCH"):
            pytest.fail(f"{check} is missing")
        pytest.skip(f"{check} is missing")
    out = tmp_path / "all.wacz"
    assert invoke("export", "wacz", "--config", str(crawled.config_path), "--out", str(out)).returncode == 0
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(out) as z:
        z.extractall(unpacked)
    proc = subprocess.run([sys.executable, str(check), str(unpacked / "archive"), "--skip", "replayweb"],
                          capture_output=True, text=True, timeout=1200)
    print(proc.stdout[-3000:])
    assert proc.returncode == 0 and ", 0 failed" in proc.stdout
    venv = Path(os.environ.get("WARC_CONFORMANCE_VENV", "/tmp/conformance-venv"))
    proc = subprocess.run([str(venv / "bin" / "wacz"), "validate", "-f", str(out)],
                          capture_output=True, text=True, timeout=600)
    print(proc.stdout[-2000:], proc.stderr[-2000:])
    assert proc.returncode == 0
