"""A topic added later finds what was fetched before: `archiver rematch` and the daemon's reload.

A local outlet of 44 articles is crawled with topic `vietnam` only; then `ports` joins the
config. Its 33 articles were all fetched by the first crawl (30 off topic then, 3 archived
for vietnam). Before the rematch one of them is deleted and one revised, as happens.
"""

from __future__ import annotations

import asyncio
import html
from dataclasses import dataclass
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator

from archiver.config import load_config
from archiver.crawl import Pass, run_pass
from archiver.daemon import Daemon
from archiver.index import Index
from archiver.recover import open_archive
from archiver.rematch import changed_topics

from .conftest import invoke
from .localoutlet import outlet_config
from .rawserver import RawServer, raw

VIETNAM = "{name: vietnam, any: [Vietnam]}"
PORTS = "{name: ports, any: [harbour, container port]}"


@dataclass(frozen=True)
class Story:
    path: str
    title: str
    paragraphs: tuple[str, ...]


def _stories() -> tuple[list[Story], list[Story], list[Story], list[Story]]:
    """(vietnam only, vietnam and ports, ports only, neither)"""
    vietnam = [Story(f"/vn/{i}.html", f"Vietnam trade talks, day {i}",
                     (f"Negotiators from Vietnam met their counterparts for the {i}th round of talks on tariffs.",
                      "Officials said progress had been made on agricultural exports and on textiles.",
                      "A further round is planned for the autumn, after the budget is agreed."))
               for i in range(5)]
    both = [Story(f"/vn-port/{i}.html", f"Vietnam expands harbour number {i}",
                  (f"The government of Vietnam approved an expansion of harbour {i} near the river delta.",
                   "Dredging will deepen the approach channel so that larger ships can berth.",
                   "Work is due to start next year and to last three years, officials said."))
            for i in range(3)]
    ports = [Story(f"/port/{i}.html", f"New cranes for the harbour, phase {i}",
                   (f"The harbour board confirmed the delivery of crane set {i} for the eastern quay.",
                    "Dock workers said the new machines would cut loading times by a third.",
                    "The container port handled a record volume of freight last month."))
             for i in range(30)]
    neither = [Story(f"/city/{i}.html", f"City council debates bus lane {i}",
                     (f"Councillors spent the evening on bus lane {i} and the parking it would remove.",
                      "Shop owners on the street asked for a delay until after the holidays.",
                      "A decision is expected at the next meeting of the transport committee."))
               for i in range(6)]
    return vietnam, both, ports, neither


def _page(s: Story, extra: str = "") -> bytes:
    paras = "".join(f"<p>{html.escape(p)}</p>" for p in (*s.paragraphs, *([extra] if extra else [])))
    body = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(s.title)} | Test Times"
            f"</title><meta property='article:published_time' content='2025-06-14T08:00:00Z'></head><body>"
            f"<nav><a href='/'>Home</a> <a href='/city/'>City</a></nav><article><h1>{html.escape(s.title)}</h1>"
            f"{paras}</article><footer>Test Times, all rights reserved.</footer></body></html>").encode("utf-8")
    return _http(200, "OK", "text/html; charset=utf-8", body)


def _http(status: int, reason: str, ctype: str, body: bytes) -> bytes:
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode("ascii") + body


class Outlet:
    """The outlet on a RawServer: a feed of every story, each story a page."""

    def __init__(self) -> None:
        self.vietnam, self.both, self.ports, self.neither = _stories()
        self.stories = [*self.vietnam, *self.both, *self.ports, *self.neither]
        self.routes: dict = {}
        self.server = RawServer(self.routes)

    def __enter__(self) -> "Outlet":
        self.server.__enter__()
        items = "".join(f"<item><title>{html.escape(s.title)}</title><link>{self.url(s)}</link></item>"
                        for s in self.stories)
        feed = (f"<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>Test Times</title>"
                f"<link>{self.server.url('/')}</link>{items}</channel></rss>").encode("utf-8")
        self.routes["/feed.xml"] = raw(_http(200, "OK", "application/rss+xml", feed))
        for s in self.stories:
            self.routes[s.path] = raw(_page(s))
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    def url(self, s: Story) -> str:
        return self.server.url(s.path)

    def requests_for(self, s: Story) -> int:
        return sum(1 for head in self.server.requests if head.split(b" ", 2)[1].decode() == s.path)

    @property
    def ports_truth(self) -> set[str]:
        return {self.url(s) for s in (*self.both, *self.ports)}


def _config(path: Path, root: Path, o: Outlet, topics: list[str], keep_off_topic: bool = False) -> Path:
    outlet_config(path, root, [o.server.url("/feed.xml")], topics=f"[{', '.join(topics)}]")
    if keep_off_topic:
        path.write_text(path.read_text().replace(f"storage: {{root: {root}}}",
                                                 f"storage: {{root: {root}, keep_off_topic: true}}"))
    return path


