"""When outlet passes start: APScheduler 3, for both runtimes, made to outlive a failing job store.

`Schedule` is one runtime's schedule: the daemon's (`archiver run`, an AsyncIOScheduler on its
event loop: a job lasts as long as its pass) or the scaled setup's (`archiver scheduler`, a
BackgroundScheduler in a thread: a job starts a pass that workers do). One job per outlet, in
a SQLAlchemy job store (`scheduler.sqlite3` in the storage root, or the tables of a PostgreSQL
index), so next run times survive restarts. This module and triggers.py (when passes fall) are the only ones that know APScheduler.

APScheduler re-arms its timer only after a scheduling round returns: a round that raises (the
job store failing in `update_job` or `get_next_run_time`, as SQLite does with "unable to open
database file" when the process is out of file descriptors) leaves no timer in the
AsyncIOScheduler and ends the BackgroundScheduler's thread, and no job runs again while the
process looks alive. Both run every round through `RetriedRounds`, which logs a failed one and
tries again with back-off; `WatchedJobStore` records whether the store's last call worked, so
/healthz can say so and `Schedule.check` (the watchdog) can tell when it works again, put back
jobs the store lost, and wake a scheduler that stopped starting passes.
"""

from __future__ import annotations

import logging
import math
import pickle
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from threading import TIMEOUT_MAX
from typing import Any, TypeVar

from apscheduler.events import EVENT_JOB_MAX_INSTANCES
from apscheduler.jobstores.base import ConflictingIdError, JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler, run_in_event_loop
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED, BaseScheduler
from apscheduler.triggers.interval import IntervalTrigger

from .clock import iso_seconds
from .config import LoadedConfig
from .errors import ArchiverError, first_line
from .index import job_store_engine
from .jobstore import JOBS_TABLE, scheduler_url, store_name
from .triggers import make_trigger, pass_due_by, same_trigger
from .ratelog import RateLimitedLog

log = logging.getLogger(__name__)
T = TypeVar("T")

# new outlets' first passes start at about this rate at most (over half their interval at most)
FIRST_PASSES_PER_S = 20.0


# ---------------------------------------------------------------------- the guards


@dataclass
class JobStoreHealth:
    """Whether the job store works; errors counts every failed call.

    A store that fails only some calls (reads work, writes fail) must not flap between
    failing and working with every call: it counts as working again only once a call
    succeeds `quiet` seconds after the last one failed."""

    where: str
    quiet: float = 3.0
    failing: str | None = None
    failing_since: float | None = None  # time.time()
    errors: int = 0
    _last_error: float = field(default=0.0, init=False, repr=False)  # time.monotonic()

    def __post_init__(self) -> None:
        self._log = RateLimitedLog(log, 60.0)

    def ok(self) -> None:
        if self.failing is None or time.monotonic() - self._last_error < self.quiet:
            return
        log.warning("job store %s works again after %.0fs of errors", self.where,
                    time.time() - (self.failing_since or time.time()))
        self.failing = self.failing_since = None

    def failed(self, e: BaseException) -> None:
        self.errors += 1
        self._last_error = time.monotonic()
        if self.failing is None:
            self.failing_since = time.time()
            log.error("job store %s failed: %s; no pass can start until it works again (retrying)",
                      self.where, first_line(e))
            self._log.hold("still")
        else:
            self._log.log(logging.ERROR, "still", "job store %s still failing: %s (%d errors so far)",
                          self.where, first_line(e), self.errors)
        self.failing = first_line(e)


# Jobs stored by releases before this module name their runtime's own function and the outlet
# alone; they are read as today's jobs, so a store they are in keeps its next run times.
_EARLIER_JOBS = {"archiver.daemon:scheduled_pass": ("archiver.schedule:pass_job", "daemon"),
                 "archiver.scale.scheduler:scheduled_outlet": ("archiver.schedule:pass_job_in_thread", "scheduler")}


