"""The index's tables, one definition for SQLite and PostgreSQL (SQLAlchemy Core).

Migrations (archiver/migrations, Alembic) create and change these tables; this module is
what the code reads and writes through. A change here goes with a new migration.
"""

from __future__ import annotations

from sqlalchemy import (BigInteger, Column, Float, Index, Integer, LargeBinary, MetaData, Table, Text,
                        UniqueConstraint)

# the newest migration; an index at this revision needs no Alembic run (Alembic is imported
# only to change a schema, which keeps every process that merely opens the index small)
HEAD = "0005"

# SQLite's rowid alias must be declared INTEGER; PostgreSQL gets 64-bit keys
Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

meta = Table("meta", metadata,
             Column("key", Text, primary_key=True),
             Column("value", Text, nullable=False))

passes = Table(
    "passes", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("outlet", Text, nullable=False),
    Column("started_at", Text, nullable=False),
    Column("ended_at", Text),
    Column("software", Text, nullable=False),
    Column("config_sha256", Text, nullable=False),
    Column("counts", Text),
    Column("error", Text),
)

captures = Table(
    "captures", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("pass_id", Id),
    Column("outlet", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("final_url", Text),
    Column("status", Integer),
    Column("fetched_at", Text, nullable=False),
    Column("discovered_via_url", Text),
    Column("discovered_via_record_id", Text),
    Column("topics", Text, nullable=False, server_default="[]"),
    Column("matched", Text, nullable=False, server_default="{}"),
    Column("warc_file", Text),
    Column("warc_offset", BigInteger),
    Column("warc_length", BigInteger),
    Column("warc_record_id", Text),
    Column("request_record_id", Text),
    Column("conversion_record_id", Text),
    Column("metadata_record_id", Text),
    Column("redirect_record_ids", Text, nullable=False, server_default="[]"),
    Column("payload_digest", Text),
    Column("content_type", Text),
    Column("truncated", Text),
    Column("ip_address", Text),
    Column("title", Text),
    Column("byline", Text),
    Column("published", Text),
    Column("language", Text),
    Column("text_path", Text),
    Column("text_sha256", Text),
    Column("page_text_path", Text),
    Column("page_text_sha256", Text),
    Column("extractor", Text),
    Column("extractor_version", Text),
    Column("renderer", Text),
    Column("error", Text),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("previous_capture_id", Id),
    Column("revisit_of", Text),
)
Index("captures_url", captures.c.url)
Index("captures_final_url", captures.c.final_url)
Index("captures_outlet_kind", captures.c.outlet, captures.c.kind, captures.c.state)
Index("captures_record", captures.c.warc_record_id)

# Where each WARC file lives. Single-machine archives need no row here (a file named in
# captures.warc_file is under <storage root>/warc); a worker of a scaled setup records its
# files when it opens them (location: its spool) and again once they are shipped.
warc_files = Table(
    "warc_files", metadata,
    Column("name", Text, primary_key=True),
    Column("worker", Text, nullable=False),
    Column("location", Text, nullable=False),  # file:///..., s3://bucket/key
    Column("state", Text, nullable=False),  # open | closed | shipped
    Column("size", BigInteger),
    Column("sha256", Text),
    Column("updated_at", Text, nullable=False),
)

# The shared frontier of a scaled setup: every candidate article once per outlet. A row is
# settled in the same transaction as the capture row its fetch produced, so a task redone
# after a worker died finds it settled, or does it again from the start.
frontier = Table(
    "frontier", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("outlet", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("pass_id", Id, nullable=False),
    Column("via_url", Text, nullable=False),
    Column("via_kind", Text, nullable=False),
    Column("via_record_id", Text),
    Column("title", Text),
    Column("summary", Text),
    Column("state", Text, nullable=False),  # queued | fetching | settled
    Column("worker", Text),
    Column("capture_id", Id),
    Column("updated_at", Text, nullable=False),
    UniqueConstraint("outlet", "url", name="frontier_outlet_url"),
)
Index("frontier_pass_state", frontier.c.pass_id, frontier.c.state)

# Final URLs being kept in a scaled setup: two candidates that redirect to one page, fetched
# by two workers at once, give one capture (the single process keeps this set in memory).
claims = Table(
    "claims", metadata,
    Column("final_url", Text, primary_key=True),
    Column("frontier_id", Id, nullable=False),
)

# Alerts waiting to go out (alerts.py): one row per event and alert, inserted in the
# transaction that inserts the capture row causing it, so a capture committed always has its
# deliveries and a capture lost in a crash has none. A row is claimed (claimed_until) while
# it is being sent, and delivered_at is set once the receiver accepted it; until then it is
# tried again after next_attempt_at.
outbox = Table(
    "outbox", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("delivery_id", Text, nullable=False),  # X-Archiver-Delivery: receivers drop a repeat by it
    Column("capture_id", Id, nullable=False),
    Column("event", Text, nullable=False),  # new | updated | removed
    Column("channel", Text, nullable=False),  # webhook | email
    Column("address", Text, nullable=False),  # the webhook URL, or the mail recipients
    Column("body", Text, nullable=False),  # the JSON sent, built once: every attempt sends the same bytes
    Column("created_at", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Text, nullable=False),
    Column("claimed_until", Text),
    Column("delivered_at", Text),
    Column("last_error", Text),
    UniqueConstraint("delivery_id", name="outbox_delivery_id"),
)
Index("outbox_pending", outbox.c.delivered_at, outbox.c.next_attempt_at)

# What every article page fetched said, kept or not (a row per capture that extracted a page):
# its headline, its stated publication date and its body text, zlib-compressed UTF-8 (level 6).
# Off-topic pages leave nothing else, so without this a topic added later could only be
# tested by fetching every page again (rematch.py reads it).
page_texts = Table(
    "page_texts", metadata,
    Column("capture_id", Id, primary_key=True, autoincrement=False),
    Column("title", Text),
    Column("published", Text),
    Column("text_z", LargeBinary, nullable=False),
)

# When each discovery document of an outlet on an adaptive schedule was polled and is due again
# (polling.py): one row per outlet and document URL. `items` and `watched` are the age-weighted
# new items seen and seconds watched (their ratio the feed's estimated rate); `listed` the
# digests of the URLs the last poll listed, to tell which are new at the next.
document_polls = Table(
    "document_polls", metadata,
    Column("outlet", Text, primary_key=True),
    Column("url", Text, primary_key=True),
    Column("kind", Text, nullable=False),  # feed | page | sitemap | search
    Column("polled_at", Text, nullable=False),  # the last poll that read the document
    Column("due_at", Text, nullable=False),
    Column("interval", Float, nullable=False),  # seconds
    Column("items", Float, nullable=False, server_default="0"),
    Column("watched", Float, nullable=False, server_default="0"),
    Column("polls", Integer, nullable=False, server_default="0"),
    Column("changed_at", Text),  # the last poll that found new URLs
    Column("listed", Text, nullable=False, server_default="[]"),
)
