"""An article's text as HTML with its matched topic terms in <mark>, everything escaped.

Terms are found as topic matching finds them (archiver.topics: case and accents folded, on
word boundaries, any whitespace inside a phrase), so what is marked is what made the
capture match. Matching runs on the folded text; a line with a character whose folding
changes its length (a ligature, ß, a combining accent) is mapped back character by
character, so marks never land beside the words they are about.
"""

from __future__ import annotations

import functools
import html
import re
from typing import Iterable

from ..topics import _term_regex, fold

MAX_MARKS = 5000  # past this many, the rest of the text is shown unmarked


def marked(text: str, terms: Iterable[str]) -> str:
    """`text` HTML-escaped, each occurrence of one of `terms` wrapped in <mark>."""
    rxs = [_term_regex(t) for t in sorted(set(terms), key=lambda t: (-len(t), t)) if t.strip()]
    if not rxs or not text:
        return html.escape(text)
    rx = re.compile("|".join(f"(?:{r.pattern})" for r in rxs))
    out: list[str] = []
    marks = 0
    for line in text.splitlines(keepends=True):
        if marks >= MAX_MARKS:
            out.append(html.escape(line))
            continue
        spans = list(_spans(line, rx))[: MAX_MARKS - marks]
        marks += len(spans)
        at = 0
        for start, end in spans:
            out.append(html.escape(line[at:start]))
            out.append(f"<mark>{html.escape(line[start:end])}</mark>")
            at = end
        out.append(html.escape(line[at:]))
    return "".join(out)


def _spans(line: str, rx: re.Pattern[str]) -> Iterable[tuple[int, int]]:
    """(start, end) in `line` of each match of `rx` in the folded line."""
    folded = fold(line)
    if line.isascii() or all(_width(ch) == 1 for ch in set(line)):
        for m in rx.finditer(folded):
            yield m.start(), m.end()
        return
    # where each folded character came from
    origin: list[int] = []
    for i, ch in enumerate(line):
        origin.extend([i] * _width(ch))
    for m in rx.finditer(folded):
        if m.end() > m.start() and m.end() <= len(origin):
            yield origin[m.start()], origin[m.end() - 1] + 1


@functools.lru_cache(maxsize=4096)
def _width(ch: str) -> int:
    """How many characters `ch` folds to (0 for a combining mark, 2 for ß)."""
    return len(fold(ch))
