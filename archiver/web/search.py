"""Full-text search over archived articles: SQLite FTS5, derived from the provenance index.

The search database is a cache: every row in it is rebuilt from the index and the extracted
text files (or, when a text file is gone, re-derived from its WARC record), so it can be
deleted at any time. It lives at `<storage root>/search.sqlite3`; when the storage root is
read-only (a copied archive, the browse container's read-only volume) it goes to a cache
folder instead. `sync()` adds captures archived since the last call, so a browser running
beside the daemon sees new articles without a restart.

Results are articles, not captures: the versions of one URL that match (its captures, by
the address each was fetched from) are one hit, shown by its newest matching version, with
every matching version listed newest first.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import logging
import os
import re
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from itertools import islice
from pathlib import Path
from typing import Any, Iterator

from ..errors import SearchError
from ..index import ARCHIVED, Index
from ..pubdate import published_at
from .permalink import address

log = logging.getLogger(__name__)

SEARCH_FILE = "search.sqlite3"
# bump when the schema or what goes into it changes: an older cache is then rebuilt
SEARCH_VERSION = "3"  # 2: article texts indexed up to MAX_INDEXED_CHARS; 3: page and published
PAGE_SIZE = 20
MAX_QUERY_CHARS = 500  # of the search terms; no headline needs more
MAX_PAGE = 10_000
# of each article's text that is searchable: FTS5's snippet() costs about the square of a
# text's matches, so one 2 MB "article" would make every search that finds it take seconds;
# 100,000 characters (some 15,000 words) is more than news articles run to
MAX_INDEXED_CHARS = 100_000
SEARCH_SECONDS = 2.0  # a query still running then is interrupted (see _deadline)
# of a query's terms, the most that snippets are cut around and highlight (the longest: see
# snippet_query)
SNIPPET_TERMS = 8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS docs (
    capture_id INTEGER PRIMARY KEY,
    url TEXT NOT NULL,
    final_url TEXT,
    title TEXT,
    outlet TEXT NOT NULL,
    topics TEXT NOT NULL,
    fetched_at TEXT NOT NULL,
    page TEXT NOT NULL,  -- what versions are grouped by: the address fetched (final_url, else url)
    published TEXT  -- the publication date in ISO 8601 (archiver.pubdate), NULL when none is known
);
CREATE TABLE IF NOT EXISTS doc_topics (capture_id INTEGER NOT NULL, topic TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS doc_topics_topic ON doc_topics(topic, capture_id);
CREATE INDEX IF NOT EXISTS docs_outlet ON docs(outlet, fetched_at);
CREATE INDEX IF NOT EXISTS docs_fetched ON docs(fetched_at);
CREATE INDEX IF NOT EXISTS docs_page ON docs(page, fetched_at);
CREATE INDEX IF NOT EXISTS docs_published ON docs(published);
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(title, body, tokenize = 'unicode61 remove_diacritics 2');
"""

# snippet() markers: control characters never found in extracted text, so the snippet can be
# HTML-escaped first and the markers turned into <mark> afterwards
_OPEN, _CLOSE = "\x02", "\x03"


@dataclass
class Query:
    q: str = ""
    topic: str | None = None
    outlet: str | None = None
    since: str | None = None
    until: str | None = None
    published_from: str | None = None  # YYYY-MM-DD, publication dates on or after it
    published_to: str | None = None  # YYYY-MM-DD, on or before it
    sort: str = "relevance"  # relevance | date
    page: int = 1


@dataclass(frozen=True)
class Version:
    capture_id: int
    fetched_at: str


@dataclass
class Hit:
    capture_id: int  # the newest matching version
    url: str
    final_url: str | None
    title: str
    outlet: str
    topics: list[str]
    fetched_at: str
    published: str | None
    snippet: str  # plain text
    snippet_html: str  # HTML-escaped, matches in <mark>
    versions: list[Version] = field(default_factory=list)  # every matching version, newest first

    def public(self) -> dict[str, Any]:
        return {"url": self.url, "final_url": self.final_url, "title": self.title, "outlet": self.outlet,
                "topics": self.topics, "fetched_at": self.fetched_at, "published_at": self.published,
                "snippet": self.snippet, "capture_id": self.capture_id,
                "versions": [{"capture_id": v.capture_id, "fetched_at": v.fetched_at} for v in self.versions]}


