"""Which names `archiver serve` answers to, and the headers every one of its responses carries.

The browse UI has no login: what guards it is that only this machine can reach it. A page on
attacker.example can undo that by DNS rebinding — its name is made to resolve to 127.0.0.1,
and the browser, seeing one origin, lets the page read whatever the UI answers. Browsers
always send the name they looked up in the Host header, so answering only the names the
server was started for (loopback names, the address it listens on, and `--allowed-host`
names) closes that hole. Only the name is compared, not the port: a rebinding page cannot
choose its name, while the port a browser uses is often not the one the server listens on
(a container's published port, a proxy).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Awaitable, Callable, Iterable

from ..errors import HostNameError

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_WILDCARD_BINDS = ("0.0.0.0", "::", "[::]", "")
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?")
_HOST_HEADER = re.compile(r"(?P<name>\[[0-9a-fA-F:.]+\]|[^\[\]:/@\s]+)(?::(?P<port>[0-9]{1,5}))?")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def normalize_name(value: str) -> str:
    """A host name or IP address as it is compared with Host headers: lower case, no trailing
    dot, IPv6 in brackets. Raises HostNameError for anything that is not a bare name."""
    raw = value.strip()
    name = raw.lower()
    if name.endswith("."):  # the fully qualified form of the same name
        name = name[:-1]
    inner = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    try:
        ip = ipaddress.ip_address(inner)
    except ValueError:
        ip = None
    if ip is not None:
        return f"[{ip.compressed}]" if ip.version == 6 else ip.compressed
    if not _NAME.fullmatch(name) or ".." in name:
        raise HostNameError(f"allowed host {value!r} is not a host name or IP address "
                            "(give the name alone, without scheme, port or path)")
    return name


def allowed_names(bind_host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """Loopback names, the address the server listens on (unless it listens on every address:
    that says nothing about the names it is reached by), and the names given."""
    names = {normalize_name(n) for n in LOOPBACK_NAMES}
    if bind_host.strip() not in _WILDCARD_BINDS:
        names.add(normalize_name(bind_host))
    names.update(normalize_name(n) for n in extra)
    return frozenset(names)


def host_name(header: str) -> str | None:
    """The name in a Host header ('name', 'name:port', '[v6]:port'), normalized; None when the
    header is not of that form."""
    m = _HOST_HEADER.fullmatch(header.strip())
    if m is None:
        return None
    try:
        return normalize_name(m["name"])
    except HostNameError:
        return None


class HostCheck:
    """ASGI middleware: refuses requests whose Host names a server we are not, and adds
    `X-Content-Type-Options: nosniff` to every response (so no response of ours is ever read
    as a type other than the one it is sent as: a script, a stylesheet, HTML)."""

    def __init__(self, app: ASGIApp, names: frozenset[str]):
        self.app = app
        self.names = names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        raw = [v for k, v in scope.get("headers", []) if k == b"host"]
        problem = None
        if len(raw) != 1:
            problem = (400, "a request needs exactly one Host header" if raw else "the request has no Host header")
        else:
            header = raw[0].decode("latin-1")
            name = host_name(header)
            if name is None:
                problem = (400, f"Host header {header!r} is not a host name with an optional port")
            elif name not in self.names:
                problem = (421, f"this server does not answer to the name {name!r} (Host: {header!r}); it answers "
                                f"to {', '.join(sorted(self.names))} — start it with --allowed-host {name} "
                                f"to add that name")
        if problem is not None:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await _plain(send, *problem)
            return

        async def send_nosniff(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-content-type-options"]
                message = {**message, "headers": [*headers, (b"x-content-type-options", b"nosniff")]}
            await send(message)

        await self.app(scope, receive, send_nosniff)


async def _plain(send: Send, status: int, text: str) -> None:
    body = (text + "\n").encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                            (b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})
