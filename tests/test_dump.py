"""Dumps re-derived from the WARCs, and `archiver verify`, as a user runs them."""

from __future__ import annotations

import filecmp
import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from archiver.demo_site import ON_TOPIC
from archiver.pagetext import RENDERER_VERSION

from .conftest import Crawled, run_cli

EXE_ENV = dict(os.environ)


def dump(c: Crawled, out: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    exe = Path(__import__("sys").executable).with_name("archiver")
    return subprocess.run([str(exe), "dump", "--config", str(c.config_path), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=120, env=env)


def test_dump_verify_and_every_kind_of_tampering(crawled: Crawled, tmp_path: Path):
    out = tmp_path / "d1"
    proc = dump(crawled, out)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    names = sorted(p.name for p in out.glob("*.txt"))
    assert names == [f["file"] for f in manifest["files"]] and len(names) == len(ON_TOPIC)
    assert all(n[:3].isdigit() and n[3] == "_" and len(n) == len("000_0123456789abcdef.txt") for n in names)
    first = manifest["files"][0]
    assert {"sha256", "url", "fetched_at", "outlet", "topics", "matched", "warc_file", "warc_offset",
            "warc_record_id", "payload_digest", "producer"} <= set(first)
    assert first["producer"]["name"] == "archiver-pagetext"
    ok = run_cli("verify", str(out), "--config", str(crawled.config_path))
    assert ok.returncode == 0 and f"{len(ON_TOPIC)} ok, 0 DIFFERS, 0 MISSING, 0 WARC NOT FOUND" in ok.stdout

    again = tmp_path / "d2"  # in this process, not in workers: the same bytes either way
    assert dump(crawled, again, "--workers", "0").returncode == 0
    assert filecmp.dircmp(out, again).diff_files == [] and sorted(os.listdir(out)) == sorted(os.listdir(again))
    for name in os.listdir(out):
        assert (out / name).read_bytes() == (again / name).read_bytes()

    victim = out / names[0]
    data = bytearray(victim.read_bytes())
    data[5] ^= 0x20
    victim.write_bytes(bytes(data))
    (out / names[1]).unlink()
    res = run_cli("verify", str(out), "--config", str(crawled.config_path))
    assert res.returncode == 1
    assert f"DIFFERS        {names[0]}" in res.stdout and f"MISSING        {names[1]}" in res.stdout

    warcs = crawled.root / "warc"
    moved = tmp_path / "moved"
    shutil.move(str(warcs), str(moved))
    try:
        res = run_cli("verify", str(again), "--config", str(crawled.config_path))
        assert res.returncode == 1 and sum(l.startswith("WARC NOT FOUND ") for l in res.stdout.splitlines()) == len(ON_TOPIC)
        res = run_cli("verify", str(again), "--warcs", str(moved))  # told where they went
        assert res.returncode == 0
    finally:
        shutil.move(str(moved), str(warcs))


def test_dump_is_the_same_under_another_time_zone_and_locale(crawled: Crawled, tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert dump(crawled, a, "--kind", "article").returncode == 0
    env = dict(os.environ, TZ="Asia/Ho_Chi_Minh", LANG="vi_VN.UTF-8", LC_ALL="C.UTF-8", PYTHONHASHSEED="123")
    assert dump(crawled, b, "--kind", "article", env=env).returncode == 0
    assert sorted(os.listdir(a)) == sorted(os.listdir(b))
    for name in os.listdir(a):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    text = next(p for p in a.glob("*.txt")).read_text()
    assert "\n\n" in text and not text.startswith("\n")


def test_filters_and_latest(crawled: Crawled, tmp_path: Path):
    out = tmp_path / "scs"
    assert dump(crawled, out, "--topic", "south-china-sea").returncode == 0
    files = json.loads((out / "manifest.json").read_text())["files"]
    assert len(files) == 2 and all("south-china-sea" in f["topics"] for f in files)
    url = files[0]["final_url"]
    one = tmp_path / "one"
    assert dump(crawled, one, "--url", url, "--latest").returncode == 0
    assert [f["final_url"] for f in json.loads((one / "manifest.json").read_text())["files"]] == [url]
    none = tmp_path / "none"
    assert dump(crawled, none, "--since", "2999-01-01").returncode == 0
    assert json.loads((none / "manifest.json").read_text())["files"] == []


def test_extract_command_on_local_files(tmp_path: Path):
    page = tmp_path / "story.html.gz"
    body = "".join(f"<p>Paragraph {i} about the talks in Hanoi between the two delegations.</p>" for i in range(8))
    page.write_bytes(gzip.compress(f"<html><head><title>Talks | Site</title></head><body><nav><ul><li>Home</li>"
                                   f"</ul></nav><article><h1>Talks</h1><p class='article-byline'>By A. Reporter</p>"
                                   f"<div class='gallery'><p class='caption-full'>Delegates shake hands in Hanoi on "
                                   f"Wednesday before the talks begin in the old quarter.</p></div>{body}</article>"
                                   f"</body></html>".encode()))
    res = run_cli("extract", "--kind", "article", "--out", str(tmp_path / "o"), str(page))
    assert res.returncode == 0
    text = (tmp_path / "o" / "story.txt").read_text()
    assert text.startswith("Talks\n\nParagraph 0 about the talks") and "Home" not in text
    assert "Paragraph 7" in text and "Reporter" not in text and "shake hands" not in text
    res = run_cli("extract", "--kind", "page", "--out", str(tmp_path / "p"), str(page))
    assert res.returncode == 0 and "  • Home" in (tmp_path / "p" / "story.txt").read_text()


@pytest.mark.parametrize("bad", ["../evil.txt", "sub/x.txt"])
def test_verify_refuses_paths_outside_the_dump(crawled: Crawled, tmp_path: Path, bad: str):
    out = tmp_path / "d"
    assert dump(crawled, out).returncode == 0
    m = json.loads((out / "manifest.json").read_text())
    m["files"][0]["file"] = bad
    (out / "manifest.json").write_text(json.dumps(m))
    res = run_cli("verify", str(out), "--config", str(crawled.config_path))
    assert res.returncode == 1 and "not a plain name" in res.stdout


def test_verify_names_the_version_that_made_a_file(crawled: Crawled, tmp_path: Path):
    out = tmp_path / "old"
    assert dump(crawled, out).returncode == 0
    m = json.loads((out / "manifest.json").read_text())
    entry = m["files"][0]
    # as if an earlier renderer had produced different text for this capture
    older = b"Text from an older renderer\n"
    (out / entry["file"]).write_bytes(older)
    entry["sha256"] = __import__("hashlib").sha256(older).hexdigest()
    entry["producer"]["version"] = "0"
    (out / "manifest.json").write_text(json.dumps(m))
    res = run_cli("verify", str(out), "--config", str(crawled.config_path))
    assert res.returncode == 1
    assert f"made by archiver-pagetext 0, re-derived with archiver-pagetext {RENDERER_VERSION}" in res.stdout