class WatchedJobStore(SQLAlchemyJobStore):
    """SQLAlchemyJobStore whose every call reports to a JobStoreHealth."""

    def __init__(self, health: JobStoreHealth, **kwargs: Any):
        super().__init__(**kwargs)
        self.health = health

    def _watch(self, call: Callable[..., T], *args: Any) -> T:
        try:
            result = call(*args)
        except (JobLookupError, ConflictingIdError):
            self.health.ok()  # the store answered; the job was not what the caller thought
            raise
        except Exception as e:
            self.health.failed(e)
            raise
        self.health.ok()
        return result

    def probe(self) -> None:
        """Open the store afresh and read it: a pooled connection would go on reading a file that
        was since replaced or deleted; a store whose table is gone gets it back (empty: the
        schedule adds its jobs again)."""
        def fresh() -> None:
            self.engine.dispose()
            self.jobs_t.create(self.engine, checkfirst=True)
            SQLAlchemyJobStore.get_next_run_time(self)

        self._watch(fresh)

    def _reconstitute_job(self, job_state: bytes) -> Any:
        state = pickle.loads(job_state)
        earlier = _EARLIER_JOBS.get(state.get("func"))
        if earlier is not None:
            state["func"], runtime = earlier
            state["args"] = (runtime, *state["args"])
            job_state = pickle.dumps(state, self.pickle_protocol)
        return super()._reconstitute_job(job_state)

    def start(self, scheduler: Any, alias: str) -> None:
        self._watch(super().start, scheduler, alias)

    def lookup_job(self, job_id: str) -> Any:
        return self._watch(super().lookup_job, job_id)

    def get_due_jobs(self, now: Any) -> Any:
        return self._watch(super().get_due_jobs, now)

    def get_next_run_time(self) -> Any:
        return self._watch(super().get_next_run_time)

    def get_all_jobs(self) -> Any:
        return self._watch(super().get_all_jobs)

    def add_job(self, job: Any) -> None:
        self._watch(super().add_job, job)

    def update_job(self, job: Any) -> None:
        self._watch(super().update_job, job)

    def remove_job(self, job_id: str) -> None:
        self._watch(super().remove_job, job_id)


class RetriedRounds(BaseScheduler):
    """A scheduler's rounds, where one that raises is logged and tried again (after 1, 2, 4 ...
    seconds, at most `jobstore_retry_interval`) instead of ending scheduling. Put it before
    the APScheduler class it guards: `class S(RetriedRounds, AsyncIOScheduler)`."""

    def __init__(self, **options: Any):
        self._failed_rounds = 0
        self._round_log = RateLimitedLog(log, 60.0)
        super().__init__(**options)

    def _guarded_round(self) -> float | None:
        """One scheduling round; the seconds until the next (None: until something wakes it)."""
        try:
            wait_seconds: float | None = self._process_jobs()
        except Exception as e:
            self._failed_rounds += 1
            wait_seconds = min(float(self.jobstore_retry_interval), 2.0 ** (self._failed_rounds - 1))
            self._round_log.log(logging.ERROR, "round", "scheduling round failed: %s; trying again in %gs "
                                "(%d failed in a row)", first_line(e), wait_seconds, self._failed_rounds)
        else:
            if self._failed_rounds:
                log.warning("scheduling works again after %d failed rounds", self._failed_rounds)
            self._failed_rounds = 0
        return wait_seconds


class GuardedScheduler(RetriedRounds, AsyncIOScheduler):
    """An AsyncIOScheduler whose failed rounds are retried (the daemon's)."""

    @run_in_event_loop
    def wakeup(self) -> None:
        self._stop_timer()
        self._start_timer(self._guarded_round())


class GuardedBackgroundScheduler(RetriedRounds, BackgroundScheduler):
    """A BackgroundScheduler whose failed rounds are retried (`archiver scheduler`'s): its
    thread runs until shutdown, whatever the job store does."""

    def _main_loop(self) -> None:
        wait_seconds: float | None = TIMEOUT_MAX
        while self.state != STATE_STOPPED:
            self._event.wait(wait_seconds)
            self._event.clear()
            wait_seconds = self._guarded_round()


# ---------------------------------------------------------------------- the jobs

# The job store keeps a job's callable as a textual reference ("module:function") beside its
# pickled arguments, and a process that starts later reads it back: a bound method or a
# closure of the running daemon cannot be kept so. So every job names one of the two
# functions below and, as its first argument, the runtime it belongs to ("daemon",
# "scheduler"); a Schedule puts itself here under that name while it runs. The name is the
# same in every run, so the jobs an earlier run stored, with their next run times, find the
# schedule of the run after a restart (an id of the process would leave them pointing at one
# that is gone); and two runtimes sharing a store (an archive moved from `archiver run` to a
# scaled setup) tell their jobs apart, which `Schedule` puts right at its start.
_RUNNING: dict[str, "Schedule"] = {}


def _schedule_of(runtime: str, outlet: str) -> "Schedule | None":
    schedule = _RUNNING.get(runtime)
    if schedule is None:  # pragma: no cover - a job runs only in a started schedule
        log.error("no %s schedule runs in this process; the pass of %s is not started", runtime, outlet)
        return None
    schedule.fired()
    return schedule


