"""Diffs of two article texts, by line and within changed lines by word, at a bounded cost
whatever the texts are.

difflib's matcher is quadratic on texts with many repeated lines (every blank line between
paragraphs is one), so a diff of two large articles could run for hours. Here the lines both
texts share at the start and the end are set aside first (cheap, and it is where most of two
versions of an article agree); what remains is compared with at most MAX_LINES lines a side,
under a time budget. Past the budget the remaining part is shown as replaced (still a true
diff, only a coarser one), and long runs of unchanged lines are folded, so the page stays
small too.

Lines replaced by other lines are then compared word by word, so a changed word is shown
as that word removed and another added inside its sentence. That has bounds of its own: a
passage over MAX_WORD_CHARS a side, passages past MAX_WORD_TOTAL characters in all, and
whatever is left when WORD_SECONDS have passed are shown as whole lines removed and added.
Words are compared, not the spaces between them: a change of whitespace alone is not
marked, and the passage is shown with the newer text's spacing.
"""

from __future__ import annotations

import difflib
import re
import time
from dataclasses import dataclass, field

from ..errors import DiffOverBudget

MAX_LINES = 3000  # of each text's changed part compared line by line
MAX_LINE_CHARS = 1000  # a longer line is shown by its start (and compared whole)
CONTEXT = 3  # unchanged lines kept around each change
SECONDS = 0.5  # for the matcher; what is not compared by then is shown as replaced
MAX_WORD_CHARS = 20_000  # of each side of a passage of replaced lines compared word by word
MAX_WORD_TOTAL = 2_000_000  # characters of all passages compared word by word (the page's size)
WORD_SECONDS = 0.5  # for the word matcher, over all passages

KEEP, ADDED, REMOVED, FOLDED, CHANGED = " ", "+", "-", "…", "~"

# a word (or one punctuation mark) and the whitespace after it
_WORD = re.compile(r"(\w+|[^\w\s])(\s*)")


