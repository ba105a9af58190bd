"""The replay origin of `archiver serve`: archived bytes, rewritten, on a port of their own.

It serves only `/replay/ID` (one capture), `/rendered/ID` (the DOM the browser left of a page
it rendered, screens.py, rewritten and sealed as replay is) and `/web/<timestamp>/<url>` (the
capture of a URL nearest in time), plus `/healthz`. Keeping archived bytes off the browse
UI's origin means nothing archived can ever run as, or be loaded as, part of the UI (a
robots.txt captured as `application/javascript` is a script of the replay origin, not of the
UI's). These responses are meant to be seen inside the UI's replay frame: a top-level
navigation to them (a pasted link, a bookmark) is sent to the UI's page for the same address
(for `/replay/ID` and `/rendered/ID` the frame around it; for `/web/…` the permalink, which is
the capture's page and frames it when asked), so an archived page is never a top-level
document where the frame's checks would not apply.
"""

from __future__ import annotations

import logging
import re
from datetime import timezone
from typing import TYPE_CHECKING, Any, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..errors import StorageError, TooLarge
from .replay import Archived, replay_body, replay_csp
from .screens import rendered_dom, rendered_rows
from ..clock import parse_iso

if TYPE_CHECKING:
    from jinja2 import Environment

    from .app import Archive

log = logging.getLogger(__name__)

_MEDIA_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(\s*;[\x20-\x7e]*)?")


def timestamp14(iso: str) -> str:
    return "".join(ch for ch in iso if ch.isdigit())[:14]


def http_date(iso: str) -> str:
    try:
        dt = parse_iso(iso).astimezone(timezone.utc)
    except ValueError:
        return iso
    return dt.strftime("%a, %d %b %Y %H:%M:%S GMT")


def web_url(request: Request) -> str:
    """The archived URL in a `/web/<timestamp>/<url>` request."""
    url = request.path_params["url"]
    # Starlette merges '//' in paths; restore 'https://host' from 'https:/host'
    for scheme in ("http:/", "https:/"):
        if url.startswith(scheme) and not url.startswith(scheme + "/"):
            url = scheme + "/" + url[len(scheme):]
    if request.url.query:
        url += "?" + request.url.query
    return url


def as_requested(request: Request) -> str:
    """The path and query as the client sent them (still percent-encoded: an archived URL
    may hold %2F or %3F that decoding would change)."""
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1") if raw else request.url.path
    return path + (f"?{request.url.query}" if request.url.query else "")


def origin_of(request: Request, port: int) -> str:
    """The origin a browser reaches `port` of this server at, under the name it used for this
    request (the Host header, already checked against the names we answer to)."""
    host = request.headers.get("host", "")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return f"{request.url.scheme}://{name}:{port}"


def wants_top_level(request: Request) -> bool:
    """A top-level navigation, by the browser's Fetch Metadata (sent by Chromium, Firefox and
    Safari to loopback and HTTPS origins). Without the header nothing is assumed."""
    return request.headers.get("sec-fetch-dest") == "document"


def _safe_media_type(value: str) -> str:
    return value if _MEDIA_TYPE.fullmatch(value.strip()) else "application/octet-stream"


def create_replay_app(archive: "Archive", env: "Environment", ui_port: int,
                      off_loop: Callable[..., Any]) -> Starlette:
    def headers_for(request: Request) -> dict[str, str]:
        return {"Content-Security-Policy": replay_csp(origin_of(request, request.scope["server"][1])),
                "Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "X-DNS-Prefetch-Control": "off"}

    def missing(request: Request, what: str) -> Response:
        body = env.get_template("missing.html").render(what=what)
        return HTMLResponse(body, status_code=404, headers=headers_for(request))

    def replayed(request: Request, row: Any, ts: str, read: Callable[[], Archived] | None = None) -> Response:
        """`read`: the document to show in place of the row's response (a rendered DOM)."""
        headers = headers_for(request)
        try:
            archived = read() if read is not None else archive.read_response(row)
        except (OSError, ValueError, StopIteration, StorageError) as e:
            return HTMLResponse(f"<p>capture {row.id}: cannot read its WARC record ({type(e).__name__})</p>", 500,
                                headers=headers)
        try:
            body, ctype = replay_body(archived, ts)
        except TooLarge as e:
            body = env.get_template("missing.html").render(
                notice=f"Capture {row.id} is {e}, too large to replay here; its texts and its raw response body "
                       "are on its capture page.")
            return HTMLResponse(body, status_code=200, headers=headers)
        headers["Memento-Datetime"] = http_date(row.fetched_at)
        if request.headers.get("sec-fetch-dest") == "font":
            # a web font is always loaded in CORS mode, and a replayed page's origin is opaque
            # (its sandbox): "null" is the only answer that lets its fonts load. Only font loads
            # get it, so no page's fetch() can read the archive this way.
            headers["Access-Control-Allow-Origin"] = "null"
        return Response(body, status_code=200, media_type=_safe_media_type(ctype), headers=headers)

    def to_ui(request: Request) -> Response:
        target = origin_of(request, ui_port) + as_requested(request)
        return RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})

    def capture(request: Request) -> Response:
        cid = request.path_params["cid"]
        row = archive.row(cid)
        source = archive.replay_row(row) if row is not None else None
        if source is None or not source.warc_file or source.warc_offset is None:
            return missing(request, f"capture {cid}")
        return replayed(request, source, timestamp14(source.fetched_at))

    def rendered(request: Request) -> Response:
        cid = request.path_params["cid"]
        row = archive.row(cid)
        source = archive.replay_row(row) if row is not None else None
        dom = rendered_rows(archive, source)[0]
        if source is None or dom is None:
            return missing(request, f"a page rendered by the browser for capture {cid}")
        return replayed(request, source, timestamp14(source.fetched_at), lambda: rendered_dom(archive, dom))

    def web(request: Request) -> Response:
        ts, url = request.path_params["ts"], web_url(request)
        row = archive.nearest(url, ts)
        if row is None:
            return missing(request, url)
        return replayed(request, row, ts)

    def bounded(work: Callable[[Request], Response]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            if wants_top_level(request):
                return to_ui(request)
            return await off_loop(work, request, lambda message: HTMLResponse(
                f"<p>{message}</p>", status_code=503, headers=headers_for(request)))
        return endpoint

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[
        Route("/replay/{cid:int}", bounded(capture)), Route("/rendered/{cid:int}", bounded(rendered)),
        Route("/web/{ts}/{url:path}", bounded(web)),
        Route("/healthz", healthz),
    ])
