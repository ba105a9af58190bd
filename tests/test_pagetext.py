"""The whole-page text rules (see archiver/pagetext.py), one fixture per rule, plus a seed-like page."""

from __future__ import annotations

from archiver.pagetext import render_html


def r(body: str) -> str:
    return render_html(f"<!DOCTYPE html><html><head><title>T</title></head><body>{body}</body></html>")


def test_rule1_dropped_elements():
    out = r("<script>var x='secret'</script><style>.a{}</style><noscript>ns</noscript><template>tp</template>"
            "<div hidden>h1</div><div aria-hidden='true'>h2</div><div style='display: none'>h3</div>"
            "<p style='visibility:hidden'>h4</p><p>shown</p>")
    assert out == "shown\n"


def test_rule2_blocks_on_their_own_lines():
    assert r("<div>one<div>two</div>three</div><span>four</span><section>five</section>") == \
        "one\ntwo\nthree\nfour\nfive\n"


def test_rule3_paragraphs_and_headings_separated_by_blank_lines():
    assert r("<h1>Title</h1><div>by line</div><p>Para <b>one</b>.</p><p>Para two.</p><blockquote>Quote</blockquote>") \
        == "Title\n\nby line\n\nPara one.\n\nPara two.\n\nQuote\n"


def test_rule4_lists_with_nesting_and_numbers():
    out = r("<ul><li>News<ul><li>Politics</li><li>Economy<ul><li>Markets</li></ul></li></ul></li><li>Sports</li></ul>"
            "<ol start='3'><li>third</li><li>fourth</li></ol>")
    assert out == ("  • News\n    • Politics\n    • Economy\n      • Markets\n  • Sports\n"
                   "  3. third\n  4. fourth\n")


def test_rule4_item_continuation_lines_are_indented_to_the_text():
    out = r("<ul><li><a href='/x'>Headline</a><div>A caption under it</div></li></ul>")
    assert out == "  • Headline\n    A caption under it\n"


def test_rule5_alt_text_and_captions_on_their_own_lines():
    out = r("<p>before <img src='a.jpg' alt='An  image'> after</p><figure><img src='b.jpg' alt=''>"
            "<figcaption>Caption text</figcaption></figure>")
    assert out == "before\nAn image\nafter\n\nCaption text\n"


def test_rule6_whitespace_collapses_and_no_urls():
    out = r("<p>  lots \t of\u00a0\u00a0 space  </p><p><a href='https://example.org/x'>link text</a></p>"
            "<p></p><p> </p><p>end</p>")
    assert out == "lots of space\n\nlink text\n\nend\n"
    assert "example.org" not in out


def test_rule7_nfc_newlines_and_single_trailing_newline():
    out = r("<p>Cafe\u0301</p>\r\n<p>x</p>\r\n\r\n")
    assert out == "Caf\u00e9\n\nx\n"
    assert r("") == "" and render_html("") == ""


def test_tables_are_readable():
    out = r("<table><tr><th>Name</th><th>Votes</th></tr><tr><td>Ada</td><td>31</td></tr></table>")
    assert out == "Name Votes\nAda 31\n"
