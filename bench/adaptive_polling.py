#!/usr/bin/env python3
"""Adaptive polling against fixed-interval polling, on a simulated population of feeds.

    python bench/adaptive_polling.py [--feeds 1000] [--days 14] [--min 10m] [--every 30m] [--max 6h]
                                     [--listed 20] [--seed 1]

Each feed publishes items as a Poisson process whose rate follows the day (a busy afternoon,
a quiet night, at a phase of the feed's own) and the week (weekends at 60 %), with bursts
(a story breaking: 5-15 items in half an hour, every few days) on the busier feeds. Base
rates are heavy-tailed, as a news reader's subscriptions are: 2 % wires and live feeds
(150-400 items a day), 10 % busy sections (30-100), 30 % ordinary ones (5-30), 35 % a few a
day (0.5-5) and 23 % weekly or dormant (0.05-0.5). Each feed lists its newest `--listed`
items, so an item is lost when more than that many arrive between two polls of it.

The outlet's job runs every `min` (the daemon's adaptive schedule); each pass polls the feeds
that are due, with archiver.polling's own functions (next_estimate, is_due), as the daemon
does. Compared with polling every feed on every pass (fixed `every: min`, what the same
outlet polls without adaptive polling), with fixed polling at `every` (the schedule without
`min` and `max`) and at `max` (what the savings would cost without adapting).

An item counts as captured when a poll of its feed lists it (it is still among the newest
`--listed`) no later than `max` after it was published: `max` is the longest a schedule lets
a quiet feed wait, so the promise an adaptive schedule makes. Only items published during the
simulated days count; each feed starts with two days of items already listed. The delay of a
captured item is from its publication to the poll that first listed it.

Prints feed fetches, captured %, items lost and the median and p95 delay for each way of
polling, then the reduction against fixed `min` and the targets (>= 50 % fewer fetches,
>= 99 % captured). Seeded, deterministic; a few seconds. Exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import bisect
import math
import random
import sys
from dataclasses import dataclass, field
from typing import Callable

from archiver.polling import Bounds, Estimate, duration_text as _duration, first_estimate, is_due, next_estimate
from archiver.units import parse_duration

DAY = 86400.0
HISTORY = 2 * DAY  # items a feed already lists when polling starts
# (share of feeds, lowest and highest items a day, bursty): drawn log-uniform in each band
BANDS = ((0.02, 150.0, 400.0, True), (0.10, 30.0, 100.0, True), (0.30, 5.0, 30.0, True),
         (0.35, 0.5, 5.0, False), (0.23, 0.05, 0.5, False))
DIURNAL = 0.8  # rate swings from 1 - DIURNAL (night) to 1 + DIURNAL (afternoon)
WEEKEND = 0.6
BURSTS_PER_DAY = 0.3
FETCH_TARGET, CAPTURE_TARGET = 50.0, 99.0


@dataclass
class Feed:
    published: list[float]  # times, sorted
    listed: int


@dataclass
class Outcome:
    fetches: int = 0
    captured: int = 0
    lost: int = 0  # never listed at a poll: pushed out first
    late: int = 0  # listed, but first seen later than max after publication
    delays: list[float] = field(default_factory=list)

    @property
    def items(self) -> int:
        return self.captured + self.lost + self.late


def rate_factor(t: float, phase: float) -> float:
    """How busy a feed is at time t, relative to its base rate."""
    day = 1.0 + DIURNAL * math.cos(2 * math.pi * (t / DAY - phase))
    return day * (WEEKEND if int(t // DAY) % 7 in (5, 6) else 1.0)


def make_feed(rng: random.Random, days: float, listed: int) -> Feed:
    r = rng.random()
    for share, low, high, bursty in BANDS:
        if r < share:
            break
        r -= share
    per_day = math.exp(rng.uniform(math.log(low), math.log(high)))
    phase = rng.random()
    top = per_day / DAY * (1 + DIURNAL)  # thinning: candidates at the peak rate, kept in proportion
    times: list[float] = []
    t = -HISTORY
    while True:
        t += rng.expovariate(top)
        if t >= days * DAY:
            break
        if rng.random() * (1 + DIURNAL) < rate_factor(t, phase):
            times.append(t)
    if bursty:
        t = -HISTORY
        while True:
            t += rng.expovariate(BURSTS_PER_DAY / DAY)
            if t >= days * DAY:
                break
            times.extend(t + rng.uniform(0, 1800) for _ in range(rng.randint(5, 15)))
    times.sort()
    return Feed(times, listed)


def poll(feed: Feed, prev: float, now: float, out: Outcome, longest: float) -> tuple[int, int]:
    """A poll at `now` of a feed last polled at `prev`: counts its outcome; (new, listed)."""
    hi = bisect.bisect_right(feed.published, now)
    lo = bisect.bisect_right(feed.published, prev)
    listed = min(hi, feed.listed)
    new = hi - lo
    seen_from = hi - min(new, feed.listed)  # older new items were pushed out of the feed
    for i in range(lo, hi):
        t = feed.published[i]
        if t < 0:
            continue
        if i < seen_from:
            out.lost += 1
        elif now - t > longest:
            out.late += 1
        else:
            out.captured += 1
            out.delays.append(now - t)
    out.fetches += 1
    return min(new, feed.listed), listed


def fixed(feeds: list[Feed], days: float, every: float, longest: float) -> Outcome:
    out = Outcome()
    end = days * DAY
    for f in feeds:
        prev = -math.inf
        t = 0.0
        while t < end:
            poll(f, prev, t, out, longest)
            prev, t = t, t + every
        poll(f, prev, end, out, longest)  # what the next poll would still find
        out.fetches -= 1
    return out


def adaptive(feeds: list[Feed], days: float, bounds: Bounds,
             step: Callable[[Estimate, float, int, int, Bounds], Estimate] = next_estimate) -> Outcome:
    out = Outcome()
    tick, end = bounds.shortest, days * DAY
    for f in feeds:
        est, prev = first_estimate(bounds), -math.inf
        poll(f, prev, 0.0, out, bounds.longest)
        prev = 0.0
        t = tick
        while t < end:
            if is_due(prev + est.interval, t, tick):
                new, listed = poll(f, prev, t, out, bounds.longest)
                est = step(est, t - prev, new, listed, bounds)
                prev = t
            t += tick
        poll(f, prev, end, out, bounds.longest)
        out.fetches -= 1
    return out


def _percentile(xs: list[float], p: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--feeds", type=int, default=1000)
    ap.add_argument("--days", type=float, default=14)
    ap.add_argument("--min", default="10m")
    ap.add_argument("--every", default="30m")
    ap.add_argument("--max", default="6h")
    ap.add_argument("--listed", type=int, default=20, help="items each feed lists")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    bounds = Bounds(parse_duration(a.min), parse_duration(a.every), parse_duration(a.max))
    rng = random.Random(a.seed)
    feeds = [make_feed(rng, a.days, a.listed) for _ in range(a.feeds)]
    items = sum(1 for f in feeds for t in f.published if t >= 0)
    lo, hi = _duration(bounds.shortest), _duration(bounds.longest)
    print(f"{a.feeds} feeds, {a.days:g} simulated days, {items:,} items, each feed listing its newest {a.listed}; "
          f"schedule every {_duration(bounds.start)}, min {lo}, max {hi}; seed {a.seed}")
    runs = [(f"fixed every {lo} (min)", fixed(feeds, a.days, bounds.shortest, bounds.longest)),
            (f"adaptive {lo} to {hi}", adaptive(feeds, a.days, bounds)),
            (f"fixed every {_duration(bounds.start)} (every)", fixed(feeds, a.days, bounds.start, bounds.longest)),
            (f"fixed every {hi} (max)", fixed(feeds, a.days, bounds.longest, bounds.longest))]
    print(f"{'':24}{'feed fetches':>14}{'captured':>10}{'lost':>8}{'late':>7}{'median delay':>14}{'p95 delay':>11}")
    for name, o in runs:
        print(f"{name:24}{o.fetches:>14,}{100 * o.captured / o.items:>9.2f}%{o.lost:>8,}{o.late:>7,}"
              f"{_duration(_percentile(o.delays, 50)):>14}{_duration(_percentile(o.delays, 95)):>11}")
    base, ours = runs[0][1], runs[1][1]
    fewer = 100 * (1 - ours.fetches / base.fetches)
    captured = 100 * ours.captured / ours.items
    ok = fewer >= FETCH_TARGET and captured >= CAPTURE_TARGET
    print(f"adaptive: {fewer:.1f}% fewer feed fetches than fixed every {lo} (target >= {FETCH_TARGET:g}%), "
          f"{captured:.2f}% of items captured within {hi} (target >= {CAPTURE_TARGET:g}%): "
          f"{'met' if ok else 'NOT MET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
