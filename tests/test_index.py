"""The index on SQLite and on PostgreSQL: one schema through migrations, the same answers."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from archiver.config import load_config
from archiver.crawl import run_pass
from archiver.index import ARCHIVED, CaptureRow, Index, PassCounts, current_revision
from archiver.schema import HEAD

from .conftest import write_config


def _row(url: str, state: str = ARCHIVED) -> CaptureRow:
    return CaptureRow(outlet="o", kind="article", state=state, url=url, fetched_at="2026-01-01T00:00:00.000000Z",
                      topics=["t"], matched={"blinken": ["body"]}, warc_file="a.warc.gz", warc_offset=0, warc_length=10)


def test_an_index_from_before_migrations_is_brought_up_to_date_with_its_rows(tmp_path: Path):
    # the first schema single-machine archives were written with, as its CREATE statements had it
    conn = sqlite3.connect(tmp_path / "index.sqlite3")
    conn.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE passes (id INTEGER PRIMARY KEY, outlet TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT,
            software TEXT NOT NULL, config_sha256 TEXT NOT NULL, counts TEXT, error TEXT);
        CREATE TABLE captures (id INTEGER PRIMARY KEY, pass_id INTEGER, outlet TEXT NOT NULL, kind TEXT NOT NULL,
            state TEXT NOT NULL, url TEXT NOT NULL, final_url TEXT, status INTEGER, fetched_at TEXT NOT NULL,
            discovered_via_url TEXT, discovered_via_record_id TEXT, topics TEXT NOT NULL DEFAULT '[]',
            matched TEXT NOT NULL DEFAULT '{}', warc_file TEXT, warc_offset INTEGER, warc_length INTEGER,
            warc_record_id TEXT, request_record_id TEXT, conversion_record_id TEXT, metadata_record_id TEXT,
            redirect_record_ids TEXT NOT NULL DEFAULT '[]', payload_digest TEXT, content_type TEXT, truncated TEXT,
            ip_address TEXT, title TEXT, byline TEXT, published TEXT, language TEXT, text_path TEXT, text_sha256 TEXT,
            page_text_path TEXT, page_text_sha256 TEXT, extractor TEXT, extractor_version TEXT, renderer TEXT,
            error TEXT);
        INSERT INTO captures(outlet, kind, state, url, final_url, fetched_at, topics)
            VALUES ('o', 'article', 'archived', 'http://x/1', 'http://x/1', '2025-01-01T00:00:00Z', '["t"]');
    """)
    conn.commit()
    conn.close()
    with Index.open(tmp_path) as idx:
        assert current_revision(idx) == HEAD
        old = list(idx.captures())
        assert [r.url for r in old] == ["http://x/1"] and old[0].topics == ["t"] and old[0].etag is None
        idx.add(_row("http://x/2"))
        assert idx.known_articles("o") == {"http://x/1", "http://x/2"}
    with Index.open(tmp_path, readonly=True) as idx:
        assert [r.url for r in idx.captures()] == ["http://x/1", "http://x/2"]


def _schema(engine) -> dict:
    """Every table's columns, keys, indexes and version stamp, as the database reports them."""
    from sqlalchemy import inspect, text

    insp = inspect(engine)
    out = {}
    for t in sorted(insp.get_table_names()):
        out[t] = ([(c["name"], str(c["type"]), c["nullable"], str(c.get("default"))) for c in insp.get_columns(t)],
                  insp.get_pk_constraint(t)["constrained_columns"],
                  sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(t)),
                  sorted((u["name"], tuple(u["column_names"])) for u in insp.get_unique_constraints(t)))
    with engine.connect() as c:
        out["version"] = c.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return out


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_new_index_has_the_schema_the_migrations_build(backend, request, tmp_path: Path):
    # a new index is created from schema.py without Alembic; it must be the one the migrations make
    from sqlalchemy import create_engine

    from archiver.index import migrate, run_migrations

    if backend == "sqlite":
        urls = [f"sqlite:///{tmp_path / 'direct.sqlite3'}", f"sqlite:///{tmp_path / 'migrated.sqlite3'}"]
    else:
        pg = request.getfixturevalue("postgres")
        urls = [pg.new_database(), pg.new_database()]
    direct, migrated = (create_engine(u) for u in urls)
    assert migrate(direct) is None
    with migrated.begin() as c:
        run_migrations(c, None)
    try:
        assert _schema(direct) == _schema(migrated)
        assert _schema(direct)["version"] == HEAD and "frontier" in _schema(direct)
    finally:
        direct.dispose()
        migrated.dispose()


