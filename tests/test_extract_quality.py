"""What the article text keeps and drops, on small pages written for each rule (none is a copy
of a benchmark page): comment sections and threads go, captions and credits marked up as such
go, embedded posts and linked briefing items stay, a page whose head swallows its body keeps
its body, and a doubtful small choice of readability's is replaced by the article from the
second extractor, which the provenance then names: in the Extraction, on the index row and in
the WARC metadata record of a real crawl, whose texts `archiver verify` re-derives."""

from __future__ import annotations

import asyncio
import glob
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator

from archiver.config import load_config
from archiver.crawl import run_pass
from archiver.extract import (ARTICLE_RULES_VERSION, EXTRACTOR_NAME, EXTRACTOR_VERSION, SECOND_EXTRACTOR_VERSION_FULL,
                              extract_page)
from archiver.index import Index
from archiver.second_opinion import SECOND_EXTRACTOR_NAME

from .localoutlet import outlet_config
from .rawserver import RawServer, raw
from .test_item_failures import _feed, _ok

STORY = [
    "The harbour at Porto Novo reopened on Tuesday after three weeks of repairs, the port authority "
    "said, and the first ferry left on time with forty passengers aboard.",
    "Engineers replaced two hundred metres of the breakwater, which storms had broken in January, and "
    "dredged the channel so that larger boats can enter at low tide.",
    "The mayor, Ana Ribeiro, said the town had lost about a third of its summer bookings while the "
    "port was closed, and that the council would ask for help from the regional fund.",
    "Fishermen, who moved their boats to a beach north of the town during the works, said they were "
    "glad to be back, although the new berths cost more than the old ones.",
    "The authority expects the remaining work on the lighthouse to finish in May, when a second ferry "
    "route to the islands is due to start.",
]
HEAD = "<head><meta charset='utf-8'><title>Harbour reopens after repairs | Coast News</title></head>"


def paras(lines: list[str]) -> str:
    return "".join(f"<p>{line}</p>" for line in lines)


def article(markup: str) -> str:
    return extract_page(markup.encode("utf-8"), "text/html; charset=utf-8").article_text


def has_story(text: str) -> bool:
    return all(line in text for line in STORY)


# a thread inside the story's container, under a heading, with its reply form after it
THREAD = f"""<html>{HEAD}<body><nav><a href='/'>Home</a> <a href='/local'>Local</a></nav>
<div class='story'><h1>Harbour reopens after repairs</h1><div class='story-text'>{paras(STORY)}
<h3>2 Responses</h3><div class='thread'>
<div class='note'><p>I took the ferry this morning, and it was full, which is good news for the cafes
near the quay, but the ticket prices have gone up again.</p></div>
<div class='note'><p>The breakwater should have been fixed years ago, before the storms, and everyone in
town knew it; the council waited far too long.</p></div></div>
<h3>Leave a Reply</h3><p>Your email address will not be published, and we read every message before it
appears here.</p></div></div></body></html>"""

# a comment section named in Portuguese, and the moderation notice under it
COMENTARIOS = f"""<html lang='pt'>{HEAD}<body><div class='materia'><h1>Porto reabre</h1>
<div class='texto'>{paras(STORY)}</div>
<div id='comentarios'>
<p>Maria Souza, 12 de março: Finalmente, depois de tantas semanas de espera, o porto voltou a
funcionar, e a cidade inteira agradece aos engenheiros.</p>
<p>João Lima, 12 de março: Espero que agora consertem também a estrada que leva ao porto, porque ela
está cheia de buracos desde o inverno passado.</p></div>
<p>Comentários com ofensas não serão aprovados pelo moderador.</p></div></body></html>"""

CREDITS = f"""<html>{HEAD}<body><article><h1>Harbour reopens after repairs</h1>
<div class='storyBody'>{paras(STORY[:2])}
<p><img src='/ferry.jpg' alt=''></p><p class='imageCredit'>Pedro Alves for Coast News</p>
<p><span class='story-dateline'>PORTO NOVO, 4 March 2019</span></p>
{paras(STORY[2:])}
<p class='author-note'>Rita Gomes covers the coast for Coast News from Porto Novo.</p></div>
</article></body></html>"""

TWEET = f"""<html>{HEAD}<body><article><h1>Harbour reopens after repairs</h1>{paras(STORY[:3])}
<div class='embed-twitter'><blockquote class='twitter-tweet'><p lang='en'>First ferry out of Porto Novo
in three weeks, right on time. <a href='https://t.co/x1'>pic.twitter.com/x1</a></p>— Coast Ferries
(@coastferries) <a href='https://twitter.com/coastferries/status/1'>March 4, 2019</a></blockquote></div>
{paras(STORY[3:])}</article></body></html>"""