async def pass_job(runtime: str, outlet: str) -> None:
    """An outlet's job on an event loop (the daemon's): it lasts as long as the pass, so the
    scheduler's max_instances 1 keeps one pass of an outlet at a time."""
    schedule = _schedule_of(runtime, outlet)
    if schedule is not None:
        await schedule.start_pass(outlet)


def pass_job_in_thread(runtime: str, outlet: str) -> None:
    """An outlet's job in the scheduler's thread pool (the scaled setup's)."""
    schedule = _schedule_of(runtime, outlet)
    if schedule is not None:
        schedule.start_pass(outlet)


class Schedule:
    """One runtime's schedule of outlet passes: the guarded scheduler, its watched job store,
    one job per configured outlet, and what tells whether passes start.

    `start_pass(outlet_name)` is what a job runs: a coroutine function on an event loop (the
    default), a plain function with `in_thread`."""

    def __init__(self, cfg: LoadedConfig, runtime: str, start_pass: Callable[[str], Any], *,
                 in_thread: bool = False):
        self.cfg = cfg
        self.runtime = runtime
        self.start_pass = start_pass
        self.health = JobStoreHealth(where=store_name(cfg))
        self._store = WatchedJobStore(self.health, engine=job_store_engine(scheduler_url(cfg)),
                                     tablename=JOBS_TABLE)
        self._job: Callable[..., Any] = pass_job_in_thread if in_thread else pass_job
        options: dict[str, Any] = dict(
            timezone=timezone.utc, jobstores={"default": self._store},
            job_defaults={"coalesce": True, "max_instances": 1,
                          "misfire_grace_time": int(cfg.config.daemon.misfire_grace_time)})
        self._scheduler: RetriedRounds = (GuardedBackgroundScheduler(**options) if in_thread
                                          else GuardedScheduler(**options))
        # a turn that finds the outlet's previous pass still running shows the scheduler works too
        self._scheduler.add_listener(lambda _event: self.fired(), EVENT_JOB_MAX_INSTANCES)
        self.since: float | None = None  # time.time() the schedule was last (re)started
        self.last_fired: float | None = None  # time.time() the scheduler last started a pass
        self._synced = False
        self._shut_down = False
        self._rate = RateLimitedLog(log, 60.0)

    @property
    def running(self) -> bool:
        """Started and not shut down (paused counts as running)."""
        return bool(self._scheduler.running)

    def fired(self) -> None:
        self.last_fired = time.time()

    # ------------------------------------------------------------------ start and stop

    def start(self) -> bool:
        """Start the scheduler if it is not running and bring its jobs in line with the config;
        False when that failed (the job store's failures are logged by its health record, and
        `check` tries again)."""
        other = _RUNNING.setdefault(self.runtime, self)
        if other is not self:
            raise ArchiverError(f"a {self.runtime} schedule already runs in this process")
        try:
            if not self._scheduler.running:
                # paused until the jobs match the config: no job of a dropped outlet, or on an
                # old trigger, fires first
                self._scheduler.start(paused=True)
                self.since = time.time()
                try:
                    self._sync()
                finally:
                    self._scheduler.resume()
            else:
                self._sync()
        except Exception as e:
            self._synced = False
            if self.health.failing is None:
                self._rate.log(logging.ERROR, "start", "could not start the schedule: %r; trying again", e)
            return False
        self._synced = True
        return True

    def reconfigure(self, cfg: LoadedConfig) -> None:
        """A reloaded config: its outlets' jobs from now on (overdue counts from now)."""
        self.cfg = cfg
        if self._scheduler.running:
            self.since = time.time()
            self.start()

    def pause(self) -> None:
        """No more passes start; those running go on (shutting down would cancel them)."""
        if self._scheduler.running:
            self._scheduler.pause()

    def shutdown(self) -> None:
        """Stop scheduling; a second call does nothing. On an event loop this happens at the
        loop's next turn and cancels the jobs still running there: `pause` first and let the
        passes finish."""
        if self._scheduler.running and not self._shut_down:
            self._shut_down = True
            self._scheduler.shutdown(wait=False)
        if _RUNNING.get(self.runtime) is self:
            del _RUNNING[self.runtime]

    def _sync(self) -> None:
        existing = {job.id: job for job in self._scheduler.get_jobs()}
        now = datetime.now(timezone.utc)
        jitter = self.cfg.config.daemon.jitter
        new = sum(1 for o in self.cfg.config.outlets if o.name not in existing)
        for outlet in self.cfg.config.outlets:
            args = [self.runtime, outlet.name]
            job = existing.pop(outlet.name, None)
            if job is None:
                # a new outlet gets its first pass soon, spread so outlets do not start together
                # (thousands of new ones over a while: a first pass fetches whole feeds and
                # their articles); its next is on its phase, at least half an interval later
                every = outlet.schedule.shortest or 60
                spread = min(every / 2, max(min(5.0, every / 10), new / FIRST_PASSES_PER_S))
                first = now + timedelta(seconds=random.uniform(0, spread))
                trigger = make_trigger(outlet, jitter, after=first + timedelta(seconds=every / 2))
                self._scheduler.add_job(self._job, trigger, args=args, id=outlet.name, name=outlet.name,
                                        next_run_time=first, replace_existing=True)
                then = f", then from {trigger.start_date.isoformat()}" if isinstance(trigger, IntervalTrigger) else ""
                log.info("scheduled %s: %s, first pass at %s%s", outlet.name, trigger, first.isoformat(), then)
                continue
            # a changed interval: the next pass on the outlet's phase, half an interval ahead at least
            trigger = make_trigger(outlet, jitter, after=now + timedelta(seconds=(outlet.schedule.shortest or 0) / 2))
            if job.func is not self._job or list(job.args) != args:
                self._scheduler.modify_job(outlet.name, func=self._job, args=args)  # its next run stays
            if not same_trigger(job.trigger, trigger):
                if str(job.trigger) == str(trigger) and getattr(job.trigger, "jitter", None) == trigger.jitter:
                    # the same interval in the trigger of an earlier release: its next run stays
                    self._scheduler.modify_job(outlet.name, trigger=trigger)
                    continue
                self._scheduler.reschedule_job(outlet.name, trigger=trigger)
                log.info("rescheduled %s: %s", outlet.name, trigger)
        for job_id in existing:
            self._scheduler.remove_job(job_id)
            log.info("unscheduled %s: no longer in the config", job_id)

    # ------------------------------------------------------------------ watching

    def overdue(self) -> str | None:
        """Why passes look stuck: none started in two of the shortest interval (plus grace)."""
        if self.since is None or not self._scheduler.running:
            return None
        since = max(self.since, self.last_fired or 0.0)
        jitter = self.cfg.config.daemon.jitter
        due_by = min((pass_due_by(o, jitter, since) for o in self.cfg.config.outlets), default=math.inf)
        now = time.time()
        if now <= due_by:
            return None
        last = f"the last at {iso_seconds(self.last_fired)}" if self.last_fired else "none since the schedule started"
        return f"no pass started for {now - since:.0f}s though one was due by {iso_seconds(due_by)} ({last})"

    def problems(self) -> list[str]:
        """Every reason passes may not start; empty when they do."""
        problems = []
        if not self._scheduler.running:
            problems.append("scheduler not running")
        if self.health.failing is not None:
            problems.append(f"job store {self.health.where} failing since "
                            f"{iso_seconds(self.health.failing_since or time.time())}: {self.health.failing}")
        overdue = self.overdue()
        if overdue is not None:
            problems.append(overdue)
        return problems

    def check(self) -> None:
        """The watchdog's look, every few seconds: the scheduler runs, its job store answers,
        passes start; what is not so is logged and put right."""
        sched = self._scheduler
        if self.health.failing is not None:
            try:
                self._store.probe()  # clears the failure once the store answers for a while
            except Exception:
                return
            if self.health.failing is None and self.start():
                sched.wakeup()  # due passes start now, not at the scheduler's next retry
            return
        if not sched.running:
            self._rate.log(logging.ERROR, "not-running", "the scheduler is not running; starting it")
            self.start()
            return
        if not self._synced:
            self.start()
        overdue = self.overdue()
        if overdue is not None:
            self._rate.log(logging.ERROR, "overdue", "%s; waking the scheduler and checking its jobs", overdue)
            self.start()  # puts back a job the store lost
            sched.wakeup()  # arms its timer again if a round died without one


class _SkippedRunFilter(logging.Filter):
    """APScheduler warns every time a run is skipped because the outlet's previous pass is
    still going; with short intervals that is routine, so it is logged at INFO instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "maximum number of running instances reached" in record.getMessage():
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_scheduler_logs() -> None:
    """APScheduler's executor logs every job run at INFO, noise for an archiving daemon: only
    its warnings and errors; and routine skipped runs at INFO."""
    logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
    scheduler_log = logging.getLogger("apscheduler.scheduler")
    if not any(isinstance(f, _SkippedRunFilter) for f in scheduler_log.filters):
        scheduler_log.addFilter(_SkippedRunFilter())
