"""The article body: readability-lxml's choice of the main content, then archiver's clean-up.

readability scores paragraphs and picks the block holding most of them (readabilitypass.py);
what it keeps inside that block still carries what a reader skips (captions, credits,
bylines, share bars, link lists, comment threads). The rules here remove those by how pages
mark them up (class and id words, structure) and by text statistics, never by site. `RULES`
names each rule so that the extraction benchmark (bench/extract_quality.py) can measure it by
switching it off.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree, html

from .comments import drop_comment_sections, drop_comment_threads, is_comment_notice
from .pagetext import render_html, render_tree
from .readabilitypass import summary

# Every rule this module (and second_opinion.py) applies; the benchmark removes names from
# `active` to ablate them. Production code never changes it.
RULES = ("embedded-posts", "comment-sections", "comment-threads", "comment-notices", "class-word-split",
         "credits", "linked-leads", "second-opinion")


@dataclass
class _Switches:
    active: frozenset[str] = frozenset(RULES)


switches = _Switches()


def rule_on(name: str) -> bool:
    return name in switches.active


def clean_text(s: str) -> str:
    # str.split() splits on exactly what \s matches, at a fraction of a regex's cost
    return " ".join(s.split()) if s else ""


_NOT_BODY = ("figure", "figcaption", "picture", "img", "aside", "nav", "form", "button", "footer", "noscript")
_LINKY = ("p", "li", "div", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "section", "span", "table")


# Short lines that are page furniture, not article text (checked only on lines < 80 chars).
_FURNITURE = re.compile(
    r"^(?:(?:photo|image|picture|credit|foto|bild)s?\s*(?::|by\b).*|image \d+ of \d+|advert(?:isement)?|"
    r"\d*\s*comments?|share(?: this(?: article| story)?)?:?|sharing is caring!?|like this:|like loading\.*|more:|"
    r"read more:?|related(?: articles| stories)?:?|tell us what you think\.*|(?:published|updated|posted)\b.{0,50}"
    r"\d{4}.*|(?:(?:whatsapp|facebook|twitter|pinterest|pint|linkedin|reddit|e-?mail|print|copy link|baixar)"
    r"\s*)+)$", re.IGNORECASE)


def _drop_furniture(text: str) -> str:
    kept = []
    for line in text.split("\n"):
        stripped = line.strip()
        if len(stripped) < 80 and _FURNITURE.match(stripped):
            continue
        if rule_on("comment-notices") and is_comment_notice(stripped):
            continue
        kept.append(line)
    out = "\n".join(kept)
    return re.sub(r"\n{3,}", "\n\n", out).strip("\n") + "\n" if out.strip() else ""


# class/id words of page furniture that readability keeps inside the article container
_FURNITURE_CLASS = re.compile(
    r"(?:^|[\s_-])(?:caption|captions|gallery|slideshow|carousel|credit|credits|share|sharing|social|"
    r"related|newsletter|promo|comments?|subscribe|signup|byline|tags?|breadcrumbs?)(?:$|[\s_-])",
    re.IGNORECASE)
# words of the short lines around a story that name who and when (bylines, datelines, photo
# credits): only an element of a few lines is dropped for them
_CREDIT_CLASS = re.compile(
    r"(?:^|[\s_-])(?:dateline|timestamp|pubdate|date|dates|time|datetime|published|updated|author|authors|"
    r"writer|byline|bylines|credit|credits|copyright|caption|captions|photographer|kicker|meta)(?:$|[\s_-])",
    re.IGNORECASE)
_CREDIT_ITEMPROP = re.compile(r"^(?:author|creator|datePublished|dateModified|dateCreated|caption|copyrightHolder)$")
_CREDIT_MAX_CHARS = 300
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


def _marks(el: etree._Element) -> str:
    marks = f"{el.get('class') or ''} {el.get('id') or ''}"
    # "imageEmbedCaption", "ArticleByline": class names glue their words in camel case too
    return _CAMEL.sub("-", marks) if rule_on("class-word-split") else marks


def _drop_furniture_blocks(tree: etree._Element) -> None:
    """Drop captions, galleries, bylines, share bars and the like by their class or id; never
    an element holding half the text or more, since some sites name the article wrapper oddly."""
    total = len(clean_text(tree.text_content())) or 1
    for el in list(tree.iter()):
        # a link in running text is judged by the link rules below, not by its class ("textTag")
        if not isinstance(el.tag, str) or el.getparent() is None or el.tag == "a":
            continue
        marks = _marks(el)
        if len(marks) < 2 and not el.get("itemprop"):
            continue
        size = len(clean_text(el.text_content()))
        if _FURNITURE_CLASS.search(marks) and size < total / 2:
            el.drop_tree()
        elif rule_on("credits") and size < min(_CREDIT_MAX_CHARS, total / 2) and (
                _CREDIT_CLASS.search(marks) or _CREDIT_ITEMPROP.match(el.get("itemprop") or "")):
            el.drop_tree()


@dataclass(frozen=True)
class Pick:
    """readability's choice on one page, with what second_opinion.py needs to judge it."""

    text: str  # the cleaned body, paragraphs separated by blank lines; '' when nothing was found
    chars: int  # text characters of the chosen block before clean-up
    link_chars: int  # of those, inside links
    posts: tuple[int, ...]  # text characters of each <article> inside the block (a listing has several)
    page_chars: int  # visible text characters of the whole page