@dataclass
class Results:
    hits: list[Hit] = field(default_factory=list)
    total: int = 0
    page: int = 1
    pages: int = 0


def fts_query(text: str) -> str:
    """A user's words as an FTS5 expression: every word must occur; "quoted phrases" stay
    phrases; FTS5 operators and punctuation typed by the user are taken as plain words."""
    return " AND ".join(_terms(text))


def snippet_query(text: str) -> str:
    """The FTS5 expression snippets are cut around: the query's SNIPPET_TERMS longest terms
    (long words are the rare ones), in the query's order. snippet() costs about the square of
    its terms' occurrences in a text, inside one SQLite call that the search's time limit
    cannot stop: the snippets of a pasted paragraph of some 50 distinct words cost 10 times
    those of its 8 longest (up to 140 ms against 10 ms on the bench archive), and more in longer
    texts. Rows that match every term match these too."""
    terms = _terms(text)
    keep = set(sorted(range(len(terms)), key=lambda i: (-len(terms[i]), i))[:SNIPPET_TERMS])
    return " AND ".join(t for i, t in enumerate(terms) if i in keep)


def _terms(text: str) -> list[str]:
    parts = re.findall(r'"([^"]*)"|(\S+)', text)
    terms: dict[str, str] = {}
    for phrase, word in parts:
        words = re.findall(r"\w+", phrase or word)
        if words:
            term = '"' + " ".join(words) + '"'
            # each term once (the tokenizer folds case): every term must occur anyway, and
            # FTS5 does a term's work again for each time it is named, in ranking and
            # snippets too, where the search's time limit cannot stop it
            terms.setdefault(term.casefold(), term)
    return list(terms.values())


