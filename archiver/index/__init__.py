"""The provenance index: SQLite at the storage root (default) or PostgreSQL (`index.url`).

One row per capture attempt: what was fetched, when, why (which document led to it and which
terms matched where), and where its records are (WARC file, gzip member offset and length,
record ids, digests). Rows naming WARC records are inserted only after those records were
flushed (see crawl.py), so a row never points at bytes that are not on disk.

Both databases go through one code path (SQLAlchemy Core, tables in schema.py) and one set
of migrations (Alembic, archiver/migrations), run when a writer finds the schema behind.
Other modules ask through the named methods here; the scaled setup's frontier
(scale/frontier.py) alone has statements of its own, run through Index.transaction() and
Index.reading(), which turn every database error into a StorageError naming the index.
"""

from .database import (INDEX_FILE, current_revision, display_url, index_url, job_run_times, job_store_engine,
                       migrate, run_migrations)
from .polls import PollRow
from .queries import Index
from .records import (ARCHIVED, BLOCKED, DUPLICATE, FAILED, NOT_MODIFIED, OFF_TOPIC, ROBOTS, UNCHANGED, CaptureRow,
                      OutboxRow, Overview, PageText, PassCounts, PassRow, RecordSpan, WarcFileRow, row_to_public)

__all__ = ["ARCHIVED", "BLOCKED", "DUPLICATE", "FAILED", "INDEX_FILE", "NOT_MODIFIED", "OFF_TOPIC", "ROBOTS",
           "UNCHANGED", "CaptureRow", "Index", "OutboxRow", "Overview", "PageText", "PassCounts", "PassRow",
           "PollRow", "RecordSpan", "WarcFileRow", "current_revision", "display_url", "index_url", "job_run_times",
           "job_store_engine", "migrate", "row_to_public", "run_migrations"]