# "<strong><a>Headline of the linked story</a>.</strong> A sentence saying what it found." is how
# briefings and round-ups write an item: linked, but the words after the link are the article's
_LEAD_WORDS = 8


def _unlinked_sentence(el: etree._Element) -> bool:
    """Whether the words outside the element's links make a sentence of their own."""
    outside = []
    for node in el.iter():
        if node.tag != "a" and not any(a.tag == "a" for a in node.iterancestors()) and node.text:
            outside.append(node.text)
        if node is not el and node.tail and not any(a.tag == "a" for a in node.iterancestors() if a is not el):
            outside.append(node.tail)
    words = " ".join(outside).split()
    return len(words) >= _LEAD_WORDS and " ".join(words).rstrip()[-1:] in ".!?…\"”"


def _clean_pick(summary_html: str, page_chars: int) -> Pick:
    if not summary_html.strip():
        return Pick("", 0, 0, (), page_chars)
    try:
        tree = html.fragment_fromstring(summary_html, create_parent="div")
    except (etree.ParserError, ValueError):
        text = render_html(summary_html)
        return Pick(text, len(text), 0, (), page_chars)
    chars = len(clean_text(tree.text_content()))
    link_chars = sum(len(clean_text(a.text_content())) for a in tree.iter("a"))
    posts = tuple(len(clean_text(a.text_content())) for a in tree.iter("article"))
    if rule_on("comment-sections"):
        drop_comment_sections(tree)
    if rule_on("comment-threads"):
        drop_comment_threads(tree)
    _drop_furniture_blocks(tree)
    for el in list(tree.iter(*_NOT_BODY)):
        if el.getparent() is not None:
            el.drop_tree()
    for el in list(tree.iter(*_LINKY)):
        if el.getparent() is None:
            continue
        text = clean_text(el.text_content())
        if not text or len(text) > 400:
            continue
        linked = sum(len(clean_text(a.text_content())) for a in el.iter("a"))
        if linked / len(text) > 0.5 and not (rule_on("linked-leads") and _unlinked_sentence(el)):
            el.drop_tree()
    return Pick(_drop_furniture(render_tree(tree)).strip("\n"), chars, link_chars, posts, page_chars)


def clean_lines(text: str) -> str:
    """Another extractor's plain text under the same line rules, paragraphs separated by blank
    lines as in readability's output."""
    paragraphs = [line.strip() for line in text.split("\n") if line.strip()]
    return _drop_furniture("\n\n".join(paragraphs)).strip("\n")


# Posts quoted from social networks are markup like <blockquote class="twitter-tweet">; the
# article quotes them as it quotes a person, but readability drops any element whose class
# says "tweet" and any with a negative word ("media") as page furniture.
_EMBEDDED_POST = re.compile(r"tweet|twitter|instagram|tiktok|facebook|fb-|reddit|bluesky|mastodon|threads|embed",
                            re.IGNORECASE)


def _unmark_embedded_posts(root: html.HtmlElement) -> None:
    """Strip the class and id of embedded-post blockquotes and unwrap the wrappers around them
    that hold nothing else (readability judges a <div> by its link density, and a post is
    mostly links), so each is scored as the quote it is."""
    for quote in list(root.iter("blockquote")):
        if not _EMBEDDED_POST.search(quote.get("class") or ""):
            continue
        quote.attrib.pop("class", None)
        quote.attrib.pop("id", None)
        size = len(clean_text(quote.text_content()))
        el = quote.getparent()
        while el is not None and el.tag not in ("body", "html", "article", "main", "blockquote"):
            if len(clean_text(el.text_content())) > size + 100:
                break
            parent = el.getparent()
            if parent is None:
                break
            el.drop_tag()
            el = parent


def prepare(root: html.HtmlElement) -> None:
    """Changes to the page before any extractor reads it: quoted posts made plain quotes."""
    if rule_on("embedded-posts"):
        _unmark_embedded_posts(root)


def readability_pick(root: html.HtmlElement) -> Pick:
    """readability's choice of main content in a prepared page, cleaned. Raises what
    readability raises on degenerate documents."""
    return _clean_pick(*summary(root))
