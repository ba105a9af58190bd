"""`archiver serve`: a read-only web UI over the archive, for offline browsing.

Pages: home (counts, latest captures, articles by publication date), a topic's timeline,
search (FTS5, filters, a URL's versions as one hit, paging, and the same as JSON at
/api/search), capture (headers, texts, provenance, citation, versions and word diffs),
a raw view of each archived body, replay, a page's screenshot and rendered DOM when the
browser captured it (screens.py), and Atom feeds of the archived articles per topic and of
all (/feeds/<topic>.atom, /feeds/all.atom; atom.py). Nothing here fetches from the web: the
server reads the index, the text files and the WARCs. A capture's permalink, `/web/<timestamp>/<url>`,
is its capture page, with a citation and downloads of its WARC records and texts (citing.py).

Two listeners, two origins: the UI (`--port`) serves the UI's own pages only, under a
Content-Security-Policy that allows only its own origin (and frames from the replay origin);
the replay origin (`--replay-port`, replayapp.py) serves the archived bytes. Both answer only
to the names the server was started for (hostcheck.py). Every piece of work a request asks
for (queries, text files, diffs, rewriting, templates) runs on worker threads under a time
limit and within size caps, so no request can stall the others or a shutdown.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sqlite3
import threading
from pathlib import Path
from typing import Any, AsyncIterator, Callable
from urllib.parse import quote

import anyio
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import __version__
from . import citing, screens
from ..decode import decode_text
from .atom import ENTRIES, FeedLinks, atom_feed
from .diffs import diff_texts
from ..dump import derive
from ..errors import ArchiverError, StorageError
from .hostcheck import HostCheck, allowed_names
from .permalink import resolve
from ..index import ARCHIVED, BLOCKED, Index
from .replay import MAX_REPLAY_BYTES, Archived, raw_csp, read_response
from .replayapp import create_replay_app, origin_of, timestamp14, web_url
from .search import PAGE_SIZE, Query, SearchIndex
from ..stores import StoreSettings
from ..warcfiles import WarcFiles

log = logging.getLogger(__name__)

# states whose WARC record is a full response (revisits point at another record's payload)
_REPLAYABLE = (ARCHIVED, BLOCKED)
# a page's work (on a worker thread) gets this long; the caps in diffs.py, replay.py and
# search.py keep each piece far below it, this is the last bound
WORK_SECONDS = 5.0
WORKERS = 4
# longer texts are shown by their start on the capture page (the raw view has the whole body)
MAX_SHOWN_TEXT = 2_000_000


def ui_csp(replay_origin: str) -> str:
    return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"frame-src {replay_origin}; connect-src 'self'; form-action 'self'; base-uri 'none'; "
            "frame-ancestors 'self'; object-src 'none'")


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
            top = self.index.last_capture_id()
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
        return self.index.by_record_id(record_id)

    def versions(self, url: str) -> list:
        return self.index.versions(url)

    def removal(self, row):
        """The later capture saying the outlet removed this page, if there is one."""
        return self.index.removal_after(row.url, row.id) if row.kind == "article" and row.url else None

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
        """The capture replay shows for `/web/<ts>/<url>` (see permalink.resolve)."""
        return resolve(self.index.responses_of(url, _REPLAYABLE), ts, url)

    def overview(self) -> dict[str, Any]:
        ov = self.index.overview()
        return {"topics": ov.topics, "outlets": ov.outlets, "days": ov.days, "latest": ov.latest,
                "total": ov.total}


def _query(request: Request) -> Query:
    p = request.query_params
    try:
        page = max(1, int(p.get("page") or 1))
    except ValueError:
        page = 1
    return Query(q=(p.get("q") or "").strip(), topic=p.get("topic") or None, outlet=p.get("outlet") or None,
                 since=p.get("since") or None, until=p.get("until") or None,
                 published_from=(p.get("published_from") or "").strip() or None,
                 published_to=(p.get("published_to") or "").strip() or None,
                 sort="date" if p.get("sort") == "date" else "relevance", page=page)


class OffLoop:
    """Runs a page's work on a worker thread under a time limit, so the event loop (and with
    it /healthz, every other request and a shutdown) is never held by one request."""

    def __init__(self, seconds: float = WORK_SECONDS, workers: int = WORKERS):
        self.seconds = seconds
        self.limiter = anyio.CapacityLimiter(workers)

    async def __call__(self, work: Callable[[Request], Response], request: Request,
                       on_timeout: Callable[[str], Response]) -> Response:
        try:
            with anyio.fail_after(self.seconds):
                # abandon_on_cancel: past the limit the answer goes out at once; the work left
                # on the thread is bounded by the caps and ends by itself
                return await anyio.to_thread.run_sync(work, request, abandon_on_cancel=True, limiter=self.limiter)
        except TimeoutError:
            log.warning("%s took longer than %.0f s; answered 503", request.url.path, self.seconds)
            return on_timeout(f"preparing this page took longer than {self.seconds:.0f} s; it was given up")


class Listeners:
    """One ASGI app for both sockets: requests are routed by the port they arrived on."""

    def __init__(self, ui: Any, replay: Any, replay_port: int):
        self.ui, self.replay, self.replay_port = ui, replay, replay_port

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        server = scope.get("server")
        if scope["type"] != "lifespan" and server is not None and server[1] == self.replay_port:
            await self.replay(scope, receive, send)
        else:
            await self.ui(scope, receive, send)


def create_app(storage_root: Path, index_url: str | None = None, store: StoreSettings = StoreSettings(), *,
               ui_port: int = 8770, replay_port: int = 8772, host: str = "127.0.0.1",
               allowed_hosts: tuple[str, ...] = (), topics: tuple[str, ...] = ()) -> Listeners:
    """`topics`: the config's topic names, whose feeds exist before anything is archived about them."""
    archive = Archive(storage_root, index_url, store)
    env = Environment(loader=PackageLoader("archiver.web", "templates"), autoescape=select_autoescape(["html"]))
    env.globals.update(version=__version__, ts14=timestamp14)
    off_loop = OffLoop()
    names = allowed_names(host, allowed_hosts)

    def page(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        replay_origin = origin_of(request, replay_port)
        return HTMLResponse(env.get_template(name).render(replay_origin=replay_origin, **ctx), status_code=status,
                            headers={"Content-Security-Policy": ui_csp(replay_origin),
                                     "Referrer-Policy": "no-referrer"})

    def bounded(work: Callable[[Request], Response]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            return await off_loop(work, request, lambda message: page(request, "error.html", status=503,
                                                                      message=message))
        return endpoint

    def home(request: Request) -> Response:
        archive.sync()
        ov = archive.overview()
        return page(request, "home.html", ov=ov, chart=citing.home_timeline(archive, ov["days"]))

    def _run_search(request: Request):
        archive.sync()
        q = _query(request)
        return q, archive.search_index.search(q)

    def search_html(request: Request) -> Response:
        try:
            q, res = _run_search(request)
        except StorageError as e:
            return page(request, "error.html", status=400, message=str(e))
        return page(request, "search.html", q=q, res=res, page_size=PAGE_SIZE, ov=archive.search_index.facets())

    def search_api(request: Request) -> Response:
        try:
            q, res = _run_search(request)
        except StorageError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        return JSONResponse({"results": [h.public() for h in res.hits], "total": res.total, "page": res.page,
                             "pages": res.pages})

    def capture(request: Request) -> Response:
        cid = request.path_params["cid"]
        row = archive.row(cid)
        if row is None:
            return page(request, "error.html", status=404, message=f"no capture {cid} in this archive")
        return capture_page(request, row)

    def capture_page(request: Request, row: Any) -> Response:
        cid = row.id
        source = archive.replay_row(row)
        response = None
        if source is not None and source.warc_file and source.warc_offset is not None:
            try:
                response = archive.read_response(source, max_bytes=0)
            except (OSError, ValueError, StopIteration, StorageError) as e:
                log.warning("capture %s: cannot read its record: %s", cid, e)
        is_article = row.kind == "article"
        article_bytes, from_file = citing.text_bytes(archive, row, "article") if is_article else (b"", False)
        article = article_bytes.decode("utf-8", "replace")
        page_text = archive.text(cid, "page") if is_article else ""
        via = archive.by_record_id(row.discovered_via_record_id) if row.discovered_via_record_id else None
        versions = archive.versions(row.url) if row.url else []
        removed = archive.removal(row)
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
            diff = diff_texts(texts[older.id], texts[newer.id])
        return page(request, "capture.html", row=row, source=source, response=response,
                    how=screens.how_captured(archive, source),
                    article=citing.marked_article(_shown(article), row), page_text=_shown(page_text), via=via,
                    versions=versions, removed=removed, diff=diff, older=older, newer=newer,
                    cite=citing.citation(request, archive, row, source, article_bytes if is_article else None,
                                         from_file))

    def replay_frame(request: Request, rendered: bool = False) -> Response:
        cid = request.path_params["cid"]
        row = archive.row(cid)
        if row is None:
            return page(request, "error.html", status=404, message=f"no capture {cid} in this archive")
        source = archive.replay_row(row)
        dom = screens.rendered_rows(archive, source)[0] if rendered else None
        return page(request, "replay.html", row=row, source=source if dom or not rendered else None,
                    address=row.final_url or row.url, when=(dom or source or row).fetched_at, rendered=rendered,
                    frame=f"/{'rendered' if rendered else 'replay'}/{row.id}", back=row.id)

    def screenshot(request: Request) -> Response:
        row = archive.row(request.path_params["cid"])
        if row is None:
            return page(request, "error.html", status=404, message=f"no capture {request.path_params['cid']}")
        return screens.screenshot_response(archive, row, lambda status, message: page(
            request, "error.html", status=status, message=message))

    def web_page(request: Request) -> Response:
        """A permalink: the page of the capture it names, at the capture's own permalink (any
        other time, or the URL it was redirected from, is sent there)."""
        ts, url = request.path_params["ts"], web_url(request)
        row, elsewhere = citing.find(archive, ts, url)
        if row is None:
            return page(request, "error.html", status=404,
                        message=f"Not in the archive: {url} (it is never fetched from the live web)")
        if elsewhere is not None:
            return RedirectResponse(elsewhere, status_code=302, headers={"Cache-Control": "no-store"})
        return capture_page(request, row)

    def capture_download(request: Request) -> Response:
        cid, what = request.path_params["cid"], request.path_params["what"]
        row = archive.row(cid)
        if row is None:
            return page(request, "error.html", status=404, message=f"no capture {cid} in this archive")
        if what in ("article.txt", "page.txt") and row.kind == "article":
            return citing.text_download(archive, row, what[:-4])
        if what not in ("records.warc.gz", "capture.wacz"):
            return page(request, "error.html", status=404, message=f"capture {cid} has no download {what!r}")
        if not row.warc_file or row.warc_offset is None:
            return page(request, "error.html", status=404, message=f"capture {cid} has no records in a WARC")
        try:
            if what == "capture.wacz":
                return citing.wacz_download(archive, row)
            return citing.records_download(archive, row)
        except (OSError, ValueError, StopIteration, ArchiverError) as e:
            return page(request, "error.html", status=500, message=f"capture {cid}: cannot make this download ({e})")

    def topic_page(request: Request) -> Response:
        topic = request.path_params["topic"]
        if topic not in archive.index.topic_names():
            return page(request, "error.html", status=404, message=f"no archived article is about topic {topic!r}")
        return page(request, "topic.html", topic=topic, chart=citing.topic_timeline(archive, topic),
                    latest=archive.index.topic_articles(topic, 20))

    def raw(request: Request) -> Response:
        cid = request.path_params["cid"]
        row = archive.row(cid)
        source = archive.replay_row(row) if row is not None else None
        if source is None or not source.warc_file or source.warc_offset is None:
            return page(request, "error.html", status=404, message=f"no archived response for capture {cid}")
        try:
            archived = archive.read_response(source)
        except (OSError, ValueError, StopIteration, StorageError) as e:
            return page(request, "error.html", status=500, message=f"capture {cid}: cannot read its record ({e})")
        return raw_view(archived, source.id)

    def feed(request: Request, topic: str | None) -> Response:
        if topic is not None and topic not in topics and topic not in archive.index.topic_names():
            return Response(f"no topic {topic!r} in this archive\n", status_code=404, media_type="text/plain")
        base = str(request.base_url).rstrip("/")
        query = f"?topic={quote(topic)}&sort=date" if topic is not None else "?sort=date"
        links = FeedLinks(feed=str(request.url.replace(query="")), page=f"{base}/search{query}",
                          capture=lambda cid: f"{base}/capture/{cid}")
        rows = archive.index.topic_articles(topic, ENTRIES)
        body = atom_feed(f"archiver: {topic}" if topic is not None else "archiver: every topic", rows, links,
                         lambda row: archive.text(row.id, "article"))
        return Response(body, media_type="application/atom+xml; charset=utf-8",
                        headers={"Content-Security-Policy": "default-src 'none'; sandbox",
                                 "Referrer-Policy": "no-referrer"})

    def feed_all(request: Request) -> Response:
        return feed(request, None)

    def feed_topic(request: Request) -> Response:
        return feed(request, request.path_params["topic"])

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "synced_up_to": archive.search_index.synced_up_to()})

    static = Path(__file__).with_name("static")
    ui = Starlette(routes=[
        Route("/", bounded(home)), Route("/search", bounded(search_html)), Route("/api/search", bounded(search_api)),
        Route("/capture/{cid:int}", bounded(capture)), Route("/replay/{cid:int}", bounded(replay_frame)),
        Route("/rendered/{cid:int}", bounded(lambda request: replay_frame(request, rendered=True))),
        Route("/capture/{cid:int}/screenshot.png", bounded(screenshot)),
        Route("/raw/{cid:int}", bounded(raw)), Route("/web/{ts}/{url:path}", bounded(web_page)),
        Route("/capture/{cid:int}/{what}", bounded(capture_download)), Route("/topics/{topic}", bounded(topic_page)),
        Route("/feeds/all.atom", bounded(feed_all)), Route("/feeds/{topic}.atom", bounded(feed_topic)),
        Route("/healthz", healthz), Mount("/static", app=StaticFiles(directory=static), name="static"),
    ], lifespan=_closing(archive))
    replay = create_replay_app(archive, env, ui_port, off_loop)
    return Listeners(HostCheck(ui, names), HostCheck(replay, names), replay_port)


