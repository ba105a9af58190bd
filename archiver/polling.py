"""Adaptive polling: how long a feed waits before it is fetched again, between the `min` and
`max` of its outlet's schedule.

The rule is the entry-frequency scheduling of feed readers (Miniflux's `entry_frequency`:
one poll per expected new entry, clamped to a minimum and a maximum), with the rate
estimated the way Cho and Garcia-Molina ("Estimating frequency of change", ACM TOIT 2003)
model a source: new items arrive as a Poisson process, whose rate, when every poll counts
the items that are new since the last one, is best estimated by items seen divided by time
watched. Old observations are forgotten with a half-life, so a feed that changes its habits
is followed within days, and day/night swings average out rather than being chased.

From that rate a feed is polled often enough that a poll finds ITEMS_PER_POLL new items on
average, within [min, max]: half an item, so that a day's busy hours (twice the average
rate, or more) still bring about one item a poll, far from overrunning a feed that lists 10
or 20. Asymmetry keeps items from being lost: a poll that found something new may shorten
the interval at once, a poll that found nothing lengthens it by STRETCH at most; a poll
where everything listed was new (the feed may have dropped items never seen) goes straight
back to `min`. On the simulated feeds of bench/adaptive_polling.py these choices lose fewer
items than the rate alone (16 against 113 of 217,390) and than halving on change and
stretching otherwise (35, with twice the p95 delay). A feed's own hints (RSS <ttl>,
sy:updatePeriod) are not used: WordPress writes sy:updatePeriod "hourly" into every feed.

The rule's functions are pure: the daemon (through OutletPolls, below, which sources.py asks
which documents are due and tells what each poll listed) and the simulation
(bench/adaptive_polling.py) call the same ones.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from .clock import parse_iso, warc_date
from .index.polls import PollRow

if TYPE_CHECKING:
    from .index import Index
    from .settings.outlets import Schedule

log = logging.getLogger("archiver.crawl")

ITEMS_PER_POLL = 0.5  # new items a poll should find on average
STRETCH = 1.5  # an unchanged poll lengthens the interval by this factor at most
HALF_LIFE = 3 * 86400.0  # seconds after which an observation counts half


def now() -> float:
    """The time adaptive polling goes by, in seconds since the epoch: the one clock it reads,
    so a test can move it instead of waiting."""
    return time.time()


@dataclass(frozen=True)
class Bounds:
    """A schedule's limits, in seconds: the shortest and longest interval, and where a feed
    never polled before starts."""

    shortest: float
    start: float
    longest: float

    def clamp(self, interval: float) -> float:
        return min(self.longest, max(self.shortest, interval))


@dataclass(frozen=True)
class Estimate:
    """What is known of one feed: its current interval, and the new items seen and the seconds
    watched, both weighted by age (their ratio is the estimated rate of new items)."""

    interval: float
    items: float = 0.0
    watched: float = 0.0

    @property
    def rate(self) -> float | None:
        """New items per second, None before anything was watched."""
        return self.items / self.watched if self.watched > 0 else None


def first_estimate(bounds: Bounds) -> Estimate:
    """A feed's first poll: nothing is known, and nothing it lists can be told new."""
    return Estimate(bounds.start)


def next_estimate(prev: Estimate, elapsed: float, new_items: int, listed: int, bounds: Bounds) -> Estimate:
    """The estimate after a poll that came `elapsed` seconds after the previous one and found
    `new_items` of the `listed` items new."""
    weight = 0.5 ** (max(0.0, elapsed) / HALF_LIFE)
    items = prev.items * weight + new_items
    watched = prev.watched * weight + max(0.0, elapsed)
    interval = bounds.clamp(prev.interval)
    if listed and new_items >= listed:
        return Estimate(bounds.shortest, items, watched)
    rate = items / watched if watched > 0 else None
    target = ITEMS_PER_POLL / rate if rate else math.inf
    if new_items:
        interval = min(interval, target)
    else:
        interval = max(interval, min(interval * STRETCH, target))
    return Estimate(bounds.clamp(interval), items, watched)


def unread_estimate(prev: Estimate, elapsed: float) -> Estimate:
    """The estimate after a poll that could not read the feed: the time still counts as watched,
    since the next poll that reads it counts every item that came meanwhile."""
    weight = 0.5 ** (max(0.0, elapsed) / HALF_LIFE)
    return Estimate(prev.interval, prev.items * weight, prev.watched * weight + max(0.0, elapsed))


def is_due(due_at: float, now: float, tick: float) -> bool:
    """Whether a feed due at `due_at` is polled by a pass at `now`, when passes come every `tick`
    seconds: yes if that time falls before the middle of the gap to the next pass, so an
    interval is kept to within half a tick however early or late (jitter) a pass comes."""
    return due_at <= now + tick / 2


