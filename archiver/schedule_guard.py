"""APScheduler 3, made to outlive a failing job store.

APScheduler re-arms its timer only after a scheduling round returns: a round that raises (the
job store failing in `update_job` or `get_next_run_time`, as SQLite does with "unable to open
database file" when the process is out of file descriptors) leaves no timer in the
AsyncIOScheduler and ends the BackgroundScheduler's thread, and no job runs again while the
process looks alive. `GuardedScheduler` (the daemon's, on its event loop) and
`GuardedBackgroundScheduler` (`archiver scheduler`'s, in a thread) run every round through
`RetriedRounds`, which logs a failed one and tries again with back-off; `WatchedJobStore`
records whether the store's last call worked, so /healthz can say so and the daemon can tell
when it works again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from threading import TIMEOUT_MAX
from typing import Any, TypeVar

from apscheduler.jobstores.base import ConflictingIdError, JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler, run_in_event_loop
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED, BaseScheduler

from .ratelog import RateLimitedLog

log = logging.getLogger(__name__)
T = TypeVar("T")


def first_line(e: BaseException) -> str:
    """SQLAlchemy's messages run to the SQL and a link; the first line names the failure."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


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
        daemon adds its jobs again)."""
        def fresh() -> None:
            self.engine.dispose()
            self.jobs_t.create(self.engine, checkfirst=True)
            SQLAlchemyJobStore.get_next_run_time(self)

        self._watch(fresh)

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