@dataclass
class Diff:
    lines: list[tuple[str, str]] = field(default_factory=list)  # (tag, text); FOLDED text says how many
    notes: list[str] = field(default_factory=list)  # why the diff is coarser or shorter than a full one
    # what the page shows: (tag, text, runs); a CHANGED row is replaced lines as word runs
    # (KEEP, ADDED or REMOVED, text), every other row is a line of `lines`
    rows: list[tuple[str, str, list[tuple[str, str]]]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(tag in (ADDED, REMOVED) for tag, _ in self.lines)


class _Matcher(difflib.SequenceMatcher):
    """SequenceMatcher that gives up once its deadline has passed: each longest-match search is
    bounded by the line caps, so checking between searches bounds the whole."""

    deadline = 0.0

    def find_longest_match(self, alo=0, ahi=None, blo=0, bhi=None):  # type: ignore[no-untyped-def]
        if time.monotonic() > self.deadline:
            raise DiffOverBudget
        return super().find_longest_match(alo, ahi, blo, bhi)


def diff_texts(a: str, b: str, max_lines: int = MAX_LINES, seconds: float = SECONDS) -> Diff:
    """What changed from text `a` to text `b`, line by line."""
    al, bl = a.splitlines(), b.splitlines()
    head = 0
    while head < len(al) and head < len(bl) and al[head] == bl[head]:
        head += 1
    tail = 0
    while tail < len(al) - head and tail < len(bl) - head and al[-1 - tail] == bl[-1 - tail]:
        tail += 1
    mid_a, mid_b = al[head:len(al) - tail], bl[head:len(bl) - tail]
    out = Diff()
    ops: list[tuple[str, str]] = [(KEEP, line) for line in al[:head]]
    if len(mid_a) > max_lines or len(mid_b) > max_lines:
        out.notes.append(f"diff too large: the changed part is {len(mid_a):,} lines before and {len(mid_b):,} "
                         f"after; showing the changes within its first {max_lines:,} lines of each")
        cut_a, cut_b = mid_a[:max_lines], mid_b[:max_lines]
        ops += _compare(cut_a, cut_b, seconds, out)
        skipped = len(mid_a) - len(cut_a), len(mid_b) - len(cut_b)
        ops.append((FOLDED, f"{skipped[0]:,} more lines before and {skipped[1]:,} more after, not compared"))
    else:
        ops += _compare(mid_a, mid_b, seconds, out)
    ops += [(KEEP, line) for line in al[len(al) - tail:]]
    folded = _fold(ops)
    out.lines = [(tag, _shown(text)) for tag, text in folded]
    out.rows = _inline(folded, out)
    return out


def _shown(line: str) -> str:
    return line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + f" … ({len(line):,} characters)"


def _compare(a: list[str], b: list[str], seconds: float, out: Diff) -> list[tuple[str, str]]:
    # autojunk: lines found in more than 1% of a long text (blank lines) cannot start a match,
    # which is what keeps each longest-match search near linear
    m = _Matcher(None, a, b, autojunk=True)
    m.deadline = time.monotonic() + seconds
    try:
        opcodes = m.get_opcodes()
    except DiffOverBudget:
        out.notes.append(f"these texts take too long to compare line by line (over {seconds} s); "
                         "their changed part is shown as removed and added whole")
        return [(REMOVED, line) for line in a] + [(ADDED, line) for line in b]
    ops: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in opcodes:
        if op == "equal":
            ops += [(KEEP, line) for line in a[i1:i2]]
        else:
            ops += [(REMOVED, line) for line in a[i1:i2]]
            ops += [(ADDED, line) for line in b[j1:j2]]
    return ops


def _fold(ops: list[tuple[str, str]], context: int = CONTEXT) -> list[tuple[str, str]]:
    """Long runs of unchanged lines become one FOLDED line, keeping `context` lines next to changes."""
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(ops):
        if ops[i][0] != KEEP:
            out.append(ops[i])
            i += 1
            continue
        j = i
        while j < len(ops) and ops[j][0] == KEEP:
            j += 1
        run = ops[i:j]
        lead = context if i > 0 else 0  # lines after a change
        trail = context if j < len(ops) else 0  # lines before the next change
        if len(run) - lead - trail >= 2 * context:
            out += run[:lead]
            out.append((FOLDED, f"{len(run) - lead - trail:,} unchanged lines"))
            out += run[len(run) - trail:] if trail else []
        else:
            out += run
        i = j
    return out


def _inline(ops: list[tuple[str, str]], out: Diff,
            seconds: float = WORD_SECONDS) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """The rows the page shows: each run of removed lines followed by added ones (what the
    line matcher found replaced) compared word by word, within the word bounds."""
    deadline = time.monotonic() + seconds
    budget = MAX_WORD_TOTAL
    coarse = False
    rows: list[tuple[str, str, list[tuple[str, str]]]] = []
    i = 0
    while i < len(ops):
        if ops[i][0] != REMOVED:
            rows.append((ops[i][0], _shown(ops[i][1]), []))
            i += 1
            continue
        j = i
        while j < len(ops) and ops[j][0] == REMOVED:
            j += 1
        k = j
        while k < len(ops) and ops[k][0] == ADDED:
            k += 1
        if k > j:
            a, b = "\n".join(t for _, t in ops[i:j]), "\n".join(t for _, t in ops[j:k])
            runs = None
            if max(len(a), len(b)) <= MAX_WORD_CHARS and len(a) + len(b) <= budget:
                runs = _words(a, b, deadline)
            if runs is not None and any(tag != KEEP for tag, _ in runs):
                budget -= len(a) + len(b)
                rows.append((CHANGED, "", runs))
                i = k
                continue
            # past the word bounds; or only whitespace changed, which the lines show
            coarse = coarse or runs is None
        rows += [(tag, _shown(text), []) for tag, text in ops[i:k]]
        i = k
    if coarse:
        out.notes.append("some changed passages are too long to compare word by word; they are shown as "
                         "whole lines removed and added")
    return rows


def _words(a: str, b: str, deadline: float) -> list[tuple[str, str]] | None:
    """Word runs turning `a` into `b` (None past the deadline). Unchanged words are shown with
    the spacing `b` has; a run of changes ends before the whitespace after it."""
    wa, wb = _WORD.findall(a), _WORD.findall(b)
    m = _Matcher(None, [w for w, _ in wa], [w for w, _ in wb])
    m.deadline = deadline
    try:
        opcodes = m.get_opcodes()
    except DiffOverBudget:
        return None
    runs: list[tuple[str, str]] = []

    def add(tag: str, text: str) -> None:
        if not text:
            return
        if runs and runs[-1][0] == tag:
            runs[-1] = (tag, runs[-1][1] + text)
        else:
            runs.append((tag, text))

    lead = b[: len(b) - len(b.lstrip())]
    add(KEEP, lead)
    for op, i1, i2, j1, j2 in opcodes:
        if op == "equal":
            add(KEEP, "".join(w + sp for w, sp in wb[j1:j2]))
            continue
        old = "".join(w + sp for w, sp in wa[i1:i2])
        new = "".join(w + sp for w, sp in wb[j1:j2])
        add(REMOVED, old.rstrip())
        add(ADDED, new.rstrip())
        # the whitespace after the change, as the newer text has it (or the older one, when
        # words were only removed)
        add(KEEP, new[len(new.rstrip()):] if j2 > j1 else old[len(old.rstrip()):])
    return runs
