"""Full-text search over archived articles: SQLite FTS5, derived from the provenance index.

The search database is a cache: every row in it is rebuilt from the index and the extracted
text files (or, when a text file is gone, re-derived from its WARC record), so it can be
deleted at any time. It lives at `<storage root>/search.sqlite3`; when the storage root is
read-only (a copied archive, the browse container's read-only volume) it goes to a cache
folder instead. `sync()` adds captures archived since the last call, so a browser running
beside the daemon sees new articles without a restart.
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
from pathlib import Path
from typing import Any, Iterator

from ..errors import SearchError
from ..index import ARCHIVED, Index

log = logging.getLogger(__name__)

SEARCH_FILE = "search.sqlite3"
# bump when the schema or what goes into it changes: an older cache is then rebuilt
SEARCH_VERSION = "2"  # 2: article texts indexed up to MAX_INDEXED_CHARS
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
    fetched_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS doc_topics (capture_id INTEGER NOT NULL, topic TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS doc_topics_topic ON doc_topics(topic, capture_id);
CREATE INDEX IF NOT EXISTS docs_outlet ON docs(outlet, fetched_at);
CREATE INDEX IF NOT EXISTS docs_fetched ON docs(fetched_at);
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
    sort: str = "relevance"  # relevance | date
    page: int = 1


@dataclass
class Hit:
    capture_id: int
    url: str
    final_url: str | None
    title: str
    outlet: str
    topics: list[str]
    fetched_at: str
    snippet: str  # plain text
    snippet_html: str  # HTML-escaped, matches in <mark>

    def public(self) -> dict[str, Any]:
        return {"url": self.url, "final_url": self.final_url, "title": self.title, "outlet": self.outlet,
                "topics": self.topics, "fetched_at": self.fetched_at, "snippet": self.snippet,
                "capture_id": self.capture_id}


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
        # "anything new?" check (MAX(id) against synced_up_to) does not repeat work
        top = index.scalar("SELECT MAX(id) FROM captures") or 0
        added = 0
        while True:
            rows = index.rows(
                "SELECT id, url, final_url, title, outlet, topics, fetched_at, text_path FROM captures "
                "WHERE id > :last AND id <= :top AND kind = 'article' AND state = :state AND warc_file IS NOT NULL "
                "ORDER BY id LIMIT :n", last=last, top=top, state=ARCHIVED, n=batch)
            if not rows:
                break
            docs, fts, topics = [], [], []
            for r in rows:
                body = self._text(r["text_path"])
                if body is None and text_of is not None:
                    try:
                        body = text_of(r["id"])
                    except Exception as e:  # a damaged record leaves the capture unsearchable, nothing more
                        log.warning("capture %s: no text to search: %s", r["id"], e)
                title = r["title"] or ""
                if body and title and body.startswith(title + "\n"):
                    body = body[len(title):].lstrip("\n")
                docs.append((r["id"], r["url"], r["final_url"], title, r["outlet"], r["topics"], r["fetched_at"]))
                fts.append((r["id"], title, (body or "")[:MAX_INDEXED_CHARS]))
                topics += [(r["id"], t) for t in json.loads(r["topics"] or "[]")]
                last = r["id"]
            with self.conn:
                self.conn.executemany("INSERT OR REPLACE INTO docs VALUES (?, ?, ?, ?, ?, ?, ?)", docs)
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
        page = max(1, query.page)
        offset = (page - 1) * PAGE_SIZE
        if match:
            base = "FROM fts JOIN docs d ON d.capture_id = fts.rowid WHERE fts MATCH ?"
            args = [match, *args]
            cond = "".join(f" AND {w}" for w in where)
            order = "bm25(fts, 4.0, 1.0)" if query.sort != "date" else "d.fetched_at DESC"
            # ids first, snippets after: computing snippet() for every match before the sort
            # is what makes broad queries slow
            sql_ids = f"SELECT d.capture_id {base}{cond} ORDER BY {order}, d.capture_id DESC LIMIT ? OFFSET ?"
            sql_count = f"SELECT COUNT(*) {base}{cond}"
        else:
            base = "FROM docs d"
            cond = (" WHERE " + " AND ".join(where)) if where else ""
            sql_ids = f"SELECT d.capture_id {base}{cond} ORDER BY d.fetched_at DESC, d.capture_id DESC LIMIT ? OFFSET ?"
            sql_count = f"SELECT COUNT(*) {base}{cond}"
        try:
            with self._reader() as conn, _deadline(conn, seconds, f"the search for {query.q!r}"):
                total = conn.execute(sql_count, args).fetchone()[0]
                ids = [r[0] for r in conn.execute(sql_ids, [*args, PAGE_SIZE, offset])]
                marks = ", ".join("?" * len(ids))
                if match:
                    snip = f"snippet(fts, 1, '{_OPEN}', '{_CLOSE}', '…', 24)"
                    found = conn.execute(
                        f"SELECT d.*, {snip} FROM fts JOIN docs d ON d.capture_id = fts.rowid "
                        f"WHERE fts MATCH ? AND fts.rowid IN ({marks})", [snippet_query(query.q), *ids]).fetchall()
                else:
                    found = conn.execute(
                        f"SELECT d.*, substr(fts.body, 1, 200) FROM docs d JOIN fts ON fts.rowid = d.capture_id "
                        f"WHERE d.capture_id IN ({marks})", ids).fetchall()
        except sqlite3.OperationalError as e:
            raise SearchError(f"search for {query.q!r} failed: {e}") from None
        by_id = {r[0]: r for r in found}
        rows = [by_id[i] for i in ids if i in by_id]
        hits = []
        for cid, url, final_url, title, outlet, topics, fetched_at, snip in rows:
            snip = " ".join((snip or "").split())
            hits.append(Hit(cid, url, final_url, title or "", outlet, json.loads(topics or "[]"), fetched_at,
                            snippet=snip.replace(_OPEN, "").replace(_CLOSE, ""), snippet_html=_marked(snip)))
        return Results(hits, total, page, (total + PAGE_SIZE - 1) // PAGE_SIZE)


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
