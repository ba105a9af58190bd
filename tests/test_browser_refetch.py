"""Refetching an article that was rendered in the browser: its HTML never changes, the JSON
its script writes the article from does. A changed article is kept again as a new version
of the first; an unchanged one is a revisit and nothing else."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from archiver.config import load_config
from archiver.crawl import run_pass
from archiver.index import Index

from .localoutlet import outlet_config
from .rawserver import Handler, RawServer, raw
from .test_browser_capture import NO_ROBOTS, browser_path, fields, js_article, records, story_json
from .test_item_failures import _feed, _ok

FIRST = "Vietnam and its neighbours met in Hanoi."
LATER = "Vietnam and Laos signed the river treaty at dawn."


def shell() -> bytes:
    """The page's HTML, always the same bytes, with a validator a refetch could send back."""
    head, body = js_article("/api/story.json").split(b"\r\n", 1)
    return head + b'\r\nETag: "shell-1"\r\n' + body


def two_passes(tmp_path: Path, later: str) -> tuple[Any, Any, list[dict[str, Any]], list[dict[str, Any]], list[bytes]]:
    """Two passes with the article's refetch due in the second, its JSON saying `later` by
    then: the stats of both, the records after each, the requests of the second for the page."""
    routes: dict[str, Handler] = {"/robots.txt": NO_ROBOTS, "/api/story.json": raw(story_json(FIRST)),
                                  "/story": raw(shell())}
    root = tmp_path / "root"
    with RawServer(routes) as srv:
        routes["/feed.xml"] = raw(_ok(_feed([srv.url("/story")]), "application/rss+xml"))
        cfg = load_config(outlet_config(
            tmp_path / "c.yaml", root, [srv.url("/feed.xml")],
            extra=f"capture: {{mode: browser, browser: {{executable: {browser_path()}}}}}\nrefetch: {{after: [0s]}}\n"))
        first = asyncio.run(run_pass(cfg)).outlets[0]
        before = records(root)
        routes["/api/story.json"] = raw(story_json(later))
        seen = len(srv.requests)
        second = asyncio.run(run_pass(cfg)).outlets[0]
        asked = [h for h in srv.requests[seen:] if h.startswith((b"GET /story ", b"GET /api/story.json "))]
    return first, second, before, records(root), asked


def test_a_script_written_article_whose_json_changed_is_kept_again_linked_to_the_first(tmp_path: Path):
    first, second, before, after, asked = two_passes(tmp_path, LATER)
    assert first.archived == 1, first
    assert (second.refetched, second.updated, second.unchanged, second.archived) == (1, 1, 0, 0), second
    # the page is fetched whole (a 304 has nothing to render) and its JSON fetched again
    page_asks = [h for h in asked if h.startswith(b"GET /story ")]
    assert len(page_asks) == 1 and b"if-none-match" not in page_asks[0].lower()
    assert any(h.startswith(b"GET /api/story.json ") for h in asked)
    with Index.open(tmp_path / "root", readonly=True) as idx:
        old, new = [r for r in idx.captures(kind="article") if r.state == "archived"]
    assert new.previous_capture_id == old.id
    assert LATER in (tmp_path / "root" / new.text_path).read_text()
    doms = {r["to"]: r for r in after if r["type"] == "resource" and r["uri"].startswith("urn:dom:")}
    assert FIRST.encode() in doms[old.warc_record_id]["body"]
    assert LATER.encode() in doms[new.warc_record_id]["body"] and FIRST.encode() not in doms[new.warc_record_id]["body"]
    meta = next(dict(fields(r["body"])) for r in after
                if r["type"] == "metadata" and r["refers"] == new.warc_record_id and b"capture-mode" in r["body"])
    assert meta["previous-capture"] == old.warc_record_id and meta["capture-mode"] == "browser"
    assert len(after) > len(before)


def test_a_script_written_article_whose_json_is_the_same_is_recorded_unchanged(tmp_path: Path):
    first, second, before, after, asked = two_passes(tmp_path, FIRST)
    assert first.archived == 1, first
    assert (second.refetched, second.unchanged, second.updated, second.archived) == (1, 1, 0, 0), second
    assert any(h.startswith(b"GET /api/story.json ") for h in asked)  # rendered again to tell
    with Index.open(tmp_path / "root", readonly=True) as idx:
        rows = list(idx.captures(kind="article"))
        made = [r for r in idx.captures() if r.kind in ("dom", "screenshot", "requisite")]
    kept, revisit = rows
    assert revisit.state == "unchanged" and revisit.previous_capture_id == kept.id
    assert revisit.revisit_of == kept.warc_record_id
    assert {r.pass_id for r in made} == {kept.pass_id}  # nothing of the second render was kept
    new = after[len(before):]
    # of the page and its JSON only the page's revisit: no response, DOM, screenshot nor metadata
    assert sorted((r["type"], r["uri"]) for r in new if r["uri"] and "/story" in r["uri"]) == [
        ("request", kept.final_url), ("revisit", kept.final_url)], [(r["type"], r["uri"]) for r in new]
