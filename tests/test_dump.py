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

from archiver.demo.site import ON_TOPIC
from archiver.pagetext import RENDERER_VERSION

from .conftest import Crawled, invoke

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
    ok = invoke("verify", str(out), "--config", str(crawled.config_path))
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
    res = invoke("verify", str(out), "--config", str(crawled.config_path))
    assert res.returncode == 1
    assert f"DIFFERS        {names[0]}" in res.stdout and f"MISSING        {names[1]}" in res.stdout

    warcs = crawled.root / "warc"
    moved = tmp_path / "moved"
    shutil.move(str(warcs), str(moved))
    try:
        res = invoke("verify", str(again), "--config", str(crawled.config_path))
        assert res.returncode == 1 and sum(l.startswith("WARC NOT FOUND ") for l in res.stdout.splitlines()) == len(ON_TOPIC)
        res = invoke("verify", str(again), "--warcs", str(moved))  # told where they went
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
    res = invoke("extract", "--kind", "article", "--out", str(tmp_path / "o"), str(page))
    assert res.returncode == 0
    text = (tmp_path / "o" / "story.txt").read_text()
    assert text.startswith("Talks\n\nParagraph 0 about the talks") and "Home" not in text
    assert "Paragraph 7" in text and "Reporter" not in text and "shake hands" not in text
    res = invoke("extract", "--kind", "page", "--out", str(tmp_path / "p"), str(page))
    assert res.returncode == 0 and "  • Home" in (tmp_path / "p" / "story.txt").read_text()


@pytest.mark.parametrize("bad", ["../evil.txt", "sub/x.txt"])
def test_verify_refuses_paths_outside_the_dump(crawled: Crawled, tmp_path: Path, bad: str):
    out = tmp_path / "d"
    assert dump(crawled, out).returncode == 0
    m = json.loads((out / "manifest.json").read_text())
    m["files"][0]["file"] = bad
    (out / "manifest.json").write_text(json.dumps(m))
    res = invoke("verify", str(out), "--config", str(crawled.config_path))
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
    res = invoke("verify", str(out), "--config", str(crawled.config_path))
    assert res.returncode == 1
    assert f"made by archiver-pagetext 0, re-derived with archiver-pagetext {RENDERER_VERSION}" in res.stdout


def verify(dump_dir: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    exe = Path(__import__("sys").executable).with_name("archiver")
    # a verify that opens /dev/zero or a FIFO never ends: the timeout is the test's bound on that
    return subprocess.run([str(exe), "verify", str(dump_dir), "--workers", "0", *args],
                          capture_output=True, text=True, timeout=60, env=env)


SECRET = "planted-secret-9f4c2e"


@pytest.fixture(scope="module")
def dumped(crawled: Crawled, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dumped") / "d"
    assert dump(crawled, out, "--workers", "0").returncode == 0
    return out


def copy_of(dumped: Path, tmp_path: Path) -> Path:
    out = tmp_path / "d"
    shutil.copytree(dumped, out)
    return out


@pytest.mark.parametrize("form", ["relative", "absolute", "proc-environ", "dev-zero", "symlink-out",
                                  "symlink-dev-zero", "fifo", "dump-file-fifo"])
def test_verify_reads_nothing_outside_the_folders_it_was_given(crawled: Crawled, dumped: Path, tmp_path: Path,
                                                               form: str):
    out = copy_of(dumped, tmp_path)
    outside = tmp_path / "outside" / "secret.txt"
    outside.parent.mkdir()
    outside.write_text(f"{SECRET}\nsecond line {SECRET}\n")
    given = tmp_path / "given"  # a --warcs folder the tampered manifest points into
    (given / "warc").mkdir(parents=True)
    m = json.loads((out / "manifest.json").read_text())
    entry = m["files"][0]
    entry["warc_offset"] = 0  # the start of the target: its first line is what a WARC reader quotes
    if form == "relative":
        entry["warc_file"] = os.path.relpath(outside, crawled.root)
    elif form == "absolute":
        entry["warc_file"] = str(outside)
    elif form == "proc-environ":
        entry["warc_file"] = "/proc/self/environ"
    elif form == "dev-zero":
        entry["warc_file"] = "/dev/zero"
    elif form in ("symlink-out", "symlink-dev-zero"):
        (given / "warc" / "evil.warc.gz").symlink_to(outside if form == "symlink-out" else Path("/dev/zero"))
        entry["warc_file"] = "warc/evil.warc.gz"
    elif form == "fifo":
        os.mkfifo(given / "warc" / "pipe.warc.gz")
        entry["warc_file"] = "warc/pipe.warc.gz"
    else:  # the dump's own file is a FIFO: reading it to compare would wait for a writer forever
        (out / entry["file"]).unlink()
        os.mkfifo(out / entry["file"])
    (out / "manifest.json").write_text(json.dumps(m))
    env = dict(os.environ, ARCHIVER_TEST_TOKEN=SECRET)  # what /proc/self/environ would give away
    res = verify(out, "--config", str(crawled.config_path), "--warcs", str(given), env=env)
    assert res.returncode == 1
    line = next(l for l in res.stdout.splitlines() if entry["file"] in l)
    assert line.startswith("REFUSED "), res.stdout
    assert SECRET not in res.stdout + res.stderr
    assert f"{len(m['files']) - 1} ok" in res.stdout and "1 REFUSED" in res.stdout  # the others are verified


def test_verify_refuses_a_manifest_that_is_not_a_regular_file(crawled: Crawled, dumped: Path, tmp_path: Path):
    out = copy_of(dumped, tmp_path)
    (out / "manifest.json").unlink()
    os.mkfifo(out / "manifest.json")
    res = verify(out, "--config", str(crawled.config_path))
    assert res.returncode == 1 and "manifest.json is not a regular file" in res.stderr


def test_verify_never_quotes_a_file_that_is_not_a_warc(crawled: Crawled, dumped: Path, tmp_path: Path):
    """A file inside the given folders may be read, but what it holds is not printed."""
    out = copy_of(dumped, tmp_path)
    given = tmp_path / "given"
    given.mkdir()
    (given / "notes.warc.gz").write_text(f"{SECRET}\n")
    m = json.loads((out / "manifest.json").read_text())
    m["files"][0].update(warc_file="notes.warc.gz", warc_offset=0)
    (out / "manifest.json").write_text(json.dumps(m))
    res = verify(out, "--warcs", str(given), "--config", str(crawled.config_path))
    assert res.returncode == 1 and f"DIFFERS        {m['files'][0]['file']}" in res.stdout
    assert "Unknown archive format" in res.stdout and SECRET not in res.stdout + res.stderr