def duration_text(seconds: float) -> str:
    """90 -> '1.5m', 21600 -> '6h': an interval as messages show it."""
    for unit, n in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= n:
            return f"{seconds / n:.0f}{unit}" if seconds >= 10 * n or seconds % n == 0 else f"{seconds / n:.1f}{unit}"
    return f"{seconds:.0f}s"


# ---------------------------------------------------------------------- in a pass

# documents read for the article links they list, whose interval adapts; sitemaps and search
# pages are fetched every `every` (a sitemap index's children with it)
ADAPTIVE_KINDS = ("feed", "page")


def _stamp(ts: float) -> str:
    return warc_date(datetime.fromtimestamp(ts, timezone.utc))


def _digest(url: str) -> str:
    return hashlib.sha1(url.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass
class OutletPolls:
    """One pass's polling of an outlet on an adaptive schedule: which of its discovery
    documents are due at `at`, and, from what each poll listed, when each is due again (rows
    of the index's document_polls)."""

    index: "Index"
    outlet: str
    bounds: Bounds
    every: float  # the interval of sitemaps and search pages, and the longest wait after a failure
    at: float
    rows: dict[str, PollRow] = field(default_factory=dict)
    skipped: list[tuple[float, str]] = field(default_factory=list)  # (due, URL) of those not due

    @classmethod
    def start(cls, index: "Index", outlet: str, schedule: "Schedule") -> "OutletPolls":
        assert schedule.every is not None and schedule.shortest is not None and schedule.longest is not None
        bounds = Bounds(schedule.shortest, schedule.every, schedule.longest)
        return cls(index, outlet, bounds, schedule.every, now(), index.document_polls(outlet))

    def due_at(self, row: PollRow) -> float:
        # a `max` lowered since the row was written counts at once
        return min(parse_iso(row.due_at).timestamp(), parse_iso(row.polled_at).timestamp() + self.bounds.longest)

    def due(self, urls: list[str]) -> list[str]:
        """The documents among `urls` to fetch in this pass; the others are counted as skipped."""
        out = []
        for url in urls:
            row = self.rows.get(url)
            if row is None or is_due(self.due_at(row), self.at, self.bounds.shortest):
                out.append(url)
            else:
                self.skipped.append((self.due_at(row), url))
        return out

    def next_due(self) -> tuple[str, str] | None:
        """(when, URL) of the first document skipped in this pass to be due again."""
        if not self.skipped:
            return None
        when, url = min(self.skipped)
        return _stamp(when), url

    def upcoming(self, urls: list[str]) -> tuple[str, str] | None:
        """(when, URL) of the first of `urls` to be due (one never polled is due now)."""
        times = [(self.due_at(self.rows[u]) if u in self.rows else self.at, u) for u in urls]
        if not times:
            return None
        when, url = min(times)
        return _stamp(when), url

    def polled(self, url: str, kind: str, listed: list[str] | None) -> None:
        """Record a poll of `url`: `listed` is the URLs it named, None when it could not be read
        (fetch or parse failed: tried again after `every` at the latest, nothing learnt)."""
        row = self.rows.get(url)
        at = _stamp(self.at)
        if kind not in ADAPTIVE_KINDS:
            self._save(PollRow(self.outlet, url, kind, at, _stamp(self.at + self.every), self.every,
                               polls=(row.polls if row else 0) + 1))
            return
        if listed is None:
            if row is None:
                est = first_estimate(self.bounds)
                row = PollRow(self.outlet, url, kind, at, at, est.interval)
            else:
                elapsed = self.at - parse_iso(row.polled_at).timestamp()
                est = unread_estimate(Estimate(row.interval, row.items, row.watched), elapsed)
            self._save(replace(row, polled_at=at, due_at=_stamp(self.at + min(est.interval, self.every)),
                               items=est.items, watched=est.watched))
            return
        digests = sorted({_digest(u) for u in listed})
        if row is None or not row.polls:
            est, new = first_estimate(self.bounds), 0
        else:
            new = len(set(digests) - set(row.listed))
            elapsed = self.at - parse_iso(row.polled_at).timestamp()
            est = next_estimate(Estimate(row.interval, row.items, row.watched), elapsed, new, len(digests),
                                self.bounds)
        log.debug("%s: %s %s: %d of %d listed new; next in %.0fs", self.outlet, kind, url, new, len(digests),
                  est.interval)
        self._save(PollRow(self.outlet, url, kind, at, _stamp(self.at + est.interval), est.interval, est.items,
                           est.watched, (row.polls if row else 0) + 1,
                           at if new else (row.changed_at if row else None), digests))

    def _save(self, row: PollRow) -> None:
        self.rows[row.url] = row
        self.index.save_poll(row)