def _metadata(root: Path) -> list[tuple[str, dict[str, str]]]:
    """(WARC-Refers-To, fields) of every metadata record, read back from the WARCs."""
    out = []
    for path in sorted((root / "warc").glob("*.warc.gz")):
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f, check_digests=True):
                if rec.rec_type == "metadata":
                    lines = rec.content_stream().read().decode("utf-8").splitlines()
                    fields: dict[str, str] = {}
                    for line in lines:
                        k, _, v = line.partition(": ")
                        fields.setdefault(k, v)
                    out.append((rec.rec_headers.get_header("WARC-Refers-To"), fields))
    return out


def _payloads(root: Path) -> dict[str, bytes]:
    """WARC-Record-ID -> payload of every response record."""
    out = {}
    for path in sorted((root / "warc").glob("*.warc.gz")):
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f, check_digests=True):
                if rec.rec_type == "response":
                    out[rec.rec_headers.get_header("WARC-Record-ID")] = rec.content_stream().read()
    return out


def _archived_under(root: Path, topic: str) -> dict[str, list]:
    with Index.open(root, readonly=True) as idx:
        rows = [r for r in idx.captures(kind="article", state="archived") if topic in r.topics]
    out: dict[str, list] = {}
    for r in rows:
        out.setdefault(r.final_url, []).append(r)
    return out


def test_a_topic_added_later_is_found_among_pages_fetched_before(tmp_path: Path):
    root = tmp_path / "archive"
    with Outlet() as o:
        cfg_path = _config(tmp_path / "c.yaml", root, o, [VIETNAM])
        first = invoke("crawl", "--config", str(cfg_path), "--no-progress")
        assert first.returncode == 0, first.stderr
        with Index.open(root, readonly=True) as idx:
            rows = {r.id: r for r in idx.captures(kind="article")}
            assert {r.state for r in rows.values()} == {"archived", "off_topic"}
            # every page fetched left what it said, kept or not
            stored = list(idx.page_texts(idx.page_text_ids(["x"])))
        assert len(stored) == len(o.stories) == len(rows)
        by_url = {r.final_url: (r, page) for r, page in stored}
        off, page = by_url[o.url(o.ports[0])]
        assert off.state == "off_topic" and not off.warc_file
        assert page.title == o.ports[0].title and o.ports[0].paragraphs[1] in page.text
        assert page.published == "2025-06-14T08:00:00Z"
        assert not _archived_under(root, "ports")

        # the outlet goes on: one story deleted, one revised; and the config gains a topic
        gone, revised = o.ports[7], o.ports[12]
        o.routes[gone.path] = raw(_http(404, "Not Found", "text/html", b"gone"))
        o.routes[revised.path] = raw(_page(revised, "Revised: the harbour board has since approved a second quay."))
        _config(cfg_path, root, o, [VIETNAM, PORTS])
        before = {s.path: o.requests_for(s) for s in o.stories}

        ran = invoke("rematch", "--config", str(cfg_path), "--no-progress")
        assert ran.returncode == 0, ran.stderr
        assert "tested 44, now matching 33, fetched 29, promoted 3, failed 1" in ran.stdout
        assert f"{o.url(gone)}: failed: HTTP 404 Not Found" in ran.stdout

        archived = _archived_under(root, "ports")
        found = set(archived) & o.ports_truth
        assert len(found) >= 0.95 * len(o.ports_truth)
        assert found == o.ports_truth - {o.url(gone)}
        # archived under vietnam already: given the topic from the WARC, never fetched again
        for s in o.both:
            assert o.requests_for(s) == before[s.path] == 1
            (row,) = archived[o.url(s)]
            assert row.topics == ["vietnam", "ports"] and row.matched["harbour"] == ["page_title", "body"]
        # the pages that were off topic: fetched once more, the current version archived
        for s in o.ports:
            assert o.requests_for(s) == 2
        assert not [s for s in (*o.vietnam, *o.neither) if o.requests_for(s) != before[s.path]]

        meta = _metadata(root)
        payloads = _payloads(root)
        for s in o.ports:
            if s is gone:
                continue
            (row,) = archived[o.url(s)]
            earlier, _ = by_url[o.url(s)]
            (fields,) = [f for ref, f in meta if ref == row.warc_record_id and "found-by" in f]
            assert fields["found-by"] == (f"rematch of capture {earlier.id} ({earlier.final_url}) "
                                          f"first fetched {earlier.fetched_at}")
            assert fields["via-kind"] == "rematch" and fields["via"] == o.server.url("/feed.xml")
            assert fields["topics"] == "ports"
            assert row.discovered_via_url == o.server.url("/feed.xml")
            assert (b"a second quay" in payloads[row.warc_record_id]) == (s is revised)
        for s in o.both:
            (row,) = archived[o.url(s)]
            (fields,) = [f for ref, f in meta if ref == row.warc_record_id and "found-by" in f]
            assert fields["found-by"] == (f"rematch of capture {row.id} ({row.warc_record_id}) "
                                          f"first fetched {row.fetched_at}")
            assert fields["topics-added"] == "ports" and fields["topics"] == "vietnam, ports"

        # nothing is new the second time: the deleted page waits out its 404, nothing is fetched
        requests = len(o.server.requests)
        again = invoke("rematch", "--config", str(cfg_path), "--no-progress")
        assert again.returncode == 0, again.stderr
        assert "fetched 0, promoted 0, failed 0" in again.stdout
        assert len(o.server.requests) == requests
        assert {u: len(rs) for u, rs in _archived_under(root, "ports").items()} == {u: 1 for u in found}


