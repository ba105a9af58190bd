"""Timelines of articles: by publication date, with capture dates beside, as SVG bars drawn
server-side (no script, no CDN).

Time runs continuously along the axis, so a gap in the bars is a gap in the news: by day
when the dates span up to MAX_DAYS days, else by month up to MAX_MONTHS months, else by year.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Iterable

from ..pubdate import published_day

MAX_DAYS = 120
MAX_MONTHS = 120
WIDTH, HEIGHT = 720, 120


@dataclass(frozen=True)
class Slot:
    label: str  # YYYY-MM-DD, YYYY-MM or YYYY
    first: str  # the slot's first and last day, YYYY-MM-DD (for a search of them)
    last: str
    published: int
    captured: int
    x: float
    w: float  # of each of the two bars
    h_published: int
    h_captured: int


@dataclass(frozen=True)
class Timeline:
    slots: list[Slot]
    unit: str  # day | month | year
    top: int  # the highest count of a slot, either series
    width: int = WIDTH
    height: int = HEIGHT + 24  # room for the labels below the bars
    base: int = HEIGHT + 4  # where the bars stand


def by_day(stated: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """(publication date as stated, n) summed by the day they name, in date order; dates that
    cannot be read are left out."""
    days: Counter[str] = Counter()
    for when, n in stated:
        day = published_day(when)
        if day is not None:
            days[day] += n
    return sorted(days.items())


def timeline(published: list[tuple[str, int]], captured: list[tuple[str, int]]) -> Timeline:
    """Slots from the first to the last date of either series ((YYYY-MM-DD, n) each)."""
    days = sorted({d for d, _ in published} | {d for d, _ in captured})
    if not days:
        return Timeline([], "day", 0)
    first, last = date.fromisoformat(days[0]), date.fromisoformat(days[-1])
    months = (last.year - first.year) * 12 + last.month - first.month + 1
    unit = "day" if (last - first).days < MAX_DAYS else "month" if months <= MAX_MONTHS else "year"
    spans = list(_spans(first, last, unit))
    key = {"day": 10, "month": 7, "year": 4}[unit]
    pub: Counter[str] = Counter()
    cap: Counter[str] = Counter()
    for d, n in published:
        pub[d[:key]] += n
    for d, n in captured:
        cap[d[:key]] += n
    top = max([*pub.values(), *cap.values(), 1])
    slot = WIDTH / len(spans)
    bar = max(1.0, min(18.0, slot * 0.4))
    slots = []
    for i, (a, b) in enumerate(spans):
        label = a.isoformat()[:key]
        p, c = pub[label], cap[label]
        slots.append(Slot(label, a.isoformat(), b.isoformat(), p, c, round(i * slot + (slot - 2 * bar) / 2, 1),
                          round(bar, 1), _height(p, top), _height(c, top)))
    return Timeline(slots, unit, top)


def _height(n: int, top: int) -> int:
    return max(1, round(n / top * HEIGHT)) if n else 0


def _spans(first: date, last: date, unit: str) -> Iterable[tuple[date, date]]:
    """(first day, last day) of each day, month or year from `first` to `last`."""
    if unit == "day":
        for i in range((last - first).days + 1):
            d = first + timedelta(days=i)
            yield d, d
        return
    if unit == "year":
        for y in range(first.year, last.year + 1):
            yield date(y, 1, 1), date(y, 12, 31)
        return
    y, m = first.year, first.month
    while (y, m) <= (last.year, last.month):
        ny, nm = (y + 1, 1) if m == 12 else (y, m + 1)
        yield date(y, m, 1), date(ny, nm, 1) - timedelta(days=1)
        y, m = ny, nm