def _cache_path(storage_root: Path) -> Path:
    """Where the search cache goes when the storage root cannot be written to."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha256(str(storage_root.resolve()).encode()).hexdigest()[:16]
    for folder in (base / "archiver", Path(tempfile.gettempdir()) / "archiver-search"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if os.access(folder, os.W_OK):
                return folder / f"search-{key}.sqlite3"
        except OSError:
            continue
    raise SearchError(f"no writable place for the search cache of {storage_root}")


def search_path(storage_root: Path) -> Path:
    here = storage_root / SEARCH_FILE
    if os.access(storage_root, os.W_OK) and (not here.exists() or os.access(here, os.W_OK)):
        return here
    return _cache_path(storage_root)


class SearchIndex:
    def __init__(self, storage_root: Path, path: Path | None = None):
        self.storage_root = storage_root
        self.path = path or search_path(storage_root)
        self._readers: list[sqlite3.Connection] = []  # idle ones
        self._readers_lock = threading.Lock()
        try:
            self.conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            have = self._version()
            if have is not None and have != SEARCH_VERSION:
                log.info("search cache %s is version %s; rebuilding", self.path, have)
                self.conn.executescript("DROP TABLE IF EXISTS fts; DROP TABLE IF EXISTS docs; "
                                        "DROP TABLE IF EXISTS doc_topics; DELETE FROM meta;")
            self.conn.executescript(_SCHEMA)
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (SEARCH_VERSION,))
            self.conn.commit()
        except sqlite3.Error as e:
            raise SearchError(f"cannot open search cache {self.path}: {e}") from None

    def _version(self) -> str | None:
        try:
            r = self.conn.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        except sqlite3.Error:
            return None
        return r[0] if r else None

    def close(self) -> None:
        self.conn.close()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        """A connection of its own for one search: the progress handler that holds a search to
        its time limit belongs to a connection, so searches running at once on worker threads
        must not share one. WAL lets them read beside the writer."""
        with self._readers_lock:
            conn = self._readers.pop() if self._readers else None
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        try:
            yield conn
        finally:
            with self._readers_lock:
                self._readers.append(conn)

    def synced_up_to(self) -> int:
        # on a reader: /healthz asks from the event loop and must not wait for a sync's writes
        with self._reader() as conn:
            r = conn.execute("SELECT value FROM meta WHERE key = 'synced'").fetchone()
        return int(r[0]) if r else 0

    def sync(self, index: Index, text_of: Any = None, batch: int = 500) -> int:
        """Add archived articles with ids above the last synced one; returns how many.
        `text_of(row)` gives the article text when its text file is missing."""
        last = self.synced_up_to()
        # every capture up to `top` is looked at once, articles or not, so the caller's cheap
        # "anything new?" check (last_capture_id against synced_up_to) does not repeat work
        top = index.last_capture_id()
        added = 0
        found = (r for r in index.captures(kind="article", state=ARCHIVED, after=last, up_to=top, batch=batch)
                 if r.warc_file is not None)
        while rows := list(islice(found, batch)):
            docs, fts, topics = [], [], []
            for r in rows:
                body = self._text(r.text_path)
                if body is None and text_of is not None:
                    try:
                        body = text_of(r.id)
                    except Exception as e:  # a damaged record leaves the capture unsearchable, nothing more
                        log.warning("capture %s: no text to search: %s", r.id, e)
                title = r.title or ""
                if body and title and body.startswith(title + "\n"):
                    body = body[len(title):].lstrip("\n")
                docs.append((r.id, r.url, r.final_url, title, r.outlet, json.dumps(r.topics, ensure_ascii=False),
                             r.fetched_at, address(r), published_at(r.published)))
                fts.append((r.id, title, (body or "")[:MAX_INDEXED_CHARS]))
                topics += [(r.id, t) for t in r.topics]
                last = r.id or last
            with self.conn:
                self.conn.executemany("INSERT OR REPLACE INTO docs (capture_id, url, final_url, title, outlet, "
                                      "topics, fetched_at, page, published) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", docs)
                self.conn.executemany("INSERT OR REPLACE INTO fts(rowid, title, body) VALUES (?, ?, ?)", fts)
                self.conn.executemany("INSERT INTO doc_topics VALUES (?, ?)", topics)
                self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('synced', ?)", (str(last),))
            added += len(rows)
        if top > self.synced_up_to():
            with self.conn:
                self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('synced', ?)", (str(top),))
        return added

    def _text(self, rel: str | None) -> str | None:
        if not rel:
            return None
        path = self.storage_root / rel
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def facets(self) -> dict[str, list[tuple[str, int]]]:
        """Topics and outlets with their capture counts, for the search filters."""
        with self._reader() as conn, _deadline(conn, SEARCH_SECONDS, "listing topics and outlets"):
            return {"topics": conn.execute("SELECT topic, COUNT(*) FROM doc_topics GROUP BY topic "
                                           "ORDER BY COUNT(*) DESC, topic").fetchall(),
                    "outlets": conn.execute("SELECT outlet, COUNT(*) FROM docs GROUP BY outlet "
                                            "ORDER BY COUNT(*) DESC, outlet").fetchall()}

    def search(self, query: Query, seconds: float = SEARCH_SECONDS) -> Results:
        if len(query.q) > MAX_QUERY_CHARS:
            raise SearchError(f"the search terms are {len(query.q):,} characters long; at most {MAX_QUERY_CHARS} "
                              "are searched for")
        if query.page > MAX_PAGE:
            raise SearchError(f"page {query.page} is past the last page shown ({MAX_PAGE:,}); narrow the search")
        where, args = [], []
        match = fts_query(query.q)
        if query.outlet:
            where.append("d.outlet = ?")
            args.append(query.outlet)
        if query.topic:
            where.append("d.capture_id IN (SELECT capture_id FROM doc_topics WHERE topic = ?)")
            args.append(query.topic)
        if query.since:
            where.append("d.fetched_at >= ?")
            args.append(query.since)
        if query.until:
            where.append("d.fetched_at <= ?")
            args.append(query.until + "T23:59:59.999999Z" if len(query.until) == 10 else query.until)
        # by the day the page states, in its own offset (see archiver.pubdate)
        if query.published_from:
            where.append("substr(d.published, 1, 10) >= ?")
            args.append(_day(query.published_from, "published_from"))
        if query.published_to:
            where.append("substr(d.published, 1, 10) <= ?")
            args.append(_day(query.published_to, "published_to"))
        page = max(1, query.page)
        offset = (page - 1) * PAGE_SIZE
        cond = "".join(f" AND {w}" for w in where)
        if match:
            base = f"FROM fts JOIN docs d ON d.capture_id = fts.rowid WHERE fts MATCH ?{cond}"
            args = [match, *args]
            # LIMIT -1 keeps SQLite from merging the subquery into the GROUP BY, where bm25()
            # cannot be called
            scored = f"SELECT d.page AS page, d.fetched_at AS at, bm25(fts, 4.0, 1.0) AS score {base} LIMIT -1"
            order = "MIN(score)" if query.sort != "date" else "MAX(at) DESC"
            sql_pages = f"SELECT page FROM ({scored}) GROUP BY page ORDER BY {order}, page LIMIT ? OFFSET ?"
        else:
            base = "FROM docs d" + (" WHERE " + " AND ".join(where) if where else "")
            sql_pages = f"SELECT d.page {base} GROUP BY d.page ORDER BY MAX(d.fetched_at) DESC, d.page LIMIT ? OFFSET ?"
        sql_count = f"SELECT COUNT(DISTINCT d.page) {base}"
        joiner = " AND " if (match or where) else " WHERE "
        try:
            with self._reader() as conn, _deadline(conn, seconds, f"the search for {query.q!r}"):
                total = conn.execute(sql_count, args).fetchone()[0]
                pages = [r[0] for r in conn.execute(sql_pages, [*args, PAGE_SIZE, offset])]
                # the matching versions of the URLs shown: looked up by URL (docs_page), then
                # checked against the terms, so this costs little beside the ranking
                marks = ", ".join("?" * len(pages))
                versions: dict[str, list[Version]] = {p: [] for p in pages}
                for p, cid, at in conn.execute(
                        f"SELECT d.page, d.capture_id, d.fetched_at {base}{joiner}d.page IN ({marks}) "
                        f"ORDER BY d.fetched_at DESC, d.capture_id DESC", [*args, *pages]):
                    versions[p].append(Version(cid, at))
                ids = [versions[p][0].capture_id for p in pages if versions[p]]
                marks = ", ".join("?" * len(ids))
                cols = "d.capture_id, d.url, d.final_url, d.title, d.outlet, d.topics, d.fetched_at, d.published"
                if match:
                    snip = f"snippet(fts, 1, '{_OPEN}', '{_CLOSE}', '…', 24)"
                    found = conn.execute(
                        f"SELECT {cols}, {snip} FROM fts JOIN docs d ON d.capture_id = fts.rowid "
                        f"WHERE fts MATCH ? AND fts.rowid IN ({marks})", [snippet_query(query.q), *ids]).fetchall()
                else:
                    found = conn.execute(
                        f"SELECT {cols}, substr(fts.body, 1, 200) FROM docs d JOIN fts ON fts.rowid = d.capture_id "
                        f"WHERE d.capture_id IN ({marks})", ids).fetchall()
        except sqlite3.OperationalError as e:
            raise SearchError(f"search for {query.q!r} failed: {e}") from None
        by_id = {r[0]: r for r in found}
        hits = []
        for p in pages:
            if not versions[p] or versions[p][0].capture_id not in by_id:
                continue
            cid, url, final_url, title, outlet, topics, fetched_at, published, snip = by_id[versions[p][0].capture_id]
            snip = " ".join((snip or "").split())
            hits.append(Hit(cid, url, final_url, title or "", outlet, json.loads(topics or "[]"), fetched_at,
                            published, snippet=snip.replace(_OPEN, "").replace(_CLOSE, ""),
                            snippet_html=_marked(snip), versions=versions[p]))
        return Results(hits, total, page, (total + PAGE_SIZE - 1) // PAGE_SIZE)


def _day(value: str, name: str) -> str:
    try:
        if len(value) == 10:
            return date.fromisoformat(value).isoformat()
    except ValueError:
        pass
    raise SearchError(f"{name} {value!r} is not a date (YYYY-MM-DD)")


@contextlib.contextmanager
def _deadline(conn: sqlite3.Connection, seconds: float, what: str) -> Iterator[None]:
    """SQLite interrupts the statement running on `conn` once `seconds` have passed."""
    end = time.monotonic() + seconds
    conn.set_progress_handler(lambda: 1 if time.monotonic() > end else 0, 2000)
    try:
        yield
    except sqlite3.OperationalError as e:
        if "interrupt" in str(e).lower():
            raise SearchError(f"{what} took longer than {seconds:g} s and was stopped; use fewer or rarer "
                              "words, or a filter") from None
        raise
    finally:
        conn.set_progress_handler(None, 0)


def _marked(s: str) -> str:
    return html.escape(s).replace(_OPEN, "<mark>").replace(_CLOSE, "</mark>")