BRIEFING = f"""<html>{HEAD}<body><article><h1>Five things to know this morning</h1>
<p>Here is what is happening on the coast today, in three short items.</p><ol>
<li><strong><a href='/a'>The harbour at Porto Novo has reopened after three weeks of repairs</a>.</strong>
The first ferry left on time with forty passengers aboard.</li>
<li><strong><a href='/b'>Storms are forecast again for the weekend across the northern coast</a>.</strong>
The weather service says winds could reach ninety kilometres an hour.</li>
<li><strong><a href='/c'>The council will vote on the new parking charges near the beach next week</a>.</strong>
Residents have collected two thousand signatures against them.</li></ol>
<div class='related'><ul><li><a href='/d'>Ferry timetable for the spring season</a></li>
<li><a href='/e'>Photos: the storm in January</a></li></ul></div>{paras(STORY[:2])}</article></body></html>"""

# The story sits in a lightbox plugin's wrapper ("popup-gallery"), which readability removes as a
# pop-up; what it has left is the date box, a choice of 175 characters on a page of 1,000.
DOUBTFUL = f"""<html>{HEAD}<body><div id='page'><div class='masthead'><a href='/'>Coast News</a></div>
<div class='date-box'><p><span class='day'>Tuesday</span>, <time datetime='2019-03-04T10:02'>4 March
2019, 10:02</time>, Porto Novo. Updated <time datetime='2019-03-04T11:30'>11:30</time> by the news desk,
with reporting from the islands by Rita Gomes and Pedro Alves, and from Lisbon by our
correspondents.</p></div>
<div class='entry popup-gallery'><h1>Harbour reopens after repairs</h1>{paras(STORY)}</div>
</div></body></html>"""


# what readability's rewriting of <div>s, its link density and its cleaner see: text straight
# in <div>s with <br>s, inline runs beside blocks, <pre>, <picture>, svg paths, javascript:
# links, event attributes, hidden and display:none boxes
LAYOUT = f"""<html>{HEAD}<body><div id='wrap'><div class='top'>Coast News<br>Local edition</div>
<div class='story'>{STORY[0]}<br><br>{STORY[1]}<br><span>{STORY[2]}</span> <b>and more</b>
<div class='inner'><em>{STORY[3]}</em> <a href='javascript:void(0)' onclick='go()'>read on</a></div>
<picture><img src='/a.jpg'></picture><svg><path d='M0 0'/></svg>
<pre>tide table: 06:10 high, 12:25 low</pre>{STORY[4]}</div>
<div hidden>hidden box with a long enough sentence to count, as the readers never see it.</div>
<div style='display: none'>another box nobody sees, although it is long enough to be scored.</div>
<div class='links'><a href='/1'>One story</a>, <a href='/2'>another story</a>, <a href='/3'>a third
story</a>, with a few words between them.</div></div></body></html>"""


# elements whose class or id readability finds unlikely, kept for what they hold: an article,
# a main (with an article nested in it), math, or for sitting in a <pre> or <code>
UNLIKELY = f"""<html>{HEAD}<body><div class='sidebar'><div class='menu'><main><div class='share-bar'>
<article><h1>Harbour reopens after repairs</h1>{paras(STORY[:3])}
<pre><span class='comment'>tide table: 06:10 high, 12:25 low</span></pre>{paras(STORY[3:])}</article></div></main></div></div>
<div class='letters'>{paras(STORY[:2])}</div><div id='footer'><math><mi>x</mi></math>
<code><b class='sponsor'>{STORY[1]}</b></code></div><div class='social'>Share this</div></body></html>"""


def test_the_faster_readability_pass_chooses_as_readability_does():
    from lxml import html as lxml_html
    from readability import Document

    from archiver.htmldoc import parse_document
    from archiver.readabilitypass import summary

    for page in (LAYOUT, THREAD, COMENTARIOS, CREDITS, TWEET, BRIEFING, DOUBTFUL, UNLIKELY):
        theirs = Document(parse_document(page)).summary(html_partial=True)
        ours, page_chars = summary(parse_document(page))
        assert lxml_html.fromstring(ours).text_content() == lxml_html.fromstring(theirs).text_content()
        assert page_chars > len(lxml_html.fromstring(ours).text_content()) / 2


def test_comment_threads_and_sections_are_not_the_article():
    text = article(THREAD)
    assert has_story(text)
    for gone in ("2 Responses", "ticket prices", "waited far too long", "Leave a Reply", "email address"):
        assert gone not in text
    text = article(COMENTARIOS)
    assert has_story(text)
    for gone in ("Maria Souza", "buracos", "moderador"):
        assert gone not in text


def test_captions_credits_datelines_and_author_notes_marked_up_as_such_are_dropped():
    text = article(CREDITS)
    assert has_story(text)
    for gone in ("Pedro Alves", "PORTO NOVO, 4 March", "Rita Gomes covers"):
        assert gone not in text


def test_an_embedded_post_is_quoted_in_the_article():
    text = article(TWEET)
    assert has_story(text)
    assert "First ferry out of Porto Novo in three weeks, right on time." in text
    assert text.index(STORY[2]) < text.index("First ferry out") < text.index(STORY[3])


