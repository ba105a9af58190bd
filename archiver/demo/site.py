"""A small sample news outlet served on 127.0.0.1, for `archiver demo` and the test suite.

It has what a real outlet has and what a pass must cope with: RSS and Atom feeds, a sitemap
index pointing at a Google News sitemap, a section listing, a site search, on-topic and
off-topic (near-miss) articles, an old URL behind a two-hop redirect chain, a deleted article
(404), a robots.txt with Disallow and Crawl-delay, a gzip-encoded response and a
windows-1252 page. Its pages are styled like an outlet's: a stylesheet that names a
background image, and a photo in every article (what capture mode `requisites` archives
with a page). Every request is logged so tests can see what was asked for.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from .images import harbour_photo, wave_strip

OUTLET = "Harbor Times"
PUBLISHED = "Sat, 14 Jun 2025 09:00:00 GMT"


@dataclass(frozen=True)
class Article:
    path: str
    title: str
    byline: str
    date: str
    paragraphs: tuple[str, ...]
    topics: tuple[str, ...]  # ground truth for the demo config's topics
    charset: str = "utf-8"
    gzip: bool = False
    summary: str = ""


ARTICLES: tuple[Article, ...] = (
    Article("/2025/06/14/blinken-hanoi-visit.html", "Blinken lands in Hanoi as US and Vietnam deepen ties",
            "Mai Nguyen", "2025-06-14T08:30:00Z",
            ("US Secretary of State Antony Blinken arrived in Hanoi on Saturday for talks with Vietnamese "
             "leaders, the latest stop of a week of diplomacy in the region.",
             "Officials in Vietnam said the two sides would discuss trade, climate cooperation and maritime "
             "security, as well as plans for a new embassy compound.",
             "\u201cWe think this is an auspicious time to elevate our partnership,\u201d Blinken told reporters "
             "before meeting Prime Minister Pham Minh Chinh."),
            ("blinken", "vietnam"), summary="The US secretary of state meets Vietnamese leaders."),
    Article("/2025/06/13/south-china-sea-asean.html", "Tensions in the South China Sea shadow ASEAN talks",
            "Daniel Reyes", "2025-06-13T10:00:00Z",
            ("Foreign ministers gathering for regional talks faced fresh questions over the South China Sea "
             "after another encounter between coast guard vessels.",
             "Diplomats said a code of conduct remained the goal, but few expected progress this year."),
            ("south-china-sea",), summary="Coast guard encounters dominate the agenda."),
    Article("/2025/06/12/vietnam-diplomacy-2025.html", "Vietnam\u2019s diplomacy in 2025: a new position",
            "Linh Tran", "2025-06-12T07:00:00Z",
            ("In 2025 diplomacy continued to serve as a foundation for Vietnam\u2019s development and its "
             "partnerships abroad.",
             "Economic diplomacy brought \u20ac2 billion in new investment pledges, officials said \u2014 a "
             "figure they called \u201cencouraging\u201d."),
            ("vietnam",), charset="windows-1252"),
    Article("/2025/06/11/blinken-asia-trip.html", "Blinken\u2019s Asia trip: five stops, one message",
            "Sarah Cole", "2025-06-11T12:00:00Z",
            ("Antony Blinken began an Asia trip that will take him to five capitals in eight days.",
             "At every stop the message is the same: the United States is staying in the region."),
            ("blinken", "asia-trip"), gzip=True),
    Article("/2025/06/10/manila-patrols.html", "Manila and Washington review joint South China Sea patrols",
            "Ana Santos", "2025-06-10T09:15:00Z",
            ("Philippine and American officials met in Manila to review joint patrols in the South China "
             "Sea, a year after they began.",
             "Both sides said the patrols would continue."),
            ("south-china-sea",)),
    Article("/2025/06/09/analysis-blinken-hanoi.html", "Analysis: what Blinken\u2019s visit means for Hanoi",
            "Mai Nguyen", "2025-06-09T15:00:00Z",
            ("Analysts say the visit gives Vietnam room to balance its relations with its two largest "
             "trading partners.",
             "Blinken is expected to return to the region before the end of the year."),
            ("blinken", "vietnam")),
    Article("/2025/06/14/blinken-jakarta.html", "Blinken meets Indonesian counterpart in Jakarta",
            "Rudi Hartono", "2025-06-14T06:00:00Z",
            ("Secretary of State Antony Blinken met Indonesia\u2019s foreign minister in Jakarta on Saturday.",
             "The talks covered trade, climate finance and regional security."),
            ("blinken",)),
    Article("/2025/06/14/city-tram-line.html", "City council approves the new tram line after a long debate",
            "Tom Becker", "2025-06-14T11:00:00Z",
            ("The council voted 31 to 12 for the new line, which will link the harbour with the university.",
             "Construction is due to start next spring."), ()),
    Article("/2025/06/13/vietnamese-food-festival.html", "Vietnamese cuisine festival draws crowds in Berlin",
            "Tom Becker", "2025-06-13T18:00:00Z",
            ("Thousands queued for pho and banh mi at the Vietnamese street food festival on Saturday.",
             "Organisers said the trip to Asia through food was the most popular yet."), ()),
    Article("/2025/06/12/east-china-sea-fishing.html", "East China Sea fishing quotas revised for next season",
            "Ana Santos", "2025-06-12T13:00:00Z",
            ("Regulators revised fishing quotas in the East China Sea after a survey of stocks.",
             "Fishing groups said the cuts were smaller than feared."), ()),
    Article("/private/vietnam-briefing.html", "Internal briefing: Vietnam visit logistics", "Staff",
            "2025-06-14T05:00:00Z", ("This page is disallowed by robots.txt and must never be fetched.",),
            ("vietnam",)),
)
BY_PATH = {a.path: a for a in ARTICLES}
DELETED = "/2025/06/08/deleted-story.html"
REDIRECTS = {"/s/77": "/story/77", "/story/77": "/2025/06/14/blinken-jakarta.html"}
ON_TOPIC = [a for a in ARTICLES if a.topics and not a.path.startswith("/private/")]
DISALLOWED = "/private/"

_NAV = ("<header><a class='brand' href='/'>Harbor Times</a><nav><ul>"
        "<li><a href='/section/world/'>World</a><ul><li><a href='/section/asia/'>Asia</a></li>"
        "<li><a href='/section/europe/'>Europe</a></li></ul></li><li><a href='/section/city/'>City</a></li>"
        "</ul></nav><div class='cookie'>We use cookies to improve your experience. <button>OK</button></div>"
        "</header>")
_FOOT = "<footer><p>\u00a9 2025 Harbor Times. All rights reserved.</p></footer>"

STYLESHEET = "/static/harbor.css"
# the look of a newspaper site: a masthead with a wave strip (an image the stylesheet names),
# serif text, a column for the article and one for the most-read list
_CSS = """\
body { margin: 0; background: #f6f1e7; color: #1f1f1f; font-family: Georgia, "DejaVu Serif", serif; }
header { display: flex; align-items: center; gap: 40px; padding: 16px 40px 24px; color: #fff;
  background: #12355b url(/img/waves.png) repeat-x left bottom; }
header .brand { color: #fff; font-size: 34px; font-weight: bold; font-variant: small-caps; letter-spacing: .05em;
  text-decoration: none; }
header nav ul { list-style: none; display: flex; gap: 22px; margin: 0; padding: 0; }
header nav ul ul { display: none; }
header nav a { color: #cfe0f5; font: 600 13px/1 "DejaVu Sans", Arial, sans-serif; letter-spacing: .08em;
  text-decoration: none; text-transform: uppercase; }
header .cookie { margin-left: auto; font: 12px "DejaVu Sans", Arial, sans-serif; color: #cfe0f5; }
header .cookie button { margin-left: 8px; border: 1px solid #cfe0f5; background: none; color: #fff; }
main { display: grid; grid-template-columns: minmax(0, 1fr) 250px; gap: 48px; max-width: 1080px;
  margin: 32px auto; padding: 0 32px; }
h1 { font-size: 36px; line-height: 1.15; margin: 0 0 12px; color: #111; }
.byline { font: 600 12px "DejaVu Sans", Arial, sans-serif; letter-spacing: .1em; text-transform: uppercase;
  color: #8a6d4b; margin-bottom: 18px; }
figure { margin: 0 0 22px; }
figure img { display: block; width: 100%; height: 280px; object-fit: cover; }
figcaption { font: 12px "DejaVu Sans", Arial, sans-serif; color: #777; margin-top: 6px; }
.body p { font-size: 19px; line-height: 1.6; margin: 0 0 16px; }
.body p:first-child::first-letter { float: left; font-size: 62px; line-height: .9; padding: 4px 8px 0 0;
  color: #12355b; }
.most-read { border-top: 4px solid #12355b; font-family: "DejaVu Sans", Arial, sans-serif; }
.most-read h3 { font-size: 13px; letter-spacing: .12em; text-transform: uppercase; color: #12355b; }
.most-read ol { padding-left: 20px; margin: 0; }
.most-read li { font-size: 14px; line-height: 1.4; margin-bottom: 12px; }
.most-read a, .card a { color: #1f1f1f; text-decoration: none; }
footer { border-top: 1px solid #ddd2c0; color: #777; font: 12px "DejaVu Sans", Arial, sans-serif;
  text-align: center; padding: 16px; }
"""


def _most_read() -> str:
    # the same headlines on every page: a decoy for anyone matching topics on raw HTML
    items = "".join(f"<li><a href='{a.path}'>{html.escape(a.title)}</a></li>" for a in ARTICLES[:3])
    return f"<aside class='most-read'><h3>Most read</h3><ol>{items}</ol></aside>"


def article_html(a: Article) -> bytes:
    charset_meta = f'<meta charset="{a.charset}">'
    paras = "".join(f"<p>{html.escape(p)}</p>" for p in a.paragraphs)
    doc = (f"<!DOCTYPE html><html lang='en'><head>{charset_meta}<title>{html.escape(a.title)} | Harbor Times"
           f"</title><meta property='og:title' content='{html.escape(a.title, quote=True)}'>"
           f"<meta name='author' content='{html.escape(a.byline, quote=True)}'>"
           f"<meta property='article:published_time' content='{a.date}'>"
           f"<link rel='canonical' href='{a.path}'><style>body{{font-family:serif}}</style>"
           f"<link rel='stylesheet' href='{STYLESHEET}'>"
           f"<script>window.dataLayer=[];</script></head><body>{_NAV}<main><article>"
           f"<h1>{html.escape(a.title)}</h1><div class='byline'>By {html.escape(a.byline)}</div>"
           f"<figure><img src='/img/photo.jpg' alt='Photo for: {html.escape(a.title, quote=True)}'>"
           f"<figcaption>File photo. (Harbor Times)</figcaption></figure>"
           f"<div class='body'>{paras}</div></article>{_most_read()}</main>{_FOOT}</body></html>")
    return doc.encode(a.charset)


_SHORT_LINKS = {"/2025/06/14/blinken-jakarta.html": "/s/77"}  # listings link some stories by old short URL


def _listing(title: str, articles: list[Article]) -> bytes:
    cards = "".join(f"<div class='card'><h2><a href='{_SHORT_LINKS.get(a.path, a.path)}'>{html.escape(a.title)}</a></h2>"
                    f"<p>{html.escape(a.paragraphs[0][:80])}</p></div>" for a in articles)
    pages = "<div class='pager'><a href='?page=2'>Next page</a></div>"
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<link rel='stylesheet' href='{STYLESHEET}'></head><body>{_NAV}<main><h1>{html.escape(title)}</h1>{cards}{pages}</main>{_FOOT}"
            f"</body></html>").encode("utf-8")


def _rss(base: str, added: list[Article]) -> bytes:
    items = [*added, ARTICLES[0], ARTICLES[1], ARTICLES[7], ARTICLES[10]]
    out = []
    for a in items:
        link = f"{base}{a.path}?utm_source=rss&utm_medium=feed" if a is ARTICLES[0] else f"{base}{a.path}"
        out.append(f"<item><title>{html.escape(a.title)}</title><link>{html.escape(link)}</link>"
                   f"<description>{html.escape(a.summary or a.paragraphs[0])}</description>"
                   f"<pubDate>{PUBLISHED}</pubDate><guid>{base}{a.path}</guid></item>")
    out.append(f"<item><title>Blinken in Jakarta</title><link>{base}/s/77</link><pubDate>{PUBLISHED}</pubDate></item>")
    out.append(f"<item><title>A story that was deleted</title><link>{base}{DELETED}</link></item>")
    return (f"<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>Harbor Times</title>"
            f"<link>{base}/</link><description>News</description>{''.join(out)}</channel></rss>").encode("utf-8")


def _atom(base: str) -> bytes:
    entries = "".join(
        f"<entry><title>{html.escape(a.title)}</title><link rel='alternate' href='{base}{a.path}'/>"
        f"<id>{base}{a.path}</id><updated>{a.date}</updated><summary>{html.escape(a.paragraphs[0])}</summary>"
        f"</entry>" for a in (ARTICLES[2], ARTICLES[8]))
    return (f"<?xml version='1.0' encoding='utf-8'?><feed xmlns='http://www.w3.org/2005/Atom'>"
            f"<title>Harbor Times</title><id>{base}/</id><updated>2025-06-14T12:00:00Z</updated>{entries}"
            f"</feed>").encode("utf-8")


def _sitemap_index(base: str) -> bytes:
    return (f"<?xml version='1.0' encoding='UTF-8'?><sitemapindex xmlns='http://www.sitemaps.org/schemas/"
            f"sitemap/0.9'><sitemap><loc>{base}/sitemap-news.xml</loc><lastmod>2025-06-14</lastmod></sitemap>"
            f"</sitemapindex>").encode("utf-8")


def _news_sitemap(base: str) -> bytes:
    urls = "".join(
        f"<url><loc>{base}{a.path}</loc><news:news><news:publication><news:name>Harbor Times</news:name>"
        f"<news:language>en</news:language></news:publication><news:publication_date>{a.date}"
        f"</news:publication_date><news:title>{html.escape(a.title)}</news:title></news:news></url>"
        for a in (ARTICLES[3], ARTICLES[9], ARTICLES[0]))
    return (f"<?xml version='1.0' encoding='UTF-8'?><urlset xmlns='http://www.sitemaps.org/schemas/sitemap/0.9' "
            f"xmlns:news='http://www.google.com/schemas/sitemap-news/0.9'>{urls}</urlset>").encode("utf-8")


@dataclass
class Hit:
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    at: float = 0.0  # time.monotonic() when the request arrived
    status: int = 0


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass

    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        site = self.server.site
        if status == 200 and site.etags:
            tag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
            extra = {**(extra or {}), "ETag": tag}
            if self.headers.get("If-None-Match") == tag:
                status, body = 304, b""
                extra = {"ETag": tag}
        self._hit.status = status
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        site = self.server.site
        self._hit = Hit(self.path, {k.lower(): v for k, v in self.headers.items()}, time.monotonic())
        with site.lock:
            site.hits.append(self._hit)
        parts = urlsplit(self.path)
        path, base = parts.path, site.base_url
        if path == "/robots.txt":
            body = (f"User-agent: *\nDisallow: {DISALLOWED}\nCrawl-delay: {site.crawl_delay}\n"
                    f"Sitemap: {base}/sitemap.xml\n").encode()
            return self._send(200, body, "text/plain")
        if path == "/rss.xml":
            return self._send(200, _rss(base, site.added), "application/rss+xml; charset=utf-8")
        if path == "/atom.xml":
            return self._send(200, _atom(base), "application/atom+xml")
        if path == "/sitemap.xml":
            return self._send(200, _sitemap_index(base), "application/xml")
        if path == "/sitemap-news.xml":
            return self._send(200, _news_sitemap(base), "application/xml")
        if path == "/section/world/":
            return self._send(200, _listing("World", [ARTICLES[4], ARTICLES[7], ARTICLES[1]]),
                              "text/html; charset=utf-8")
        if path == "/search":
            q = parse_qs(parts.query).get("q", [""])[0].lower()
            hits = [a for a in ARTICLES if q and not a.path.startswith("/private/")
                    and q in (a.title + " " + " ".join(a.paragraphs)).lower()]
            return self._send(200, _listing(f"Search results for {q}", hits), "text/html; charset=utf-8")
        if path == STYLESHEET:
            return self._send(200, _CSS.encode(), "text/css; charset=utf-8")
        if path == "/img/waves.png":
            return self._send(200, wave_strip(), "image/png")
        if path == "/img/photo.jpg":  # a PNG whatever the name says, as image CDNs serve them
            return self._send(200, harbour_photo(), "image/png")
        if path in REDIRECTS:
            return self._send(301, b"", "text/html", {"Location": REDIRECTS[path]})
        a = site.article(path)
        if a is None:
            return self._send(404, b"<html><body><h1>Not found</h1></body></html>", "text/html; charset=utf-8")
        body = article_html(a)
        ctype = "text/html" if a.charset != "utf-8" else "text/html; charset=utf-8"
        if a.gzip and "gzip" in self.headers.get("Accept-Encoding", ""):
            return self._send(200, gzip.compress(body, mtime=0), ctype,
                              {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
        return self._send(200, body, ctype)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    site: "SampleSite"


class SampleSite:
    """Start with `with SampleSite() as site:`; `site.base_url` is http://127.0.0.1:PORT."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, crawl_delay: float = 0.1, etags: bool = True):
        self.crawl_delay = crawl_delay
        self.etags = etags
        self.added: list[Article] = []  # published while running: listed first in the RSS feed
        self.revised: dict[str, Article] = {}  # path -> a changed version of an article
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        self._server = _Server((host, port), _Handler)
        self._server.site = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="sample-site", daemon=True)

    def article(self, path: str) -> Article | None:
        with self.lock:
            return self.revised.get(path) or next((a for a in self.added if a.path == path), None) or \
                BY_PATH.get(path)

    def publish(self, article: Article) -> None:
        with self.lock:
            self.added.insert(0, article)

    def revise(self, path: str, paragraph: str) -> None:
        """Change an article: a correction appended to its body."""
        with self.lock:
            a = self.revised.get(path) or BY_PATH[path]
            self.revised[path] = Article(a.path, a.title, a.byline, a.date, (*a.paragraphs, paragraph), a.topics,
                                         a.charset, a.gzip, a.summary)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "SampleSite":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "SampleSite":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def config_yaml(self, storage_root: str) -> str:
        """A config for this site; topics as in config/example.yaml's seed topics."""
        b = self.base_url
        return f"""\
storage:
  root: {storage_root}
  warc:
    operator: "archiver demo"
fetch:
  user_agent: "archiver-demo/1.0"
  concurrency: 8
  per_host_concurrency: 2
  per_host_delay: 0.05
  timeout: 10
  allow_private_networks: true
discover:
  max_age_days: null
topics:
  - name: blinken
    any: ["Blinken"]
  - name: vietnam
    any: ["Vietnam"]
  - name: south-china-sea
    any: ["South China Sea"]
  - name: asia-trip
    any: ["Asia trip"]
outlets:
  - name: harbor-times
    feeds: ["{b}/rss.xml", "{b}/atom.xml"]
    sitemaps: ["auto"]
    pages: ["{b}/section/world/"]
    search: ["{b}/search?q={{query}}"]
    schedule: {{every: 15m}}
"""


REVISED_PATH = "/2025/06/10/manila-patrols.html"
CORRECTION = "Correction: the patrols began two years ago, not one, the Mekong office said."


def archive_with_revision(site: SampleSite, root: Path) -> Path:
    """Archive the site, correct one story, archive again (refetch at once): an archive with
    two versions of a URL, as the browse tests and screenshots need. Returns the config path."""
    import asyncio

    from ..config import load_config
    from ..crawl import run_pass

    config = root / "config.yaml"
    config.write_text(site.config_yaml(str(root / "storage")).replace(
        "discover:\n", "refetch:\n  after: [0s]\ndiscover:\n"), encoding="utf-8")
    cfg = load_config(config)
    asyncio.run(run_pass(cfg))
    site.revise(REVISED_PATH, CORRECTION)
    asyncio.run(run_pass(cfg))
    return config
