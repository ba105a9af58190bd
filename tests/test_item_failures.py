"""One bad item costs one row: a candidate, redirect hop, document or article that fails in
any stage leaves its failure row with a reason, and the rest of the outlet's pass goes on.

The first test serves the items that broke whole passes (URLs httpx will not build a request
for, redirects to data:/javascript:/mailto:, charsets that name codecs which are not text
encodings) from a real server on 127.0.0.1 beside good articles. The second injects a failure
into each stage of a pass over the sample outlet for one item at a time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from archiver import faults
from archiver.config import load_config
from archiver.crawl import run_pass
from archiver.demo.site import ON_TOPIC, REDIRECTS
from archiver.index import Index

from .conftest import write_config
from .rawserver import RawServer, raw
from .test_recover import all_records_ok, rows_point_at_records

BAD_HOSTS = ["http://999.1.1.1/x", "http://1.2.3.04/", "http://xn--a.com/story"]
BAD_REDIRECTS = {"/to-data": "data:text/html,<h1>hi</h1>", "/to-js": "javascript:alert(1)",
                 "/to-mail": "mailto:desk@example.com"}
NOT_TEXT_CODECS = ["rot13", "base64", "zlib", "hex", "bz2", "uu", "quopri", "idna", "undefined"]


def _page(title: str, body: str, charset_meta: str = "") -> bytes:
    meta = f'<meta charset="{charset_meta}">' if charset_meta else ""
    return (f"<!DOCTYPE html><html><head>{meta}<title>{title}</title></head><body><article><h1>{title}</h1>"
            + "".join(f"<p>{body} Paragraph {i} about Vietnam's diplomacy and its neighbours in the region.</p>"
                      for i in range(6))
            + "</article></body></html>").encode("utf-8")


def _ok(body: bytes, content_type: str = "text/html") -> bytes:
    return (f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def _feed(links: list[str]) -> bytes:
    items = "".join(f"<item><title>Story {i}</title><link>{link.replace('&', '&amp;')}</link></item>"
                    for i, link in enumerate(links))
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{items}</channel></rss>'.encode()


def test_bad_urls_redirects_and_charsets_cost_one_row_each(tmp_path: Path):
    routes = {"/robots.txt": raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")}
    good = [f"/good-{i}" for i in range(3)]
    for path in good:
        routes[path] = raw(_ok(_page(f"Vietnam talks {path}", "A plain article.")))
    for path, to in BAD_REDIRECTS.items():
        routes[path] = raw(f"HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n".encode())
    for name in NOT_TEXT_CODECS:
        routes[f"/header-{name}"] = raw(_ok(_page(f"Vietnam header {name}", "Header charset."),
                                            f"text/html; charset={name}"))
        routes[f"/meta-{name}"] = raw(_ok(_page(f"Vietnam meta {name}", "Meta charset.", name)))
    with RawServer(routes) as srv:
        links = ([srv.url(p) for p in good] + BAD_HOSTS + [srv.url(p) for p in BAD_REDIRECTS]
                 + [srv.url(f"/{where}-{n}") for n in NOT_TEXT_CODECS for where in ("header", "meta")])
        routes["/feed.xml"] = raw(_ok(_feed(links), "application/rss+xml"))
        cfg_path = tmp_path / "c.yaml"
        cfg_path.write_text(f"""\
storage: {{root: {tmp_path / 'root'}}}
fetch: {{allow_private_networks: true, per_host_delay: 0, timeout: 15}}
extract: {{workers: 0}}
topics: [{{name: vietnam, any: [Vietnam]}}]
outlets:
  - name: odd
    feeds: ["{srv.url('/feed.xml')}"]