def test_pages_kept_off_topic_are_promoted_from_the_warc_without_a_fetch(tmp_path: Path):
    root = tmp_path / "archive"
    with Outlet() as o:
        cfg_path = _config(tmp_path / "c.yaml", root, o, [VIETNAM], keep_off_topic=True)
        assert asyncio.run(run_pass(load_config(cfg_path))).outlets[0].archived == len(o.stories)
        requests = len(o.server.requests)
        _config(cfg_path, root, o, [VIETNAM, PORTS], keep_off_topic=True)
        ran = invoke("rematch", "--config", str(cfg_path), "--topic", "ports", "--no-progress")
        assert ran.returncode == 0, ran.stderr
        assert "tested 44, now matching 33, fetched 0, promoted 33, failed 0" in ran.stdout
        assert len(o.server.requests) == requests
    archived = _archived_under(root, "ports")
    assert set(archived) == o.ports_truth
    meta = _metadata(root)
    for url, (row,) in archived.items():
        (fields,) = [f for ref, f in meta if ref == row.warc_record_id and "found-by" in f]
        assert fields["found-by"].startswith(f"rematch of capture {row.id} ({row.warc_record_id}) first fetched ")
        assert row.text_path and (root / row.text_path).read_text().startswith(row.title)


def test_a_reload_that_adds_a_topic_rematches_only_that_topic(tmp_path: Path):
    root = tmp_path / "archive"
    with Outlet() as o:
        cfg_path = _config(tmp_path / "c.yaml", root, o, [VIETNAM])
        asyncio.run(run_pass(load_config(cfg_path)))

        async def daemon_reloads() -> tuple[bool, bool]:
            d = Daemon(cfg_path)
            d.index = open_archive(d.cfg)
            d.crawler = Pass(d.cfg, d.index)
            try:
                assert d.reload() and d.rematching is None  # the same topics: nothing to test
                _config(cfg_path, root, o, [VIETNAM, PORTS])
                assert d.reload()
                started = d.rematching
                assert started is not None
                await asyncio.wait_for(started, 60)
                return started.done(), d.reload() and d.rematching is started  # again unchanged
            finally:
                await d.crawler.aclose()
                d.index.close()

        done, unchanged = asyncio.run(daemon_reloads())
        assert done and unchanged
        # what a reload asks for: the topics added, or defined otherwise, for the outlets following them
        old = load_config(_config(tmp_path / "old.yaml", root, o, [VIETNAM]))
        assert changed_topics(old, load_config(cfg_path)) == {"x": {"ports"}}
        wider = load_config(_config(tmp_path / "wider.yaml", root, o, ["{name: vietnam, any: [Vietnam, Hanoi]}"]))
        assert changed_topics(old, wider) == {"x": {"vietnam"}}
        assert changed_topics(old, old) == {}
        # only the new topic was tested: vietnam's pages are not fetched twice
        assert all(o.requests_for(s) == 1 for s in (*o.vietnam, *o.both, *o.neither))
    archived = _archived_under(root, "ports")
    assert len(set(archived) & o.ports_truth) >= 0.95 * len(o.ports_truth)
    assert all(len(rows) == 1 for rows in archived.values())
    assert sum(1 for _, f in _metadata(root) if f.get("found-by", "").startswith("rematch of capture ")) == 33


def test_a_rematch_asked_for_an_unknown_topic_or_time_says_which(tmp_path: Path):
    root = tmp_path / "archive"
    with Outlet() as o:
        cfg_path = _config(tmp_path / "c.yaml", root, o, [VIETNAM, PORTS])
        bad_topic = invoke("rematch", "--config", str(cfg_path), "--topic", "port")
        bad_since = invoke("rematch", "--config", str(cfg_path), "--since", "last week")
    assert bad_topic.returncode == 1
    assert "--topic 'port'" in bad_topic.stderr and "defined: vietnam, ports" in bad_topic.stderr
    assert bad_since.returncode == 1 and "--since 'last week' is not a date or time" in bad_since.stderr
