"""No request can hold `archiver serve`: diffs, searches and renders are bounded.

Two captures of a large article (about 2 MB each of distinct paragraphs, every third one
changed between them) are diffed through a real `archiver serve`. difflib alone takes hours
on such texts; the server answers within a generous bound, answers /healthz meanwhile, and
ends promptly on SIGTERM while diffs are running. Oversized searches get a reason, and pages
too large to rewrite are refused before any work is spent on them.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from archiver.config import load_config
from archiver.crawl import run_pass
from archiver.web.diffs import ADDED, FOLDED, KEEP, REMOVED, diff_texts
from archiver.index import Index
from archiver.web.replay import Archived, TooLarge, replay_body

from .test_browse import get, start_serve, stop
from .test_replay_sealed import EscapeSite

PARAGRAPHS = 24_000


def big_article(revised: bool) -> bytes:
    paras = "".join(f"<p>Paragraph {i}: Blinken said that item {i * 7919 % 1_000_003} of the record stands"
                    f"{' corrected' if revised and i % 3 == 0 else ''}.</p>\n" for i in range(PARAGRAPHS))
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>A long Blinken record</title></head>"
            f"<body><article><h1>A long Blinken record</h1>{paras}</article></body></html>").encode()


@dataclass
class Big:
    config: Path
    old: int
    new: int


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    root = tmp_path_factory.mktemp("big")
    site = EscapeSite().start()
    site.pages["/record-1.html"] = ("text/html; charset=utf-8", big_article(False))
    site.pages["/record-2.html"] = ("text/html; charset=utf-8", big_article(True))
    try:
        config = root / "config.yaml"
        config.write_text(site.config_yaml(root / "storage"), encoding="utf-8")
        asyncio.run(run_pass(load_config(config)))
    finally:
        site.stop()
    with Index.open(root / "storage", readonly=True) as idx:
        ids = {r.url.rsplit("/", 1)[1]: r.id for r in idx.captures(kind="article", state="archived")}
    assert set(ids) == {"record-1.html", "record-2.html"}, ids
    return Big(config, ids["record-1.html"], ids["record-2.html"])


def in_background(fn, *args) -> tuple[threading.Thread, list]:
    out: list = []
    t = threading.Thread(target=lambda: out.append(fn(*args)), daemon=True)
    t.start()
    return t, out


def test_a_diff_of_two_large_articles_answers_and_the_server_stays_responsive(big: Big):
    proc, base, replay = start_serve(big.config)
    try:
        t, out = in_background(get, f"{base}/capture/{big.new}?diff={big.old}", None, 60)
        time.sleep(0.05)
        started = time.monotonic()
        assert get(f"{base}/healthz", timeout=3)[0] == 200  # while the diff is being made
        assert time.monotonic() - started < 3
        t.join(30)
        assert out, "no answer to the diff within 30 s"
        status, _, body = out[0]
        assert status == 200
        assert "diff too large" in body and "corrected" in body
        # each changed paragraph word by word, unless the machine was too slow for that within
        # the diff's time budget: then it says so and shows the changed part whole
        assert body.count("<ins>corrected</ins>") > 100 or "too long to compare" in body
        # the other pages of that capture, and its replay, answer too
        for url in (f"{base}/capture/{big.new}", f"{base}/raw/{big.new}", f"{replay}/replay/{big.new}",
                    f"{base}/search?q=corrected", f"{base}/"):
            assert get(url, timeout=30)[0] == 200, url
    finally:
        stop(proc)


def test_sigterm_during_diffs_ends_the_server_promptly(big: Big):
    proc, base, _ = start_serve(big.config)
    try:
        for _ in range(6):
            in_background(get, f"{base}/capture/{big.new}?diff={big.old}", None, 60)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)  # raises TimeoutExpired if SIGTERM went unheard
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_oversized_searches_are_refused_with_a_reason(big: Big):
    proc, base, _ = start_serve(big.config)
    try:
        status, _, body = get(f"{base}/api/search?q={'Blinken+' * 2000}")
        assert status == 400 and "15,999 characters" in body and "at most 500" in body, body
        status, _, body = get(f"{base}/search?q=Blinken&page=999999999")
        assert status == 400 and "page 999999999" in body
    finally:
        stop(proc)


def apply(lines: list[tuple[str, str]], old: list[str]) -> list[str]:
    """The new text rebuilt from the old one and the diff (folded runs copied from the old)."""
    out, i = [], 0
    for tag, text in lines:
        if tag == KEEP:
            assert old[i] == text
            out.append(old[i])
            i += 1
        elif tag == REMOVED:
            assert old[i] == text
            i += 1
        elif tag == ADDED:
            out.append(text)
        elif tag == FOLDED:
            n = int(text.split()[0].replace(",", ""))
            out += old[i:i + n]
            i += n
    return out + old[i:]


def test_a_diff_over_its_time_budget_is_coarser_but_still_true():
    old = "\n\n".join(f"line {i}" for i in range(1200)).splitlines()  # under the line cap
    new = [line + " changed" if n % 6 == 0 else line for n, line in enumerate(old)]
    quick = diff_texts("\n".join(old), "\n".join(new), seconds=0.0)
    assert any("too long to compare" in n for n in quick.notes)
    assert apply(quick.lines, old) == new
    full = diff_texts("\n".join(old), "\n".join(new), seconds=60.0)  # time enough on a loaded machine
    assert full.notes == [] and apply(full.lines, old) == new
    assert sum(tag == REMOVED for tag, _ in full.lines) < sum(tag == REMOVED for tag, _ in quick.lines)


def test_pages_too_large_to_rewrite_are_refused_not_rewritten():
    big_bytes = Archived("http://example.org/", 200, "OK", [], "text/html", b"<p>x</p>" * 700_000, False)
    with pytest.raises(TooLarge, match="5,600,000 bytes"):
        replay_body(big_bytes, "2025")
    many = Archived("http://example.org/", 200, "OK", [], "text/html", b"<i></i>" * 160_000, False)
    with pytest.raises(TooLarge, match="150,000 elements"):
        replay_body(many, "2025")
    css = Archived("http://example.org/s.css", 200, "OK", [], "text/css", b"a{}" * 2_000_000, False)
    with pytest.raises(TooLarge, match="stylesheet"):
        replay_body(css, "2025")