""")
        result = asyncio.run(run_pass(load_config(cfg_path)))
    stats = result.outlets[0]
    root = tmp_path / "root"
    with Index.open(root, readonly=True) as idx:
        rows = {r.url: r for r in idx.captures(kind="article")}
        passes = [p.error for p in idx.passes()]
    # the pass itself ran to its end: no pass-level exception
    assert not any("Error" in (e or "").split(":")[0] for e in passes), passes
    assert not [e for e in stats.errors if e.startswith(("InvalidURL", "ValueError", "LookupError"))], stats.errors
    for path in good:
        assert rows[srv.url(path)].state == "archived"
    for url in BAD_HOSTS:
        assert rows[url].state == "failed" and "bad-url" in rows[url].error, (url, rows[url].error)
    for path in BAD_REDIRECTS:
        row = rows[srv.url(path)]
        assert row.state == "failed" and "bad-redirect" in row.error and "unusable Location" in row.error, row.error
    for name in NOT_TEXT_CODECS:
        for where in ("header", "meta"):
            row = rows[srv.url(f"/{where}-{name}")]
            # a label that is not a text encoding is ignored, as browsers ignore it: the page is
            # read as UTF-8 and archived on its topic
            assert row.state == "archived" and row.topics == ["vietnam"], (name, where, row.state, row.error)
            text = (root / row.text_path).read_text(encoding="utf-8")
            assert f"Vietnam {where} {name}" in text
    assert all_records_ok(root) and rows_point_at_records(root)


# (stage, which item gets the failure, the URL whose row shows it, articles lost with it)
_JAKARTA = "/2025/06/14/blinken-jakarta.html"
STAGE_CASES = [
    ("document", "/rss.xml", "/rss.xml", 0),
    ("parse", "/atom.xml", "/atom.xml", 0),
    ("parse", "/sitemap", None, 0),
    ("candidate", ON_TOPIC[0].path, ON_TOPIC[0].path, 1),
    ("redirect", "/story/77", "/s/77", 1),
    ("extract", ON_TOPIC[1].path, ON_TOPIC[1].path, 1),
    ("decide", ON_TOPIC[2].path, ON_TOPIC[2].path, 1),
    ("keep", ON_TOPIC[3].path, ON_TOPIC[3].path, 1),
]


@pytest.mark.parametrize("stage,target,row_path,lost", STAGE_CASES,
                         ids=[f"{c[0]}-{c[1].strip('/').split('/')[-1]}" for c in STAGE_CASES])
def test_a_failure_in_any_stage_costs_only_its_item(site, tmp_path: Path, monkeypatch, stage, target, row_path,
                                                    lost):
    assert REDIRECTS["/s/77"] == "/story/77" and REDIRECTS["/story/77"] == _JAKARTA
    root = tmp_path / "root"
    cfg_path = write_config(site, root)
    cfg_path.write_text(cfg_path.read_text() + "extract:\n  workers: 0\n")
    monkeypatch.setattr(faults, "FAIL_AT", (stage, target))
    result = asyncio.run(run_pass(load_config(cfg_path)))
    base = site.base_url
    with Index.open(root, readonly=True) as idx:
        rows = list(idx.captures())
        pass_errors = [p.error for p in idx.passes()]
    archived = {r.final_url for r in rows if r.kind == "article" and r.state == "archived"}
    expected = {base + a.path for a in ON_TOPIC}
    missing = expected - archived
    assert len(missing) == lost, (stage, sorted(missing))
    injected = [r for r in rows if r.error and "InjectedFault" in r.error]
    assert injected, f"no row names the injected failure at {stage}"
    if row_path is not None:
        assert any(r.url == base + row_path for r in injected), [(r.url, r.error) for r in injected]
    if lost:
        assert missing == {base + (REDIRECTS[REDIRECTS[row_path]] if row_path in REDIRECTS else row_path)}
        assert result.outlets[0].failed >= 2  # the deleted article and this one
    # the pass ended normally: its error lists the item's problem, not an exception of its own
    assert all(e is None or "unexpected error" in e or "HTTP" in e for e in pass_errors), pass_errors
    assert all_records_ok(root) and rows_point_at_records(root)