def test_linked_briefing_items_keep_their_sentences_and_link_lists_still_go():
    text = article(BRIEFING)
    for kept in ("has reopened after three weeks", "winds could reach ninety kilometres",
                 "two thousand signatures against them"):
        assert kept in text
    assert "Ferry timetable" not in text and "Photos: the storm" not in text


def test_a_head_that_swallows_the_body_and_a_missing_title_keep_the_body():
    swallowed = {
        "title": f"<html><head><title>Harbour reopens after repairs<body>{paras(STORY)}</body></html>",
        "script": f"<html><head><script>var ready = 1;</head><body><h1>Harbour</h1>{paras(STORY)}</body></html>",
        "comment": f"<html><head><title>Harbour</title><!-- analytics <body>{paras(STORY)}</body></html>",
    }
    for name, page in swallowed.items():
        ex = extract_page(page.encode("utf-8"), "text/html")
        assert has_story(ex.body_text), name
    assert extract_page(swallowed["title"].encode(), "text/html").title == "Harbour reopens after repairs"
    untitled = f"<html><head><meta charset='utf-8'></head><body><h1>Harbour reopens</h1>{paras(STORY)}</body></html>"
    ex = extract_page(untitled.encode("utf-8"), "text/html")
    assert ex.title == "Harbour reopens" and has_story(ex.body_text)


def test_a_doubtful_small_choice_is_replaced_by_the_article_and_the_extraction_says_whose():
    ex = extract_page(DOUBTFUL.encode("utf-8"), "text/html; charset=utf-8")
    assert has_story(ex.body_text)
    assert (ex.extractor, ex.extractor_version) == ("trafilatura", SECOND_EXTRACTOR_VERSION_FULL)
    assert SECOND_EXTRACTOR_VERSION_FULL == f"{version('trafilatura')}+archiver.{ARTICLE_RULES_VERSION}"
    assert "Tuesday" not in ex.body_text.split("\n")[-1]  # the story, not the date box, ends it
    ex = extract_page(THREAD.encode("utf-8"), "text/html; charset=utf-8")
    assert (ex.extractor, ex.extractor_version) == (EXTRACTOR_NAME, EXTRACTOR_VERSION)


def _metadata_fields(root: Path) -> dict[str, dict[str, str]]:
    """WARC metadata records' fields by target URL, read back with warcio."""
    out: dict[str, dict[str, str]] = {}
    for name in glob.glob(str(root / "**" / "*.warc.gz*"), recursive=True):
        with open(name, "rb") as f:
            for rec in ArchiveIterator(f):
                if rec.rec_type == "metadata":
                    body = rec.content_stream().read().decode("utf-8")
                    fields = dict(line.split(": ", 1) for line in body.splitlines() if ": " in line)
                    out[rec.rec_headers.get_header("WARC-Target-URI")] = fields
    return out


def test_a_crawl_records_which_extractor_made_each_text_and_verify_re_derives_them(tmp_path: Path):
    routes = {"/robots.txt": raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
              "/doubtful.html": raw(_ok(DOUBTFUL.encode("utf-8"), "text/html; charset=utf-8")),
              "/plain.html": raw(_ok(THREAD.encode("utf-8"), "text/html; charset=utf-8"))}
    with RawServer(routes) as srv:
        urls = [srv.url("/doubtful.html"), srv.url("/plain.html")]
        routes["/feed.xml"] = raw(_ok(_feed(urls), "application/rss+xml"))
        cfg = outlet_config(tmp_path / "c.yaml", tmp_path / "root", [srv.url("/feed.xml")],
                            topics="[{name: harbour, any: [breakwater]}]")
        asyncio.run(run_pass(load_config(cfg)))
    with Index.open(tmp_path / "root", readonly=True) as idx:
        rows = {row.url: row for row in idx.captures(kind="article")}
    doubtful, plain = rows[urls[0]], rows[urls[1]]
    assert doubtful.state == plain.state == "archived"
    assert (doubtful.extractor, doubtful.extractor_version) == (SECOND_EXTRACTOR_NAME,
                                                                SECOND_EXTRACTOR_VERSION_FULL)
    assert (plain.extractor, plain.extractor_version) == (EXTRACTOR_NAME, EXTRACTOR_VERSION)
    assert has_story((tmp_path / "root" / doubtful.text_path).read_text(encoding="utf-8"))
    meta = _metadata_fields(tmp_path / "root")
    assert meta[urls[0]]["extractor"] == f"{SECOND_EXTRACTOR_NAME}/{SECOND_EXTRACTOR_VERSION_FULL}"
    assert meta[urls[1]]["extractor"] == f"{EXTRACTOR_NAME}/{EXTRACTOR_VERSION}"

    exe = Path(sys.executable).with_name("archiver")
    dumped = tmp_path / "dump"
    res = subprocess.run([str(exe), "dump", "--config", str(cfg), "--out", str(dumped), "--kind", "article",
                          "--workers", "0"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert any(has_story(p.read_text(encoding="utf-8")) for p in dumped.glob("*.txt"))
    res = subprocess.run([str(exe), "verify", str(dumped), "--config", str(cfg), "--workers", "0"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
