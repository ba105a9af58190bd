"""The browse UI and the replay origin answer only to the names they were started for.

A DNS-rebinding page (attacker.example made to resolve to 127.0.0.1) reaches the server with
`Host: attacker.example`; it must get a refusal, not the archive. Raw HTTP requests carrying
each kind of Host value are sent to a real `archiver serve` on loopback.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from archiver.index import Index

from .conftest import Crawled, invoke
from .test_browse import start_serve, stop
from .test_daemon import free_port

ALLOWED = "Archive.Example"  # given with --allowed-host; compared case-insensitively


def request(base: str, path: str, host_lines: list[str], version: str = "HTTP/1.1") -> tuple[int, bytes]:
    """One raw request with exactly the given Host header lines; (status, body)."""
    where = urlsplit(base)
    with socket.create_connection((where.hostname, where.port), timeout=10) as s:
        s.sendall((f"GET {path} {version}\r\n" + "".join(f"{h}\r\n" for h in host_lines)
                   + "Connection: close\r\n\r\n").encode("latin-1"))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.fixture(scope="module")
def server(crawled: Crawled):
    proc, base, replay = start_serve(crawled.config_path, "--allowed-host", ALLOWED)
    try:
        yield base, replay
    finally:
        stop(proc)


def test_only_loopback_names_and_allowed_hosts_get_the_archive(server, crawled: Crawled):
    base, replay = server
    ui_port, replay_port = base.rsplit(":", 1)[1], replay.rsplit(":", 1)[1]
    with Index.open(crawled.root, readonly=True) as idx:
        article = next(idx.captures(kind="article", state="archived")).id
    for origin, port, path, marker in ((base, ui_port, "/api/search?q=Blinken", b'"total"'),
                                       (replay, replay_port, f"/replay/{article}", b"Blinken")):
        answered = {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", f"LOCALHOST:{port}", "127.0.0.1",
                    "localhost.", f"archive.example:{port}", f"{ALLOWED}:{port}",
                    "127.0.0.1:1"}  # the name decides, not the port (see hostcheck.py)
        for host in sorted(answered):
            status, body = request(origin, path, [f"Host: {host}"])
            assert status == 200 and marker in body, (origin, host, status, body[:200])
        refused = {f"attacker.example:{port}": 421, "attacker.example": 421, f"127.0.0.1.nip.io:{port}": 421,
                   f"localhost.attacker.example:{port}": 421, f"[::2]:{port}": 421, f"127.0.0.2:{port}": 421,
                   "": 400, f"user@127.0.0.1:{port}": 400, f"127.0.0.1:{port}/x": 400}
        for host, want in refused.items():
            status, body = request(origin, path, [f"Host: {host}"])
            assert status == want and marker not in body, (origin, host, status, body[:200])
        status, body = request(origin, "/healthz", [f"Host: attacker.example:{port}"])
        assert status == 421 and b"attacker.example" in body and b"--allowed-host" in body
        # no Host at all: HTTP/1.0 lets a client leave it out, HTTP/1.1 does not
        for version in ("HTTP/1.0", "HTTP/1.1"):
            status, body = request(origin, path, [], version)
            assert status == 400 and marker not in body, (origin, version, status, body)
        status, body = request(origin, path, [f"Host: 127.0.0.1:{port}", "Host: attacker.example"])
        assert status == 400 and marker not in body


def test_the_compose_health_check_passes(server):
    """docker/compose.yaml's own health check command, run against this server."""
    base, _ = server
    compose = yaml.safe_load((Path(__file__).parent.parent / "docker" / "compose.yaml").read_text())
    check = compose["services"]["browse"]["healthcheck"]["test"]
    assert check[:3] == ["CMD", "python", "-c"]
    code = check[3].replace("${ARCHIVER_BROWSE_PORT:-8770}", base.rsplit(":", 1)[1])
    assert subprocess.run([sys.executable, "-c", code], timeout=10).returncode == 0


def test_the_address_it_listens_on_is_one_of_its_names(crawled: Crawled):
    proc, base, replay = start_serve(crawled.config_path, host="127.0.0.2")
    try:
        port = base.rsplit(":", 1)[1]
        assert request(base, "/api/search?q=Blinken", [f"Host: 127.0.0.2:{port}"])[0] == 200
        assert request(base, "/api/search?q=Blinken", [f"Host: {ALLOWED}:{port}"])[0] == 421
    finally:
        stop(proc)


def test_a_bad_allowed_host_is_refused_at_start(crawled: Crawled):
    res = invoke("serve", "--config", str(crawled.config_path), "--port", str(free_port()), "--allowed-host", "http://archive/")
    assert res.returncode == 1 and "'http://archive/'" in res.stderr and "host name" in res.stderr, res.stderr
