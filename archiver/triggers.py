"""When each outlet's passes fall: the APScheduler triggers of schedule.py's jobs.

An interval schedule runs on a grid of its own: the outlet's phase (from its name) plus
multiples of the interval, each run up to the jitter after its grid point. Spread phases
make thousands of outlets a steady flow of passes; the grid keeps the pace whatever the
jitter did. A cron schedule gets a jitter of the same share of its own interval.
"""

from __future__ import annotations

import math
import zlib
from datetime import datetime, timedelta, timezone

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from .config import Outlet

# a pass counts as overdue this long after two of its intervals (and its jitter) went by
PASS_START_GRACE = 10.0


class SteadyIntervalTrigger(IntervalTrigger):
    """An IntervalTrigger whose runs stay on its grid: start + k intervals, each plus up to its
    jitter. APScheduler's counts every interval from the previous run, jitter included, so
    with the default 10 % an outlet on `every: 15m` was polled every 15 to 16.5 minutes, 45 s
    later each pass on average (91 passes a day instead of 96)."""

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        if previous_fire_time is None or not self.jitter:
            return super().get_next_fire_time(previous_fire_time, now)
        start, length = self.start_date.timestamp(), self.interval_length
        # the grid point the previous run was jittered from (a first run before start: the one before)
        k = math.floor((previous_fire_time.timestamp() - start) / length + 1e-9)
        nxt = super().get_next_fire_time(datetime.fromtimestamp(start + k * length, timezone.utc), now)
        if nxt is not None and nxt <= previous_fire_time:  # never the same run twice
            return super().get_next_fire_time(previous_fire_time, now)
        return nxt


def phase(name: str, every: float) -> float:
    """Where in each interval an outlet's passes fall (seconds after a multiple of `every`
    since the epoch): the same for a name on every start, and outlets spread evenly over
    the interval, so thousands on `every: 15m` make a steady flow of passes instead of a
    burst every quarter of an hour."""
    return zlib.crc32(name.encode("utf-8")) / 2**32 * every


def make_trigger(outlet: Outlet, jitter_fraction: float,
                 after: datetime | None = None) -> IntervalTrigger | CronTrigger:
    """The outlet's trigger; an interval one runs on the outlet's phase of each interval,
    from the first such time at or after `after` (default: one interval from now)."""
    sched = outlet.schedule
    # an adaptive schedule's job runs every `min`; each pass fetches only the feeds due then
    every = sched.shortest
    if every is not None:
        start = None
        if after is not None:
            offset = phase(outlet.name, every)
            start = datetime.fromtimestamp(
                math.ceil((after.timestamp() - offset) / every) * every + offset, timezone.utc)
        return SteadyIntervalTrigger(seconds=every, timezone=timezone.utc, start_date=start,
                                     jitter=int(every * jitter_fraction) or None)
    assert sched.cron is not None
    trigger = CronTrigger.from_crontab(sched.cron, timezone=timezone.utc)
    now = datetime.now(timezone.utc)
    first = trigger.get_next_fire_time(None, now)
    second = trigger.get_next_fire_time(first, first + timedelta(seconds=1)) if first else None
    if first and second:
        trigger.jitter = int((second - first).total_seconds() * jitter_fraction) or None
    return trigger


def same_trigger(a: object, b: object) -> bool:
    return type(a) is type(b) and str(a) == str(b) and getattr(a, "jitter", None) == getattr(b, "jitter", None)


def pass_due_by(outlet: Outlet, jitter_fraction: float, since: float) -> float:
    """When (epoch seconds) a working scheduler has surely started a pass of this outlet, counting
    from `since`: after two of its intervals, their jitter and PASS_START_GRACE."""
    sched = outlet.schedule
    if sched.shortest is not None:
        return since + sched.shortest * (2 + jitter_fraction) + PASS_START_GRACE
    assert sched.cron is not None
    trigger = CronTrigger.from_crontab(sched.cron, timezone=timezone.utc)
    first = trigger.get_next_fire_time(None, datetime.fromtimestamp(since, timezone.utc))
    second = trigger.get_next_fire_time(first, first + timedelta(seconds=1)) if first else None
    if first is None or second is None:
        return math.inf
    return second.timestamp() + (second - first).total_seconds() * jitter_fraction + PASS_START_GRACE
