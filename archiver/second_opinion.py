"""A second extractor for the pages where readability's choice is doubtful.

readability takes the block with the best paragraph score, and on some pages that is a small
box beside the story (a date box, a photo credit, a navigation cell, a comment-form notice) or a
list of teasers for other stories. Such a choice shows: it is small next to the page's text,
mostly links, or several posts side by side. Only then is trafilatura asked (so its cost is
paid on few pages), and its text is taken only when it is better supported by a rule that
reads no site: it must be prose rather than a column of short lines, and either much more
prose than the doubtful choice or, against a listing, a different text as long as a whole
post.
"""

from __future__ import annotations

import logging
import re
from importlib.metadata import PackageNotFoundError, version

from lxml import html

from .article import Pick, clean_lines

log = logging.getLogger(__name__)

SECOND_EXTRACTOR_NAME = "trafilatura"
try:
    SECOND_EXTRACTOR_VERSION = version("trafilatura")
except PackageNotFoundError:  # pragma: no cover
    SECOND_EXTRACTOR_VERSION = "unknown"

# a choice under a fifth of the page's visible text, or under 200 characters, is small
SMALL_SHARE = 0.20
SMALL_CHARS = 200
# a choice whose text is more than half links is a link box (navigation, related stories)
LINKY_SHARE = 0.5
# several posts and none holding half the text: a listing (a blog's front page, "see also")
LISTING_POSTS = 3

# the second text must be this much prose against a small or linky choice...
MORE_PROSE = 2.0
MORE_PROSE_CHARS = 100
# ...and at least this share of it in prose lines (not a column of menu entries, as
# trafilatura gives on pages without paragraphs)
PROSE_SHARE = 0.5
# against a listing it must be another text: at most this share of its word triples in the choice
LISTING_OVERLAP = 0.5

_WORD = re.compile(r"\w+")


def doubts(pick: Pick) -> tuple[str, ...]:
    """Why readability's choice may be the wrong block; empty when it looks like an article."""
    reasons = []
    size = len(pick.text)
    if not pick.text.strip():
        reasons.append("empty")
    elif size < SMALL_CHARS or size < SMALL_SHARE * pick.page_chars:
        reasons.append("small")
    if pick.chars and pick.link_chars > LINKY_SHARE * pick.chars:
        reasons.append("links")
    if len(pick.posts) >= LISTING_POSTS and max(pick.posts) < pick.chars / 2:
        reasons.append("listing")
    return tuple(reasons)


def prose_chars(text: str) -> int:
    """Characters in lines that read as sentences: ten words or more, or (for scripts written
    without spaces) 40 characters with few spaces."""
    total = 0
    for line in text.split("\n"):
        line = line.strip()
        words = len(_WORD.findall(line))
        if words >= 10 or (len(line) >= 40 and line.count(" ") < len(line) / 20):
            total += len(line)
    return total


def second_text(root: html.HtmlElement) -> str:
    """trafilatura's main text of a prepared page ('' when it finds none); `root` is not
    changed (trafilatura works on a copy)."""
    # imported here: trafilatura and its date and URL libraries cost start-up time that pages
    # without doubt never need
    import trafilatura

    # fast: trafilatura's own extraction only; its fallback compares with its port of
    # readability, which tends to agree with the very choice in doubt. favor_precision: a
    # second opinion is worth taking only when it holds the article and little else.
    try:
        text = trafilatura.extract(root, fast=True, favor_precision=True, include_comments=False,
                                   include_images=False) or ""
    except Exception as e:  # a failure of the second opinion leaves the first in place
        log.info("trafilatura failed: %s", e)
        return ""
    return clean_lines(text)


def _overlap(text: str, other: str) -> float:
    """Share of `text`'s word triples that `other` has too: near 1 for the same passage, near 0
    for another text in the same language (single words would match on "the", "de", "und")."""
    def triples(s: str) -> list[tuple[str, ...]]:
        words = _WORD.findall(s.lower())
        return [tuple(words[i:i + 3]) for i in range(len(words) - 2)]

    mine = triples(text)
    if not mine:
        return 0.0
    known = set(triples(other))
    return sum(1 for t in mine if t in known) / len(mine)


def prefer_second(pick: Pick, reasons: tuple[str, ...], second: str) -> bool:
    """Whether the second text is better supported than readability's doubtful choice."""
    if not second.strip():
        return False
    if not pick.text.strip():
        return True
    prose = prose_chars(second)
    if prose < PROSE_SHARE * len(second):
        return False
    # against a listing: another text, and a story at least as long as any one of its teasers
    if "listing" in reasons and _overlap(second, pick.text) <= LISTING_OVERLAP \
            and len(second) >= max(pick.posts, default=0):
        return True
    return prose >= MORE_PROSE * prose_chars(pick.text) + MORE_PROSE_CHARS
