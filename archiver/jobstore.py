"""Where the scheduler keeps its jobs, and their next run times read from there (for `archiver
status`, while a scheduler runs). The scheduler itself is schedule.py's."""

from __future__ import annotations

from datetime import datetime, timezone

from .config import LoadedConfig
from .errors import StorageError
from .index import index_url, job_run_times

SCHEDULER_DB = "scheduler.sqlite3"
JOBS_TABLE = "apscheduler_jobs"


def scheduler_url(cfg: LoadedConfig) -> str:
    """Where the scheduler keeps its jobs: beside a PostgreSQL index in the same database,
    else in its own SQLite file (the index's file is the crawl's alone)."""
    url = index_url(cfg.storage_root, cfg.config.index.url)
    return url if not url.startswith("sqlite") else f"sqlite:///{cfg.storage_root / SCHEDULER_DB}"


def store_name(cfg: LoadedConfig) -> str:
    """The job store as logs and /healthz name it (never its URL: that may carry a password)."""
    return str(cfg.storage_root / SCHEDULER_DB) if scheduler_url(cfg).startswith("sqlite") else "in the index database"


def next_run_times(cfg: LoadedConfig) -> dict[str, datetime]:
    """outlet -> next scheduled pass, read from the job store (works while a scheduler runs);
    empty when there is none yet or it cannot be read."""
    if scheduler_url(cfg).startswith("sqlite") and not (cfg.storage_root / SCHEDULER_DB).exists():
        return {}  # reading would create the file
    try:
        times = job_run_times(scheduler_url(cfg), JOBS_TABLE)
    except StorageError:
        return {}
    return {job_id: datetime.fromtimestamp(ts, timezone.utc) for job_id, ts in times.items()}


__all__ = ["JOBS_TABLE", "SCHEDULER_DB", "next_run_times", "scheduler_url", "store_name"]
