"""The candidates of a pass on disk (archiver/lanes.py): read back whole and in order,
lane by lane, and gone once taken or dropped, so a long-running daemon's lanes stay empty
between passes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from archiver.config import load_config
from archiver.crawl import run_pass
from archiver.discover import Candidate
from archiver.index import Index
from archiver.lanes import BATCH, Lanes

from .localoutlet import outlet_config
from .rawserver import RawServer, raw


def _candidates(n: int, host: str) -> list[Candidate]:
    return [Candidate(f"http://{host}/a/{i}.html", f"http://{host}/sitemap.xml", "sitemap",
                      via_record_id=f"<urn:uuid:{i:08d}>", title=f"Title {i} — café", summary="s" * (i % 7),
                      published="2026-11-30T10:00:00Z" if i % 2 else "", frontier_id=i if i % 3 else None,
                      found_by="rematch" if i % 5 == 0 else "")
            for i in range(n)]


def _stored(lanes: Lanes) -> int:
    return lanes._db.execute("SELECT COUNT(*) FROM c").fetchone()[0]


def _pages(lanes: Lanes) -> int:
    return lanes._db.execute("SELECT COUNT(*) FROM k").fetchone()[0]


def test_a_lane_gives_back_every_candidate_whole_and_in_order():
    lanes = Lanes()
    given = _candidates(5 * BATCH + 3, "a.example")
    lane = lanes.lane()
    lane.add(given)
    assert len(lane) == len(given)
    taken = []
    while (c := lane.take()) is not None:
        taken.append(c)
        assert len(lane) == len(given) - len(taken)
    assert taken == given
    assert lane.take() is None
    assert _stored(lanes) == 0  # what was read back is not kept on disk either
    lanes.close()


def test_lanes_stay_apart_and_a_closed_lane_leaves_nothing():
    lanes = Lanes()
    a, b = lanes.lane(), lanes.lane()
    a.add(_candidates(100, "a.example"))
    b.add(_candidates(150, "b.example"))
    first = [a.take(), b.take(), a.take()]
    assert [c.url for c in first] == ["http://a.example/a/0.html", "http://b.example/a/0.html",
                                      "http://a.example/a/1.html"]
    a.close()  # a pass that stopped early (the disk filled up)
    assert len(a) == 0 and a.take() is None
    rest = []
    while (c := b.take()) is not None:
        rest.append(c.url)
    assert rest == [f"http://b.example/a/{i}.html" for i in range(1, 150)]
    b.close()
    assert _stored(lanes) == 0
    lanes.close()


def test_an_empty_lane_gives_nothing():
    lanes = Lanes()
    lane = lanes.lane()
    lane.add([])
    assert len(lane) == 0 and lane.take() is None
    lane.close()
    lanes.close()


def test_text_sqlite_cannot_store_comes_back_as_it_was():
    # a JSON feed's title may hold a lone surrogate; SQLite's UTF-8 cannot
    lanes = Lanes()
    odd = Candidate("http://a.example/x", "http://a.example/feed.json", "feed", title="broken \ud83d emoji",
                    summary="nul \x00 inside")
    lane = lanes.lane()
    lane.add([odd])
    assert lane.take() == odd
    lanes.close()


def test_candidates_given_after_some_were_taken_come_after_them():
    lanes = Lanes()
    lane = lanes.lane()
    first, later = _candidates(BATCH + 1, "a.example"), _candidates(3, "b.example")
    lane.add(first)
    taken = [lane.take() for _ in range(BATCH + 1)]  # the database's last rows are gone now
    lane.add(later)
    while (c := lane.take()) is not None:
        taken.append(c)
    assert taken == first + later
    lanes.close()


def test_a_database_that_cannot_be_written_costs_no_candidate():
    lanes = Lanes()
    lane = lanes.lane()
    lanes._db.close()  # as if the temporary directory had filled up
    given = _candidates(10, "a.example")
    lane.add(given)
    assert len(lane) == 10
    assert [lane.take() for _ in range(10)] == given
    assert lane.take() is None
    lane.close()


def test_a_lane_remembers_the_pages_its_pass_archived_and_forgets_them_when_closed():
    lanes = Lanes()
    a, b = lanes.lane(), lanes.lane()
    a.pages.add("http://a.example/story")
    a.pages.add("http://a.example/story")
    a.pages.add("http://a.example/caf\ud83d")  # a lone surrogate, as a JSON feed may give
    assert "http://a.example/story" in a.pages and "http://a.example/caf\ud83d" in a.pages
    assert "http://a.example/other" not in a.pages
    assert "http://a.example/story" not in b.pages  # each outlet pass has its own
    assert _pages(lanes) == 2
    a.close()
    assert "http://a.example/story" not in a.pages and _pages(lanes) == 0
    lanes.close()


def test_archived_pages_stay_in_memory_when_the_database_cannot_take_them():
    lanes = Lanes()
    lane = lanes.lane()
    lanes._db.close()  # as if the temporary directory had filled up
    lane.pages.add("http://a.example/story")
    assert "http://a.example/story" in lane.pages
    assert "http://a.example/other" not in lane.pages


def _page(title: str) -> bytes:
    body = (f"<!DOCTYPE html><html><head><title>{title}</title></head><body><article><h1>{title}</h1>"
            + "".join(f"<p>Paragraph {i} about Vietnam's diplomacy and its neighbours.</p>" for i in range(6))
            + "</article></body></html>").encode()
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def test_candidates_redirected_to_one_page_give_one_capture(tmp_path: Path):
    redirect = b"HTTP/1.1 301 Moved Permanently\r\nLocation: /story\r\nContent-Length: 0\r\n\r\n"
    routes = {"/robots.txt": raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
              "/story": raw(_page("Vietnam talks")), "/other": raw(_page("Vietnam trade")),
              "/s/1": raw(redirect), "/s/2": raw(redirect)}
    with RawServer(routes) as srv:
        items = "".join(f"<item><title>Story {p}</title><link>{srv.url(p)}</link></item>"
                        for p in ("/s/1", "/story", "/s/2", "/other"))
        routes["/feed.xml"] = raw(b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n\r\n"
                                  + f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{items}'
                                    f"</channel></rss>".encode())
        cfg = outlet_config(tmp_path / "c.yaml", tmp_path / "root", [srv.url("/feed.xml")])
        result = asyncio.run(run_pass(load_config(cfg)))
    with Index.open(tmp_path / "root", readonly=True) as idx:
        rows = list(idx.captures(kind="article"))
    archived = sorted(r.final_url for r in rows if r.state == "archived")
    assert archived == [srv.url("/other"), srv.url("/story")]
    dupes = [r for r in rows if r.state == "duplicate"]
    assert len(dupes) == 2 and {r.final_url for r in dupes} == {srv.url("/story")}
    assert result.outlets[0].archived == 2