def test_a_bad_index_url_is_named_without_its_password(tmp_path: Path):
    from archiver.errors import StorageError

    with pytest.raises(StorageError) as e:
        Index.open(tmp_path, url="postgresql://archiver:s3cret@127.0.0.1:1/archiver")
    assert "s3cret" not in str(e.value) and "127.0.0.1:1" in str(e.value)


def test_postgres_and_sqlite_indexes_answer_alike(postgres, tmp_path: Path):
    url = postgres.new_database()
    answers = []
    for where in (None, url):
        with Index.open(tmp_path / ("pg" if where else "lite"), url=where) as idx:
            assert current_revision(idx) == HEAD
            pid = idx.start_pass("o", "2026-01-01T00:00:00Z", "archiver/test", "0" * 64)
            ids = [idx.add(_row(f"http://x/{i}")) for i in range(3)]
            idx.record_pass(pid, PassCounts(archived=3), None, ended_at="2026-01-01T00:01:00Z")
            idx.delete_captures(ids[:1])
            answers.append((ids[1] - ids[0], idx.known_articles("o"), [(r.url, r.matched) for r in idx.captures()],
                            idx.latest("http://x/2", ("article",)) is None,
                            idx.passes()))
    assert answers[0] == answers[1]
    # a second writer on a database already at the newest schema changes nothing
    with Index.open(tmp_path, url=url) as idx:
        assert len(list(idx.captures())) == 2
    assert postgres.psql("SELECT version_num FROM alembic_version", url.rsplit("/", 1)[1]).strip() == HEAD


def test_a_pass_writes_its_provenance_to_postgres(postgres, site, tmp_path: Path):
    url = postgres.new_database()
    path = write_config(site, tmp_path / "archive")
    path.write_text(path.read_text().replace("storage:\n", f"index:\n  url: {url}\nstorage:\n", 1))
    cfg = load_config(path)
    assert cfg.config.index.url == url
    result = asyncio.run(run_pass(cfg))
    assert sum(s.archived for s in result.outlets) > 0
    assert not (tmp_path / "archive" / "index.sqlite3").exists()  # nothing went to SQLite
    with Index.open(cfg.storage_root, readonly=True, url=url) as idx:
        kept = [r for r in idx.captures(kind="article", state=ARCHIVED)]
    assert len(kept) == sum(s.archived for s in result.outlets)
    assert all(r.warc_file and (cfg.storage_root / r.warc_file).exists() for r in kept)


def test_a_scaled_pass_records_its_discovery_counts_then_its_outcomes_and_nothing_it_did_not_count(tmp_path: Path):
    with Index.open(tmp_path) as idx:
        pid = idx.start_pass("o", "2026-01-01T00:00:00Z", "archiver/test", "0" * 64)
        assert idx.passes(open_only=True)[0].counts is None  # not discovered yet
        idx.record_pass(pid, PassCounts(discovered=3, skipped_known=1), None)
        for url, state in (("http://x/1", ARCHIVED), ("http://x/2", "failed"), ("http://x/3", "robots")):
            row = _row(url, state)
            row.pass_id = pid
            idx.add(row)
        opened = idx.get_pass(pid)
        assert opened is not None and opened.ended_at is None and opened.counts is not None
        idx.record_pass(pid, opened.counts.merged(idx.pass_summary(pid)), None, ended_at="2026-01-01T00:05:00Z")
        assert idx.passes(open_only=True) == []
    # `archiver status` and older readers see the JSON object they always did: no empty names
    recorded = sqlite3.connect(tmp_path / "index.sqlite3").execute("SELECT counts FROM passes").fetchone()[0]
    assert json.loads(recorded) == {"discovered": 3, "skipped_known": 1, "archived": 1, "failed": 1, "robots": 1,
                                    "blocked": 0, "off_topic": 0, "duplicate": 0, "fetched": 2}


def test_a_frontier_read_of_a_broken_database_fails_naming_the_index(tmp_path: Path):
    from archiver.errors import StorageError
    from archiver.scale import frontier

    with Index.open(tmp_path) as idx:
        conn = sqlite3.connect(tmp_path / "index.sqlite3")
        conn.execute("DROP TABLE frontier")
        conn.commit()
        conn.close()
        for read in (lambda: frontier.unsettled(idx, 1), lambda: frontier.open_counts(idx, [1]),
                     lambda: frontier.is_settled(idx, 1)):
            with pytest.raises(StorageError, match=f"cannot read index {tmp_path / 'index.sqlite3'}: no such table"):
                read()


