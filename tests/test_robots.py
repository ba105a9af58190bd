"""robots.txt as RFC 9309 and Google's parser read it: encodings by BOM, groups of several
User-agent lines that unknown lines do not split, and the matching rules around them.

The table below is written for this project after the cases of Google's robotstxt test suite
and RFC 9309's examples; the last test checks a whole fetch against a real server.
"""

from __future__ import annotations

import asyncio

import pytest
from protego import Protego

from archiver.settings import FetchSettings
from archiver.fetch import Fetcher
from archiver.robots import robots_text

from .rawserver import RawServer, raw


def allowed(body: bytes | str, agent: str, url: str) -> bool:
    data = body.encode("utf-8") if isinstance(body, str) else body
    return bool(Protego.parse(robots_text(data)).can_fetch(url, agent))


GROUPS = ("allow: /foo/bar/\n\nuser-agent: FooBot\ndisallow: /\nallow: /x/\nuser-agent: BarBot\n"
          "disallow: /\nallow: /y/\n\n\nallow: /w/\nuser-agent: BazBot\n\nuser-agent: FooBot\nallow: /z/\n"
          "disallow: /\n")

CASES = [
    # (robots.txt, agent, url, allowed?)
    ("", "FooBot", "http://h/x", True),
    ("user-agent: FooBot\ndisallow: /\n", "FooBot", "http://h/x/y", False),
    ("foo: FooBot\nbar: /\n", "FooBot", "http://h/x/y", True),  # not robots.txt lines
    ("user-agent FooBot\ndisallow /\n", "FooBot", "http://h/x/y", False),  # colon missing: still meant
    # a group is its User-agent lines and the rules after them; groups for one agent merge
    (GROUPS, "FooBot", "http://h/x/b", True),
    (GROUPS, "FooBot", "http://h/z/d", True),
    (GROUPS, "FooBot", "http://h/y/c", False),
    (GROUPS, "BarBot", "http://h/y/c", True),
    (GROUPS, "BarBot", "http://h/w/a", True),
    (GROUPS, "BarBot", "http://h/z/d", False),
    (GROUPS, "BazBot", "http://h/z/d", True),  # a blank line does not end a group of User-agent lines
    (GROUPS, "FooBot", "http://h/foo/bar/", False),  # rules before any User-agent are ignored
    # unknown lines (and Sitemap) between User-agent lines do not end the group (RFC 9309 2.2.1)
    ("user-agent: FooBot\nfoo: bar\nuser-agent: BarBot\ndisallow: /x\n", "FooBot", "http://h/x", False),
    ("user-agent: FooBot\nsitemap: http://h/s.xml\nuser-agent: BarBot\ndisallow: /x\n", "FooBot",
     "http://h/x", False),
    ("user-agent: FooBot\nnoindex: /x\ncrawl-delay: 1\nuser-agent: BarBot\ndisallow: /x\n", "BarBot",
     "http://h/x", False),
    # names and agents are case-insensitive, paths are not
    ("USER-AGENT: FooBot\nALLOW: /x/\nDISALLOW: /\n", "FooBot", "http://h/x/y", True),
    ("uSeR-aGeNt: FooBot\nAlLoW: /x/\ndIsAlLoW: /\n", "FooBot", "http://h/a/b", False),
    ("User-Agent: FOOBOT\nDisallow: /\n", "foobot", "http://h/a", False),
    ("user-agent: FooBot\ndisallow: /X/\n", "FooBot", "http://h/x/y", True),
    # the * group applies only when no group names the agent
    ("user-agent: *\nallow: /\nuser-agent: FooBot\ndisallow: /\n", "FooBot", "http://h/x/y", False),
    ("user-agent: *\nallow: /\nuser-agent: FooBot\ndisallow: /\n", "BarBot", "http://h/x/y", True),
    ("user-agent: FooBot\nallow: /\nuser-agent: BarBot\ndisallow: /\n", "QuxBot", "http://h/x/y", True),
    # the longest match wins; on a tie, allow
    ("user-agent: FooBot\ndisallow: /x/page.html\nallow: /x/\n", "FooBot", "http://h/x/page.html", False),
    ("user-agent: FooBot\nallow: /x/page.html\ndisallow: /x/\n", "FooBot", "http://h/x/page.html", True),
    ("user-agent: FooBot\ndisallow: /\nallow: /\n", "FooBot", "http://h/x/page.html", True),
    ("user-agent: FooBot\ndisallow: /x\nallow: /x/\n", "FooBot", "http://h/x", False),
    ("user-agent: FooBot\ndisallow: /x\nallow: /x/\n", "FooBot", "http://h/x/", True),
    ("user-agent: FooBot\nallow: /page\ndisallow: /*.html\n", "FooBot", "http://h/page.html", False),
    ("user-agent: FooBot\nallow: /page\ndisallow: /*.html\n", "FooBot", "http://h/page", True),
    # wildcards and end anchors
    ("user-agent: FooBot\ndisallow: /*.php$\n", "FooBot", "http://h/a.php", False),
    ("user-agent: FooBot\ndisallow: /*.php$\n", "FooBot", "http://h/a.php?x=1", True),
    ("user-agent: FooBot\ndisallow: /fish*\n", "FooBot", "http://h/fishheads", False),
    # comments and odd white space
    ("user-agent: FooBot # the bot\n  disallow:   /x   # not this\n", "FooBot", "http://h/x", False),
    ("user-agent: FooBot\r\ndisallow: /x\r\n", "FooBot", "http://h/x", False),
    ("user-agent: FooBot\rdisallow: /x\r", "FooBot", "http://h/x", False),
]


@pytest.mark.parametrize("body,agent,url,expected", CASES)
def test_rules_match_rfc9309_and_googles_reading(body, agent, url, expected):
    assert allowed(body, agent, url) is expected


RULES = "User-agent: *\nDisallow: /private/\n"


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be"])
def test_a_bom_says_the_encoding_and_the_first_group_is_kept(encoding):
    if encoding in ("utf-16-le", "utf-16-be"):
        data = "\ufeff".encode(encoding) + RULES.encode(encoding)
    else:
        data = RULES.encode(encoding)
    assert data[:2] in (b"\xef\xbb", b"\xff\xfe", b"\xfe\xff")
    assert not allowed(data, "archiver", "http://h/private/a")
    assert allowed(data, "archiver", "http://h/public/a")


def test_bytes_that_are_not_utf8_do_not_hide_the_rules():
    data = b"# caf\xe9\nUser-agent: *\nDisallow: /private/\nAllow: /caf\xe9/\n"
    assert not allowed(data, "archiver", "http://h/private/a")


def test_a_bom_robots_txt_is_obeyed_by_the_fetcher():
    """The `*` group of a robots.txt that starts with a UTF-8 BOM keeps the crawler out."""
    body = b"\xef\xbb\xbfUser-agent: *\nDisallow: /private/\n"
    routes = {"/robots.txt": raw(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                                 + str(len(body)).encode() + b"\r\n\r\n" + body),
              "/private/a": raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno"),
              "/public/a": raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")}

    async def go(srv: RawServer):
        f = Fetcher(FetchSettings(allow_private_networks=True, per_host_delay=0, timeout=3))
        try:
            return await f.fetch(srv.url("/private/a")), await f.fetch(srv.url("/public/a"))
        finally:
            await f.aclose()

    with RawServer(routes) as srv:
        private, public = asyncio.run(go(srv))
        paths = [h.split(b" ", 2)[1] for h in srv.requests]
    assert private.error is not None and private.error.reason == "robots"
    assert public.error is None and public.final is not None and public.final.status == 200
    assert b"/private/a" not in paths
