"""`sitemaps: [auto]` and `home:`: robots.txt's Sitemap lines first, the well-known paths when
there are none; an outlet with nothing to start from is refused by check-config."""

from __future__ import annotations

import asyncio
from pathlib import Path

from archiver.config import load_config
from archiver.crawl import WELL_KNOWN_SITEMAPS, run_pass
from archiver.index import Index

from .conftest import invoke
from .rawserver import RawServer, raw
from .test_item_failures import _ok, _page

NOT_FOUND = raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")


def _urlset(urls: list[str]) -> bytes:
    return ('<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            + "".join(f"<url><loc>{u}</loc></url>" for u in urls) + "</urlset>").encode()


def _crawl(tmp_path: Path, outlet_yaml: str) -> tuple[list, object]:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""\
storage: {{root: {tmp_path / 'root'}}}
fetch: {{allow_private_networks: true, per_host_delay: 0}}
extract: {{workers: 0}}
topics: [{{name: vietnam, any: [Vietnam]}}]
outlets:
  - {outlet_yaml}
""")
    result = asyncio.run(run_pass(load_config(cfg)))
    with Index.open(tmp_path / "root", readonly=True) as idx:
        return list(idx.captures()), result


def test_auto_probes_the_well_known_paths_when_robots_names_none(tmp_path: Path):
    routes = {"/robots.txt": raw(_ok(b"User-agent: *\nDisallow: /private/\n", "text/plain")),
              "/": raw(_ok(b"<html><body><p>Front page</p></body></html>")),
              "/story": raw(_ok(_page("Vietnam story", "Text.")))}
    with RawServer(routes) as srv:
        routes["/news-sitemap.xml"] = raw(_ok(_urlset([srv.url("/story")]), "application/xml"))
        rows, result = _crawl(tmp_path, f'{{name: x, home: "{srv.url("/")}", sitemaps: [auto]}}')
        asked = [h.split(b" ", 2)[1].decode() for h in srv.requests]
    for path in WELL_KNOWN_SITEMAPS:
        assert path in asked
    assert "/" in asked  # home is read as a listing page
    assert [r.url for r in rows if r.kind == "article" and r.state == "archived"] == [srv.url("/story")]
    stats = result.outlets[0]
    assert not stats.errors, stats.errors  # guessed paths that are not there are no problem


def test_auto_takes_robots_sitemap_lines_and_probes_nothing(tmp_path: Path):
    routes = {"/": raw(_ok(b"<html><body><p>Front page</p></body></html>")),
              "/story": raw(_ok(_page("Vietnam story", "Text.")))}
    with RawServer(routes) as srv:
        routes["/robots.txt"] = raw(_ok(f"Sitemap: {srv.url('/maps/one.xml')}\n".encode(), "text/plain"))
        routes["/maps/one.xml"] = raw(_ok(_urlset([srv.url("/story")]), "application/xml"))
        rows, _ = _crawl(tmp_path, f'{{name: x, home: "{srv.url("/")}", sitemaps: [auto]}}')
        asked = [h.split(b" ", 2)[1].decode() for h in srv.requests]
    assert "/maps/one.xml" in asked and not set(WELL_KNOWN_SITEMAPS) & set(asked)
    assert [r.url for r in rows if r.kind == "article" and r.state == "archived"] == [srv.url("/story")]


def test_an_outlet_with_nothing_to_start_from_is_refused(tmp_path: Path):
    p = tmp_path / "c.yaml"
    p.write_text("topics: [{name: t, any: [x]}]\noutlets:\n  - name: o\n    sitemaps: [auto]\n")
    proc = invoke("check-config", str(p))
    assert proc.returncode == 2
    assert proc.stdout.strip() == (f"{p}:3: outlets[o]: sitemaps: [auto] needs a host to start from: "
                                   "give the outlet a home: URL")
    p.write_text("topics: [{name: t, any: [x]}]\noutlets:\n  - name: o\n    sitemaps: [auto]\n"
                 "    home: https://example.org/\n")
    assert invoke("check-config", str(p)).stdout.strip() == "ok"
