"""The candidates of a pass on disk (archiver/lanes.py): read back whole and in order,
lane by lane, and gone once taken or dropped, so a long-running daemon's lanes stay empty
between passes."""

from __future__ import annotations

from archiver.discover import Candidate
from archiver.lanes import BATCH, Lanes


def _candidates(n: int, host: str) -> list[Candidate]:
    return [Candidate(f"http://{host}/a/{i}.html", f"http://{host}/sitemap.xml", "sitemap",
                      via_record_id=f"<urn:uuid:{i:08d}>", title=f"Title {i} — café", summary="s" * (i % 7),
                      published="2026-11-30T10:00:00Z" if i % 2 else "", frontier_id=i if i % 3 else None,
                      found_by="rematch" if i % 5 == 0 else "")
            for i in range(n)]


def _stored(lanes: Lanes) -> int:
    return lanes._db.execute("SELECT COUNT(*) FROM c").fetchone()[0]


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
