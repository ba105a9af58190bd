"""`archiver serve`: a read-only web UI over the archive, for offline browsing.

Pages: home (counts, latest captures, captures per day), search (FTS5, filters, paging, and
the same as JSON at /api/search), capture (headers, texts, provenance, versions and diffs),
and replay from the WARC records (see replay.py). Nothing here fetches from the web: the
server reads the index, the text files and the WARCs, and every page it sends carries a
Content-Security-Policy that allows only its own origin.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from . import __version__
from .dump import derive
from .errors import StorageError
from .index import ARCHIVED, BLOCKED, Index, _row
from .replay import MAX_REPLAY_BYTES, Archived, read_response, replay_body, replay_csp
from .search import PAGE_SIZE, Query, SearchIndex
from .stores import StoreSettings
from .warcfiles import WarcFiles

log = logging.getLogger(__name__)

UI_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
          "frame-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'self'")
# states whose WARC record is a full response (revisits point at another record's payload)
_REPLAYABLE = (ARCHIVED, BLOCKED)


def timestamp14(iso: str) -> str:
    return "".join(ch for ch in iso if ch.isdigit())[:14]


class Archive:
    """Read access to one storage root: the index (read-only), texts, WARCs, search cache."""

    def __init__(self, storage_root: Path, index_url: str | None = None, store: StoreSettings = StoreSettings()):
        self.root = storage_root
        self.index = Index.open(storage_root, readonly=True, url=index_url)
        self.warcs = WarcFiles.for_root(storage_root, self.index, store)
        self.search_index = SearchIndex(storage_root)
        self._lock = threading.Lock()
        self.sync()

    def close(self) -> None:
        self.index.close()
        self.search_index.close()

    def sync(self) -> None:
        """Bring the search cache up to the index (cheap when nothing is new)."""
        with self._lock:
            top = self.index.scalar("SELECT MAX(id) FROM captures") or 0
            if top > self.search_index.synced_up_to():
                n = self.search_index.sync(self.index, text_of=lambda cid: self.text(cid, "article"))
                if n:
                    log.info("search: %d captures added", n)

    def read_response(self, row: Any, max_bytes: int = MAX_REPLAY_BYTES) -> Archived:
        """The response record of a capture row, wherever its WARC file is now."""
        with self.warcs.open_record(row.warc_file, row.warc_offset, row.warc_length) as f:
            return read_response(f, max_bytes)

    def row(self, capture_id: int):
        return self.index.get(capture_id)

    def by_record_id(self, record_id: str):
        rows = self.index.rows("SELECT * FROM captures WHERE warc_record_id = :r ORDER BY id LIMIT 1", r=record_id)
        return _row(rows[0]) if rows else None

    def versions(self, url: str) -> list:
        rows = self.index.rows("SELECT * FROM captures WHERE (url = :u OR final_url = :u) AND warc_file IS NOT NULL "
                               "ORDER BY fetched_at, id", u=url)
        return [_row(r) for r in rows]

    def replay_row(self, row):
        """The capture whose response record holds this capture's payload (itself, or the
        capture a revisit record refers to)."""
        if row.state in _REPLAYABLE:
            return row
        if row.revisit_of:
            original = self.by_record_id(row.revisit_of)
            if original is not None and original.state in _REPLAYABLE:
                return original
        return None

    def text(self, capture_id: int, kind: str) -> str:
        row = self.row(capture_id)
        if row is None:
            return ""
        source = self.replay_row(row) or row
        rel = source.text_path if kind == "article" else source.page_text_path
        if rel:
            try:
                return (self.root / rel).read_text(encoding="utf-8")
            except OSError:
                pass
        if source.warc_file and source.warc_offset is not None and source.state in _REPLAYABLE:
            return derive(self.warcs.location(source.warc_file), source.warc_offset, source.warc_length, kind,
                          self.warcs.settings)
        return ""

    def nearest(self, url: str, ts: str):
        states = ", ".join(f"'{s}'" for s in _REPLAYABLE)  # constants of ours, not input
        rows = self.index.rows(f"SELECT * FROM captures WHERE (final_url = :u OR url = :u) AND warc_file IS NOT NULL "
                               f"AND warc_offset IS NOT NULL AND state IN ({states})", u=url)
        if not rows:
            return None
        want = int((ts + "0" * 14)[:14]) if ts.isdigit() else 0
        return _row(min(rows, key=lambda r: (abs(int(timestamp14(r["fetched_at"])) - want), -r["id"])))

    def overview(self) -> dict[str, Any]:
        ix = self.index
        art = "kind = 'article' AND state = 'archived'"
        each = ("jsonb_array_elements_text(captures.topics::jsonb)" if ix.dialect == "postgresql"
                else "json_each(captures.topics)")
        topics = [(r["t"], r["n"]) for r in ix.rows(
            f"SELECT j.value AS t, COUNT(*) AS n FROM captures, {each} j WHERE {art} "
            f"GROUP BY j.value ORDER BY COUNT(*) DESC, j.value")]
        outlets = [(r["outlet"], r["n"]) for r in ix.rows(
            f"SELECT outlet, COUNT(*) AS n FROM captures WHERE {art} GROUP BY outlet ORDER BY COUNT(*) DESC, outlet")]
        days = [(r["d"], r["n"]) for r in ix.rows(
            f"SELECT substr(fetched_at, 1, 10) AS d, COUNT(*) AS n FROM captures WHERE {art} GROUP BY 1 ORDER BY 1")]
        latest = [_row(r) for r in ix.rows(f"SELECT * FROM captures WHERE {art} ORDER BY id DESC LIMIT 15")]
        total = ix.scalar(f"SELECT COUNT(*) FROM captures WHERE {art}")
        return {"topics": topics, "outlets": outlets, "days": days[-90:], "latest": latest, "total": total}


def chart(days: list[tuple[str, int]]) -> dict[str, Any]:
    """Bar geometry for the captures-per-day SVG, drawn server-side (no script, no CDN)."""
    if not days:
        return {"bars": [], "width": 0, "height": 0, "max": 0}
    top = max(n for _, n in days)
    width, height = 720, 120
    slot = width / len(days)
    bar = max(2.0, min(40.0, slot * 0.8))
    bars = []
    for i, (day, n) in enumerate(days):
        h = max(1, round(n / top * height))
        bars.append({"x": round(i * slot + (slot - bar) / 2, 1), "y": height - h + 4, "w": round(bar, 1), "h": h,
                     "day": day, "n": n})
    return {"bars": bars, "width": width, "height": height + 24, "max": top}


def diff_lines(a: str, b: str) -> list[tuple[str, str]]:
    """Line diff of two texts as (tag, line): tag is ' ', '-' or '+'."""
    al, bl = a.splitlines(), b.splitlines()
    out: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, al, bl, autojunk=False).get_opcodes():
        if op == "equal":
            out += [(" ", line) for line in al[i1:i2]]
        else:
            out += [("-", line) for line in al[i1:i2]]
            out += [("+", line) for line in bl[j1:j2]]
    return out


def _query(request: Request) -> Query:
    p = request.query_params
    try:
        page = max(1, int(p.get("page") or 1))
    except ValueError:
        page = 1
    return Query(q=(p.get("q") or "").strip(), topic=p.get("topic") or None, outlet=p.get("outlet") or None,
                 since=p.get("since") or None, until=p.get("until") or None,
                 sort="date" if p.get("sort") == "date" else "relevance", page=page)


def create_app(storage_root: Path, index_url: str | None = None, store: StoreSettings = StoreSettings()) -> Starlette:
    archive = Archive(storage_root, index_url, store)
    env = Environment(loader=PackageLoader("archiver", "templates"), autoescape=select_autoescape(["html"]))
    env.globals.update(version=__version__, ts14=timestamp14)

    def page(name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**ctx), status_code=status,
                            headers={"Content-Security-Policy": UI_CSP, "X-Content-Type-Options": "nosniff",
                                     "Referrer-Policy": "no-referrer"})

    async def home(request: Request) -> Response:
        archive.sync()
        ov = archive.overview()
        return page("home.html", ov=ov, chart=chart(ov["days"]))

    def _run_search(request: Request):
        archive.sync()
        q = _query(request)
        return q, archive.search_index.search(q)

    async def search_html(request: Request) -> Response:
        try:
            q, res = _run_search(request)
        except StorageError as e:
            return page("error.html", status=400, message=str(e))
        return page("search.html", q=q, res=res, page_size=PAGE_SIZE, ov=archive.search_index.facets())

    async def search_api(request: Request) -> Response:
        try:
            q, res = _run_search(request)
        except StorageError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        return JSONResponse({"results": [h.public() for h in res.hits], "total": res.total, "page": res.page,
                             "pages": res.pages})

    async def capture(request: Request) -> Response:
        cid = request.path_params["cid"]
        row = archive.row(cid)
        if row is None:
            return page("error.html", status=404, message=f"no capture {cid} in this archive")
        source = archive.replay_row(row)
        response = None
        if source is not None and source.warc_file and source.warc_offset is not None:
            try:
                response = archive.read_response(source, max_bytes=0)
            except (OSError, ValueError, StopIteration, StorageError) as e:
                log.warning("capture %s: cannot read its record: %s", cid, e)
        is_article = row.kind == "article"
        article = archive.text(cid, "article") if is_article else ""
        page_text = archive.text(cid, "page") if is_article else ""
        via = archive.by_record_id(row.discovered_via_record_id) if row.discovered_via_record_id else None
        versions = archive.versions(row.url) if row.url else []
        diff, other = None, None
        if request.query_params.get("diff"):
            try:
                other = archive.row(int(request.query_params["diff"]))
            except ValueError:
                other = None
        older = newer = None
        if other is not None:
            # always shown as what changed from the earlier capture to the later one
            older, newer = sorted((other, row), key=lambda r: (r.fetched_at, r.id))
            texts = {row.id: article, other.id: archive.text(other.id, "article")}
            diff = diff_lines(texts[older.id], texts[newer.id])
        return page("capture.html", row=row, source=source, response=response, article=article,
                    page_text=page_text, via=via, versions=versions, diff=diff, older=older, newer=newer)

    async def replay_frame(request: Request) -> Response:
        cid = request.path_params["cid"]
        row = archive.row(cid)
        if row is None:
            return page("error.html", status=404, message=f"no capture {cid} in this archive")
        return page("replay.html", row=row, source=archive.replay_row(row))

    def _replayed(request: Request, row, ts: str) -> Response:
        origin = f"{request.url.scheme}://{request.url.netloc}"
        headers = {"Content-Security-Policy": replay_csp(origin), "X-Content-Type-Options": "nosniff",
                   "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
        try:
            archived = archive.read_response(row)
        except (OSError, ValueError, StopIteration, StorageError) as e:
            return HTMLResponse(f"<p>capture {row.id}: cannot read its WARC record ({e})</p>", 500, headers=headers)
        body, ctype = replay_body(archived, ts)
        headers["Memento-Datetime"] = _http_date(row.fetched_at)
        return Response(body, status_code=200, media_type=ctype, headers=headers)

    async def raw(request: Request) -> Response:
        cid = request.path_params["cid"]
        row = archive.row(cid)
        source = archive.replay_row(row) if row is not None else None
        if source is None or not source.warc_file or source.warc_offset is None:
            return _missing(request, f"capture {cid}")
        return _replayed(request, source, timestamp14(source.fetched_at))

    async def web(request: Request) -> Response:
        ts = request.path_params["ts"]
        url = request.path_params["url"]
        # Starlette merges '//' in paths; restore 'https://host' from 'https:/host'
        for scheme in ("http:/", "https:/"):
            if url.startswith(scheme) and not url.startswith(scheme + "/"):
                url = scheme + "/" + url[len(scheme):]
        if request.url.query:
            url += "?" + request.url.query
        row = archive.nearest(url, ts)
        if row is None:
            return _missing(request, url)
        return _replayed(request, row, ts)

    def _missing(request: Request, what: str) -> Response:
        origin = f"{request.url.scheme}://{request.url.netloc}"
        body = env.get_template("missing.html").render(what=what)
        return HTMLResponse(body, status_code=404, headers={"Content-Security-Policy": replay_csp(origin),
                                                             "X-Content-Type-Options": "nosniff"})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "synced_up_to": archive.search_index.synced_up_to()})

    static = Path(__file__).with_name("static")
    app = Starlette(routes=[
        Route("/", home), Route("/search", search_html), Route("/api/search", search_api),
        Route("/capture/{cid:int}", capture), Route("/replay/{cid:int}", replay_frame),
        Route("/raw/{cid:int}", raw), Route("/web/{ts}/{url:path}", web), Route("/healthz", healthz),
        Mount("/static", app=StaticFiles(directory=static), name="static"),
    ], lifespan=_closing(archive))
    app.state.archive = archive
    return app


def _closing(archive: Archive) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            archive.close()
    return lifespan


def _http_date(iso: str) -> str:
    try:
        dt = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(timezone.utc)
    except ValueError:
        return iso
    return dt.strftime("%a, %d %b %Y %H:%M:%S GMT")


def serve(storage_root: Path, host: str, port: int, index_url: str | None = None,
          log_level: str = "warning", store: StoreSettings = StoreSettings()) -> None:
    import uvicorn

    try:
        app = create_app(storage_root, index_url, store)
    except sqlite3.Error as e:
        raise StorageError(f"cannot read the archive at {storage_root}: {e}") from None
    log.warning("serving %s on http://%s:%d/ (read-only)", storage_root, host, port)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, server_header=False)