def _shown(text: str) -> str:
    if len(text) <= MAX_SHOWN_TEXT:
        return text
    return text[:MAX_SHOWN_TEXT] + f"\n\n[… {len(text) - MAX_SHOWN_TEXT:,} more characters not shown]"


_TEXT_TYPES = ("text/", "application/javascript", "application/ecmascript", "application/json",
               "application/xml", "application/xhtml+xml", "application/rss+xml", "application/atom+xml",
               "image/svg+xml")


def raw_view(archived: Archived, capture_id: int) -> Response:
    """The archived body as it was sent, inert: text as text/plain, anything else as a
    download. text/plain with nosniff is never parsed as markup nor run as a script or
    stylesheet, by a page of ours or another, so the body cannot act in the UI's origin; the
    CSP sandbox is the second wall should a browser render it some other way."""
    ctype = archived.content_type.split(";")[0].strip().lower()
    headers = {"Content-Security-Policy": raw_csp(), "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
    if ctype.startswith(_TEXT_TYPES) or ctype.endswith(("+xml", "+json")):
        text = decode_text(archived.body, archived.content_type).text
        headers["Content-Disposition"] = f'inline; filename="capture-{capture_id}.txt"'
        return Response(text.encode("utf-8"), media_type="text/plain; charset=utf-8", headers=headers)
    headers["Content-Disposition"] = f'attachment; filename="capture-{capture_id}.bin"'
    return Response(archived.body, media_type="application/octet-stream", headers=headers)


def _closing(archive: Archive) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            archive.close()
    return lifespan


def _listen(host: str, port: int, what: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        made = socket.create_server((host.strip("[]"), port), family=family, reuse_port=False)
    except OSError as e:
        raise ArchiverError(f"cannot listen on {host}:{port} for {what}: {e.strerror or e}") from None
    # create_server's socket says protocol 0, and asyncio (which uvicorn serves it with) turns
    # Nagle's algorithm off only on connections of a socket that says TCP: left on, every
    # response written in two parts (head, body) waits for the client's delayed ACK, some
    # 40 ms added to every page
    return socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, fileno=made.detach())


def serve(storage_root: Path, host: str, port: int, index_url: str | None = None,
          log_level: str = "warning", store: StoreSettings = StoreSettings(), replay_port: int | None = None,
          allowed_hosts: tuple[str, ...] = (), topics: tuple[str, ...] = ()) -> None:
    import uvicorn

    # port + 1 is the daemon's health listener by default (daemon.listen 127.0.0.1:8771)
    replay_port = port + 2 if replay_port is None else replay_port
    if replay_port == port:
        raise ArchiverError(f"--replay-port {replay_port} is the UI's port: replay needs an origin of its own")
    allowed_names(host, allowed_hosts)  # a bad name is an error before anything starts
    sockets = [_listen(host, port, "the browse UI"), _listen(host, replay_port, "replay (--replay-port)")]
    try:
        app = create_app(storage_root, index_url, store, ui_port=port, replay_port=replay_port, host=host,
                         allowed_hosts=allowed_hosts, topics=topics)
    except sqlite3.Error as e:
        for s in sockets:
            s.close()
        raise StorageError(f"cannot read the archive at {storage_root}: {e}") from None
    log.warning("serving %s on http://%s:%d/ (read-only; replay on port %d)", storage_root, host, port, replay_port)
    # a request still running at shutdown gets a moment, then is cancelled: its work is on a
    # worker thread that ends by itself
    config = uvicorn.Config(app, log_level=log_level, access_log=False, server_header=False,
                            timeout_graceful_shutdown=2, lifespan="on")
    uvicorn.Server(config).run(sockets=sockets)