def test_what_a_pass_asks_of_its_candidates_is_what_the_whole_outlet_would_answer(tmp_path: Path):
    from datetime import datetime, timezone

    from archiver.index import DUPLICATE, FAILED, OFF_TOPIC

    with Index.open(tmp_path) as idx:
        for i in range(1000):  # more than one IN (...) of URLs
            state = (ARCHIVED, OFF_TOPIC, DUPLICATE, FAILED)[i % 4]
            row = _row(f"http://x/{i}", state)
            row.final_url = f"http://x/final/{i}" if i % 10 == 0 else row.url
            row.status = 404 if state == FAILED else 200
            if state == FAILED:  # just now: a 404 is not asked again for a while
                row.fetched_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            idx.add(row)
        idx.add(CaptureRow(outlet="other", kind="article", state=ARCHIVED, url="http://x/elsewhere",
                           fetched_at="2026-01-01T00:00:00.000000Z", warc_file="a.warc.gz"))
        candidates = [f"http://x/{i}" for i in range(0, 1200, 3)] + [f"http://x/final/{i}" for i in range(0, 1000, 20)]
        candidates += ["http://x/elsewhere", "http://x/3", "http://x/3"]  # another outlet's; asked twice
        known = idx.known_articles("o")
        assert len(known) == 750 + 100  # settled rows' URLs, and the final URLs that differ
        assert idx.known_articles("o", candidates) == known.intersection(candidates)
        assert "http://x/final/20" in idx.known_articles("o", candidates)  # found by where it led
        assert idx.known_articles("o", []) == set()
        now = datetime.now(timezone.utc)
        waiting = idx.failures_not_due("o", now)
        assert len(waiting) == 250
        assert idx.failures_not_due("o", now, candidates) == waiting.intersection(candidates) != set()


def test_candidate_lists_of_every_length_are_asked_in_a_few_statement_shapes(tmp_path: Path):
    # SQLite prepares, and Python's sqlite3 keeps (128 a connection), a statement per SQL
    # text; a text per list length held megabytes after a few passes over many outlets
    from datetime import datetime, timezone

    from sqlalchemy import event

    texts: set[str] = set()
    with Index.open(tmp_path) as idx:
        for i in range(10):
            idx.add(_row(f"http://x/{i}"))
        event.listen(idx.engine, "before_cursor_execute", lambda conn, cur, sql, *a: texts.add(sql))
        now = datetime.now(timezone.utc)
        for n in range(1, 901):
            urls = [f"http://x/{i}" for i in range(n)]
            assert idx.known_articles("o", urls) == {f"http://x/{i}" for i in range(min(n, 10))}
            assert idx.failures_not_due("o", now, urls) == set()
    asked = [t for t in texts if " IN (" in t]
    assert 2 <= len(asked) <= 2 * 8, len(asked)  # two queries, each in at most 8 shapes (one per length: 800)


def test_an_in_list_is_padded_with_its_last_value_to_a_few_lengths():
    from archiver.index.inlists import chunks, padded

    assert padded([], 400) == []
    assert padded([1, 2, 3], 400) == [1, 2, 3, 3, 3, 3, 3, 3]
    assert [len(padded(list(range(n)), 400)) for n in (8, 9, 17, 129, 257, 400)] == [8, 16, 32, 256, 400, 400]
    got = list(chunks(list(range(1000)), 400))
    assert [len(c) for c in got] == [400, 400, 256]
    assert list(dict.fromkeys(v for c in got for v in c)) == list(range(1000))
    with pytest.raises(ValueError, match="401 values is over its limit of 400"):
        padded(list(range(401)), 400)


def test_asking_about_a_few_candidates_costs_the_same_however_large_the_outlets_archive(tmp_path: Path):
    from datetime import datetime, timezone

    from sqlalchemy import event

    def work(archive: int) -> int:
        """SQLite's virtual-machine steps (counted 100 at a time) to answer for 20 candidates."""
        steps = [0]
        with Index.open(tmp_path / str(archive)) as idx:
            for i in range(archive):
                idx.add(_row(f"http://x/{i}"))

            def count() -> int:
                steps[0] += 1
                return 0

            event.listen(idx.engine, "connect", lambda conn, _: conn.set_progress_handler(count, 100))
            idx.engine.dispose()  # connections from now on count
            candidates = [f"http://x/{i}" for i in range(0, 40, 2)] + ["http://x/new"]
            assert idx.known_articles("o", candidates) == set(candidates[:-1])
            assert idx.failures_not_due("o", datetime.now(timezone.utc), candidates) == set()
        return steps[0]

    small, large = work(100), work(4000)
    assert large < 2 * small + 10, (small, large)  # read by URL, not the outlet's 4,000 rows
