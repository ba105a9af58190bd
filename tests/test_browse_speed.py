"""Browse pages cost what they must and no more, judged by the work done, not by the clock.

bench/browse.py times every kind of page of `archiver serve` on a 10,000-capture archive.
Two costs it found are pinned here:

- The listening sockets: made by socket.create_server they say protocol 0, and asyncio
  (which uvicorn serves them with) turns Nagle's algorithm off only on connections of a
  socket that says IPPROTO_TCP. With it on, every response written in two parts (head, then
  body) waited for the browser's delayed ACK: some 40 ms added to every page of both origins.
- Repeated words in a search: each occurrence was a term of its own in the FTS5 expression,
  so a pasted text repeating "the" a hundred times did a hundred times the work of one "the"
  (over 2 s on that archive, then stopped with a message), for the same results.
- Snippets of a long query: snippet() costs about the square of its terms' occurrences in a
  text, and runs inside one SQLite call that the search's time limit does not interrupt, so
  snippets are cut around the query's longest words only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import socket
from pathlib import Path

import pytest

from archiver.web import search
from archiver.web.app import _listen
from archiver.errors import ArchiverError
from archiver.web.search import Query, SearchIndex, fts_query


def _accepted_nodelay(listener: socket.socket) -> int:
    """TCP_NODELAY of a connection accepted on `listener` the way uvicorn serves the sockets
    it is given (asyncio's loop.create_server(sock=...))."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        accepted: asyncio.Future[int] = loop.create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        server = await loop.create_server(Probe, sock=listener)
        async with server:
            host, port = listener.getsockname()[:2]
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
            try:
                return await asyncio.wait_for(accepted, 5)
            finally:
                writer.close()

    return asyncio.run(main())


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_every_connection_to_the_listeners_sends_without_waiting_for_acks(host: str):
    try:
        listener = _listen(host, 0, "the browse UI")
    except ArchiverError as e:
        if ":" in host:
            pytest.skip(f"no IPv6 loopback here: {e}")
        raise
    assert listener.proto == socket.IPPROTO_TCP
    assert _accepted_nodelay(listener) != 0


def test_a_listener_on_a_taken_port_names_it():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ArchiverError, match=f"cannot listen on 127.0.0.1:{port} for replay"):
            _listen("127.0.0.1", port, "replay (--replay-port)")


def test_the_search_expression_has_each_term_once():
    assert fts_query('The the "of the" THE "Of  the" Manila the') == '"The" AND "of the" AND "Manila"'
    # a phrase that repeats a word asks for the repetition: it is not shortened
    assert fts_query('"the the" the') == '"the the" AND "the"'


@pytest.fixture(scope="module")
def searchable(tmp_path_factory) -> SearchIndex:
    """A search cache of 200 articles of ordinary prose (every one has "the" many times)."""
    root: Path = tmp_path_factory.mktemp("search")
    rng = random.Random(5)
    vocabulary = ["the"] * 12 + ["of", "and", "to", "said", "minister", "talks", "Manila", "Hanoi", "trade", "port",
                                 "ministers", "agreed", "on", "a", "new", "deal", "after", "months"]
    si = SearchIndex(root)
    with si.conn:
        for i in range(1, 201):
            title = f"Article {i} on {rng.choice(vocabulary[12:])}"
            body = " ".join(rng.choice(vocabulary) for _ in range(200))
            si.conn.execute("INSERT INTO docs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (i, f"http://127.0.0.1/a/{i}", None, title, "o", json.dumps(["t"]),
                             f"2026-12-01T10:{i // 60:02d}:{i % 60:02d}Z", f"http://127.0.0.1/a/{i}", None))
            si.conn.execute("INSERT INTO fts(rowid, title, body) VALUES (?, ?, ?)", (i, title, body))
            si.conn.execute("INSERT INTO doc_topics VALUES (?, ?)", (i, "t"))
    yield si
    si.close()


_DEADLINE = search._deadline


def _statements(monkeypatch: pytest.MonkeyPatch, si: SearchIndex, q: str) -> tuple[list[str], int, list[int]]:
    """(the SQL statements the search ran, with their values; total; capture ids shown). The
    work of a search is in them: FTS5 ranks and cuts snippets per term of the MATCH
    expression, inside single function calls that SQLite's step counters do not see."""
    ran: list[str] = []

    @contextlib.contextmanager
    def traced(conn, seconds, what):
        conn.set_trace_callback(ran.append)
        try:
            with _DEADLINE(conn, seconds, what):
                yield
        finally:
            conn.set_trace_callback(None)

    monkeypatch.setattr(search, "_deadline", traced)
    res = si.search(Query(q=q))
    return [sql for sql in ran if " MATCH " in sql], res.total, [h.capture_id for h in res.hits]


def test_a_word_repeated_a_hundred_times_is_searched_once(searchable: SearchIndex, monkeypatch):
    once = _statements(monkeypatch, searchable, "the")
    assert once[1] == 200 and len(once[2]) == 20
    assert sum('"the"' in sql for sql in once[0]) == 4  # count, ranked URLs, their versions, snippets
    # the same statements, so the same work, and the same answer
    assert _statements(monkeypatch, searchable, " ".join(["the", "The", "THE"] * 33)) == once

    pasted = "the minister said the talks on the port"
    assert _statements(monkeypatch, searchable, " ".join([pasted] * 6)) == _statements(monkeypatch, searchable, pasted)


def test_snippets_of_a_pasted_paragraph_are_cut_around_its_longest_words(searchable: SearchIndex, monkeypatch):
    pasted = "the minister said the talks on the port of Manila and Hanoi agreed on a new trade deal after months"
    ran, total, shown = _statements(monkeypatch, searchable, pasted)
    matched = [re.search(r"MATCH '([^']*)'", sql).group(1) for sql in ran]
    count, ranked, versions, snippets = matched
    # every word still has to occur and still ranks ...
    assert count == ranked == versions == fts_query(pasted) and count.count(" AND ") == 16
    assert total > 0 and shown
    # ... while snippets are cut around (and highlight) the 8 longest: a snippet's cost is
    # about the square of its terms' occurrences, in a call the time limit cannot stop
    assert snippets == ('"minister" AND "talks" AND "Manila" AND "Hanoi" AND "agreed" AND "trade" AND "after" '
                        'AND "months"')
    hits = searchable.search(Query(q=pasted)).hits
    assert [h.capture_id for h in hits] == shown
    marked = {m.lower() for h in hits for m in re.findall(r"<mark>(\w+)</mark>", h.snippet_html)}
    assert marked and marked <= {"minister", "talks", "manila", "hanoi", "agreed", "trade", "after", "months"}
