"""Polite, byte-exact HTTP fetching.

One httpx.AsyncClient per host while it is in use (a few keep-alive connections each:
politeness wants that, and httpcore's pool scan grows with pool size; closed after
IDLE_CLIENT unused), a global concurrency cap, a per-host gate,
robots.txt, and redirects followed one hop at a time so each hop is its own capture.

A response is streamed into a spool file (memory up to 1 MiB, then disk) while its SHA-1
block and payload digests are computed, so the WARC writer never has to read it twice to
hash it. `max_body_bytes` is enforced on the wire; the decoded entity handed to parsers is
capped separately (`max_decoded_bytes`), so a compression bomb costs one truncated decode.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO

import httpcore
import httpx

from . import faults
from .decode import ContentDecoder, brotli
from .errors import FetchError, StaleConnection
from .polite import Gates, Ticket, retry_after_seconds
from .robots import RobotsCache
from .settings import FetchSettings, Outlet
from .urls import canonicalize, host_key
from .wire import RecordingBackend, RecordingStream

log = logging.getLogger(__name__)

SPOOL_IN_MEMORY = 1 << 20
MAX_HEADERS = 500  # real responses carry a few dozen; h11 already caps their total size at 100 KiB
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
KEEPALIVE = 5.0  # seconds a pooled connection may idle; httpcore drops it at the pool's next use
# a host's client unused this long is closed: its connections had expired anyway, and with
# thousands of hosts each polled every few minutes the clients and their dead connections
# were most of the daemon's memory (~7 KB a host) and held a file descriptor each
IDLE_CLIENT = 10.0


@dataclass
class Response:
    """One HTTP exchange exactly as it went over the wire, plus what we derived from it."""

    url: str
    started: datetime
    ip: str | None
    status: int
    reason: str
    http_version: str
    headers: httpx.Headers
    request_bytes: bytes
    raw: IO[bytes]  # status line + headers + body as received (chunked framing and all)
    head_length: int
    raw_length: int
    block_sha1: bytes
    payload_sha1: bytes
    truncated: str | None = None  # WARC-Truncated reason
    body: bytes | None = None  # decoded entity (Content-Encoding removed), capped
    body_truncated: bool = False
    body_error: str | None = None

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    @property
    def location(self) -> str | None:
        loc = self.headers.get("location")
        return canonicalize(loc, self.url) if loc else None

    def close(self) -> None:
        self.raw.close()


@dataclass
class FetchResult:
    url: str
    hops: list[Response] = field(default_factory=list)
    robots: list[Response] = field(default_factory=list)  # robots.txt exchanges this fetch caused
    error: FetchError | None = None

    @property
    def final(self) -> Response | None:
        return self.hops[-1] if self.hops else None

    def close(self) -> None:
        for r in (*self.hops, *self.robots):
            r.close()


class _Recorder:
    """Sink for raw response bytes: splits head from body, hashes, spools, enforces the cap."""

    def __init__(self, max_body: int):
        self.max_body = max_body
        self.spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        self.block = hashlib.sha1()
        self.payload = hashlib.sha1()
        self.head_length: int | None = None
        self._head = bytearray()
        self.body_length = 0
        self.over = False

    def __call__(self, data: bytes) -> None:
        if self.over:
            return
        if self.head_length is None:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            end = end + 4 if end >= 0 else -1
            if end < 0:
                lf = self._head.find(b"\n\n")
                end = lf + 2 if lf >= 0 else -1
            if end < 0:
                return
            head, data = bytes(self._head[:end]), bytes(self._head[end:])
            self._head.clear()
            self.head_length = end
            self.block.update(head)
            self.spool.write(head)
        room = self.max_body - self.body_length
        if len(data) > room:
            data = data[:room]
            self.over = True
        if data:
            if faults.ARMED:
                faults.reached("fetch")
            self.block.update(data)
            self.payload.update(data)
            self.spool.write(data)
            self.body_length += len(data)


class _Transport(httpx.AsyncHTTPTransport):
    """httpx transport over our recording network backend (httpx has no option for one)."""

    def __init__(self, backend: RecordingBackend, connections: int, ssl_context: ssl.SSLContext):
        super().__init__(verify=ssl_context, retries=0)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, max_connections=connections, max_keepalive_connections=connections,
            keepalive_expiry=KEEPALIVE, http1=True, http2=False, retries=0, network_backend=backend)


class _Client(httpx.AsyncClient):
    """An AsyncClient that never builds a redirect request. Fetcher follows redirects itself,
    hop by hop, from the Location it parses (`Response.location`); httpx still builds the next
    request for every redirect it returns and raises on a Location it could not follow (data:,
    javascript:, mailto:, hosts it cannot encode), which would cost the answer already received."""

    def _build_redirect_request(self, request: httpx.Request, response: httpx.Response) -> httpx.Request:
        return request


class Fetcher:
    """Fetches URLs politely; call `aclose()` when done."""

    def __init__(self, settings: FetchSettings, gates: Gates | None = None, *,
                 credentials: dict[str, dict[str, str]] | None = None,
                 observer: Callable[[int | None, str | None], None] | None = None):
        """`gates` carries every host's politeness state over from an earlier Fetcher (a
        reload), updated to these settings; `credentials` are the headers sent only to their
        host (outlet credentials; see config.Outlet); `observer` is called after every exchange
        with (HTTP status, None) or (None, failure reason)."""
        self.settings = settings
        if gates is None:
            gates = Gates(settings.per_host_concurrency, settings.per_host_delay)
        else:
            gates.reconfigure(settings.per_host_concurrency, settings.per_host_delay)
        self.gates = gates
        self.robots = RobotsCache(self, settings.user_agent)
        self._global = asyncio.Semaphore(settings.concurrency)
        self.observer = observer
        self._ssl = ssl.create_default_context()
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._last_used: dict[str, float] = {}  # host -> time.monotonic() its last exchange ended
        self._busy: dict[str, int] = {}  # host -> exchanges under way
        self._sweeper: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self.credentials = dict(credentials or {})  # host key -> headers
        encodings = settings.accept_encoding
        if brotli is None:
            encodings = ", ".join(e for e in (x.strip() for x in encodings.split(",")) if e != "br")
        self._headers = {
            "User-Agent": settings.user_agent,
            "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "Accept-Encoding": encodings,
        }

    def _client(self, host: str) -> httpx.AsyncClient:
        client = self._clients.get(host)
        if client is None:
            # a backend per host, so the wire can tell this host's gate when a request really goes out
            backend = RecordingBackend(self.settings.allow_private_networks, on_send=self.gates.get(host).mark_sent)
            transport = _Transport(backend, self.settings.per_host_concurrency, self._ssl)
            client = _Client(transport=transport, follow_redirects=False, trust_env=False,
                             timeout=httpx.Timeout(self.settings.timeout), headers=self._headers)
            self._clients[host] = client
        return client

    def use_credentials(self, credentials: dict[str, dict[str, str]]) -> None:
        """A reloaded config's credentials, from the next request on."""
        self.credentials = dict(credentials)

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
        await asyncio.gather(*self._closing, return_exceptions=True)

    def _ended(self, host: str) -> None:
        """An exchange with `host` is over: its client is closed once unused for IDLE_CLIENT."""
        left = self._busy.get(host, 1) - 1
        if left > 0:
            self._busy[host] = left
        else:
            self._busy.pop(host, None)
        self._last_used[host] = time.monotonic()
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(IDLE_CLIENT, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = time.monotonic()
        for host in [h for h, t in self._last_used.items() if now - t >= IDLE_CLIENT and h not in self._busy]:
            del self._last_used[host]
            client = self._clients.pop(host, None)
            if client is not None:
                task = asyncio.get_running_loop().create_task(client.aclose())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        if self._last_used:
            self._sweeper = asyncio.get_running_loop().call_later(IDLE_CLIENT / 2, self._sweep)

    # ------------------------------------------------------------------ one exchange

    async def _exchange(self, url: str, max_decoded: int, extra_headers: dict[str, str] | None,
                        ticket: Ticket | None = None) -> Response:
        # a keep-alive connection the server had already closed: nothing was received, so
        # another try is safe for a GET; every pooled connection to the host may be such a
        # one (a server that closes without saying so), hence one try more than the pool holds
        tries = self.settings.per_host_concurrency + 1
        host = host_key(url)
        self._busy[host] = self._busy.get(host, 0) + 1
        try:
            for attempt in range(tries):
                try:
                    return await self._exchange_once(url, max_decoded, extra_headers, ticket)
                except StaleConnection as e:
                    if attempt == tries - 1:
                        raise FetchError(url, "protocol", str(e.__cause__ or e)) from None
            raise AssertionError("unreachable")
        finally:
            self._ended(host)

    async def _exchange_once(self, url: str, max_decoded: int, extra_headers: dict[str, str] | None,
                             ticket: Ticket | None) -> Response:
        host = host_key(url)
        client = self._client(host)
        secret = self.credentials.get(host)
        if secret:
            extra_headers = {**(extra_headers or {}), **secret}
        try:
            request = client.build_request("GET", url, headers=extra_headers)
        except (httpx.InvalidURL, UnicodeError, ValueError) as e:
            # hosts httpx will not encode (999.1.1.1, 1.2.3.04, xn--a.com): this URL's failure only
            raise FetchError(url, "bad-url", str(e) or type(e).__name__) from None
        recorder = _Recorder(self.settings.max_body_bytes)
        gate = self.gates.get(host)
        async with gate.slot(self._global, url, max_wait=self.settings.timeout, ticket=ticket):
            started = datetime.now(timezone.utc)
            answered = False
            try:
                async with asyncio.timeout(self.settings.timeout * 4):
                    resp = await client.send(request, stream=True)
                    answered = True
                    try:
                        if len(resp.headers) > MAX_HEADERS:
                            raise FetchError(url, "protocol", f"{len(resp.headers)} response headers "
                                                              f"(more than {MAX_HEADERS})")
                        stream = resp.extensions.get("network_stream")
                        if not isinstance(stream, RecordingStream) or stream.exchange is None:
                            raise FetchError(url, "internal", "response did not come through the recorder")
                        wire = stream.exchange
                        wire.attach(recorder)
                        decoder = ContentDecoder(resp.headers.get("content-encoding", ""), max_decoded)
                        async for chunk in resp.aiter_raw():
                            decoder.feed(chunk)
                            if recorder.over:
                                break
                    finally:
                        await resp.aclose()
            except FetchError:
                recorder.spool.close()
                raise
            except (TimeoutError, httpx.TimeoutException) as e:
                recorder.spool.close()
                raise FetchError(url, "timeout", f"no complete answer within the time limit ({type(e).__name__})")
            except (httpx.RemoteProtocolError, httpx.ReadError) as e:
                recorder.spool.close()
                if not answered and (isinstance(e, httpx.ReadError) or "without sending a response" in str(e)):
                    raise StaleConnection() from e
                raise FetchError(url, _reason(e), str(e) or type(e).__name__)
            except httpx.HTTPError as e:
                recorder.spool.close()
                raise FetchError(url, _reason(e), str(e) or type(e).__name__)
        if recorder.head_length is None:
            recorder.spool.close()
            raise FetchError(url, "protocol", "response headers were not recorded")
        if resp.status_code in (429, 503):
            pause = gate.back_off(retry_after_seconds(resp.headers.get("retry-after")), self.settings.max_retry_after)
            log.warning("%s answered HTTP %d; backing off this host for %.0fs", host, resp.status_code, pause)
        else:
            gate.recovered()
        recorder.spool.flush()
        return Response(
            url=url, started=started, ip=wire.server_addr, status=resp.status_code,
            reason=resp.reason_phrase, http_version=resp.http_version, headers=resp.headers,
            request_bytes=redact_request(bytes(wire.request), secret), raw=recorder.spool, head_length=recorder.head_length,
            raw_length=recorder.head_length + recorder.body_length, block_sha1=recorder.block.digest(),
            payload_sha1=recorder.payload.digest(), truncated="length" if recorder.over else None,
            body=bytes(decoder.out), body_truncated=decoder.truncated or recorder.over,
            body_error=decoder.error)

    # ------------------------------------------------------------------ chains

    async def fetch_raw_chain(self, url: str, max_hops: int, max_decoded: int | None = None,
                              extra_headers: dict[str, str] | None = None,
                              check_robots: bool = False, ticket: Ticket | None = None) -> FetchResult:
        """GET url, following redirects hop by hop; never raises for a failed fetch."""
        result = FetchResult(url)
        seen = {url}
        current = url
        decoded_cap = max_decoded or self.settings.max_decoded_bytes
        while True:
            if check_robots and self.settings.respect_robots:
                why_not, robots_exchanges = await self.robots.check(current)
                result.robots.extend(robots_exchanges)
                if why_not is not None:
                    result.error = why_not
                    return result
            try:
                resp = await self._exchange(current, decoded_cap, extra_headers, ticket)
            except Exception as e:
                if not isinstance(e, FetchError):
                    # whatever else one exchange raises is that URL's failure, never the caller's
                    log.warning("fetch of %s failed unexpectedly", current, exc_info=True)
                    e = FetchError(current, "error", f"{type(e).__name__}: {e}")
                result.error = e
                log.info("fetch failed: %s", e)
                if self.observer is not None:
                    self.observer(None, e.reason)
                return result
            if self.observer is not None:
                self.observer(resp.status, None)
            result.hops.append(resp)
            if resp.status not in REDIRECT_CODES:
                return result
            nxt = resp.location
            if nxt is None:
                result.error = FetchError(current, "bad-redirect",
                                          f"HTTP {resp.status} with unusable Location {resp.headers.get('location')!r}")
                return result
            if nxt in seen:
                result.error = FetchError(current, "redirect-loop", f"redirect back to {nxt}")
                return result
            if len(result.hops) > max_hops:
                result.error = FetchError(url, "too-many-redirects", f"more than {max_hops} redirects")
                return result
            seen.add(nxt)
            current = nxt

    async def fetch(self, url: str, extra_headers: dict[str, str] | None = None,
                    max_decoded: int | None = None, ticket: Ticket | None = None) -> FetchResult:
        """GET a URL as a crawler: robots.txt checked for every hop, redirects followed.
        `max_decoded` lowers the cap on the decoded body kept for parsing (the WARC is unaffected);
        `ticket` is taken before the first request goes out (the caller gives it back)."""
        return await self.fetch_raw_chain(url, self.settings.max_redirects, max_decoded=max_decoded,
                                          extra_headers=extra_headers, check_robots=True, ticket=ticket)


REDACTED = b"[redacted]"


def redact_request(request: bytes, secret: dict[str, str] | None) -> bytes:
    """The request as sent, with the values of credential headers replaced: WARCs are shared
    and exported, credentials must not travel with them."""
    if not secret:
        return request
    names = {k.lower().encode("latin-1") for k in secret}
    head, sep, body = request.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    for i, line in enumerate(lines[1:], 1):
        name, colon, _ = line.partition(b":")
        if colon and name.strip().lower() in names:
            lines[i] = name + b": " + REDACTED
    return b"\r\n".join(lines) + sep + body


def _reason(e: httpx.HTTPError) -> str:
    if isinstance(e, httpx.ConnectError):
        return "connect"
    if isinstance(e, httpx.RemoteProtocolError):
        return "protocol"
    if isinstance(e, httpx.ReadError):
        return "read"
    if isinstance(e, httpx.UnsupportedProtocol):
        return "scheme"
    return type(e).__name__.lower()


__all__ = ["Fetcher", "FetchResult", "Response"]


def host_credentials(outlets: Iterable[Outlet]) -> dict[str, dict[str, str]]:
    """Per host, the credential headers of the outlet(s) naming that host."""
    out: dict[str, dict[str, str]] = {}
    for outlet in outlets:
        headers = outlet.credential_headers()
        if headers:
            for host in outlet.hosts():
                out.setdefault(host, {}).update(headers)
    return out
