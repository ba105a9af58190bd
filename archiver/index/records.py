"""What the index holds, as records: a capture row and its states, a pass and its counts,
WARC files and record spans, the browse overview; and their conversions from database rows."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ..pubdate import published_at

# states
ARCHIVED = "archived"  # kept, records in a WARC
OFF_TOPIC = "off_topic"  # fetched, not about any topic, not kept
FAILED = "failed"  # no usable response (network, HTTP error, too many redirects, ...)
ROBOTS = "robots"  # not fetched: robots.txt disallows it
BLOCKED = "blocked"  # a bot challenge or block page was served; kept as evidence, retried later
DUPLICATE = "duplicate"  # redirected to a page already archived in the same pass
NOT_MODIFIED = "not_modified"  # a conditional request answered 304: revisit record (or nothing)
UNCHANGED = "unchanged"  # refetched, same payload digest: identical-payload-digest revisit record


@dataclass
class CaptureRow:
    outlet: str
    kind: str  # robots | feed | sitemap | page | search | article | redirect
    state: str
    url: str
    fetched_at: str
    pass_id: int | None = None
    final_url: str | None = None
    status: int | None = None
    discovered_via_url: str | None = None
    discovered_via_record_id: str | None = None
    topics: list[str] = field(default_factory=list)
    matched: dict[str, list[str]] = field(default_factory=dict)
    warc_file: str | None = None
    warc_offset: int | None = None
    warc_length: int | None = None
    warc_record_id: str | None = None
    request_record_id: str | None = None
    conversion_record_id: str | None = None
    metadata_record_id: str | None = None
    redirect_record_ids: list[str] = field(default_factory=list)
    payload_digest: str | None = None
    content_type: str | None = None
    truncated: str | None = None
    ip_address: str | None = None
    title: str | None = None
    byline: str | None = None
    published: str | None = None
    language: str | None = None
    text_path: str | None = None
    text_sha256: str | None = None
    page_text_path: str | None = None
    page_text_sha256: str | None = None
    extractor: str | None = None
    extractor_version: str | None = None
    renderer: str | None = None
    error: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    previous_capture_id: int | None = None  # the earlier capture of the same URL this one follows
    revisit_of: str | None = None  # record id a revisit record refers to
    id: int | None = None


_JSON_FIELDS = ("topics", "matched", "redirect_record_ids")
_COLUMNS = [f.name for f in fields(CaptureRow) if f.name != "id"]
_KEPT = (ARCHIVED, UNCHANGED, NOT_MODIFIED)


@dataclass(frozen=True)
class PassCounts:
    """What a pass counted, as `passes.counts` records it (a JSON object, `archiver status`
    shows it). A single-machine pass counts everything as it goes. A scaled pass records its
    discovery's counts when discovery is done (the worker) and its article outcomes, counted
    from its capture rows (Index.pass_summary), when it is closed (the scheduler). A count a
    kind of pass does not keep is None, and is left out of the record."""

    discovered: int | None = None
    on_topic: int | None = None
    fetched: int | None = None
    archived: int | None = None
    robots: int | None = None
    failed: int | None = None
    blocked: int | None = None
    off_topic: int | None = None
    duplicate: int | None = None
    skipped_known: int | None = None
    not_due: int | None = None
    refetched: int | None = None
    unchanged: int | None = None
    updated: int | None = None
    sitemap_too_old: int | None = None
    sources_not_due: int | None = None
    requisites: int | None = None
    requisites_reused: int | None = None
    requisites_failed: int | None = None

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def merged(self, other: "PassCounts") -> "PassCounts":
        """These counts, with those `other` has taking their place."""
        return replace(self, **other.as_dict())

    @classmethod
    def from_json(cls, recorded: str) -> "PassCounts":
        # names a version before this one recorded and this one does not are left out
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in json.loads(recorded).items() if k in known})


@dataclass
class PassRow:
    id: int
    outlet: str
    started_at: str
    ended_at: str | None
    software: str
    config_sha256: str
    counts: PassCounts | None  # None: not counted yet (running, or a scaled pass not discovered yet)
    error: str | None


@dataclass
class WarcFileRow:
    """Where a WARC file of a scaled setup lives (schema.warc_files)."""

    name: str
    worker: str
    location: str
    state: str  # open | closed | shipped
    size: int | None
    sha256: str | None
    updated_at: str


@dataclass(frozen=True)
class RecordSpan:
    """Where a capture's records are: the bytes [offset, offset + length) of warc_file."""

    capture_id: int
    warc_file: str
    offset: int
    length: int


@dataclass
class Overview:
    """The archived articles at a glance (the browse UI's home page)."""

    topics: list[tuple[str, int]]  # (topic, articles), the most first
    outlets: list[tuple[str, int]]
    days: list[tuple[str, int]]  # (YYYY-MM-DD, articles), in date order
    latest: list[CaptureRow]  # newest first
    total: int


@dataclass(frozen=True)
class PageText:
    """What an article page said, as extracted when it was fetched (schema.page_texts): what
    its topics were decided on, kept for deciding again."""

    title: str
    published: str | None
    text: str  # the body text (Extraction.body_text)


@dataclass
class OutboxRow:
    """One delivery of one alert event (schema.outbox); `body` is the JSON sent."""

    delivery_id: str
    capture_id: int
    event: str  # new | updated | removed
    channel: str  # webhook | email
    address: str
    body: str
    created_at: str
    next_attempt_at: str
    attempts: int = 0
    claimed_until: str | None = None
    delivered_at: str | None = None
    last_error: str | None = None
    id: int | None = None


def _pass(r: Any) -> PassRow:
    d = dict(r)
    d["counts"] = PassCounts.from_json(d["counts"]) if d["counts"] is not None else None
    return PassRow(**d)


def _row(r: Any) -> CaptureRow:
    d = dict(r)
    for name in _JSON_FIELDS:
        d[name] = json.loads(d[name]) if d[name] else ([] if name != "matched" else {})
    return CaptureRow(**d)


def row_to_public(row: CaptureRow) -> dict[str, Any]:
    """The documented `archiver captures --format jsonl` object (plus id, kind and state)."""
    d = asdict(row)
    return {
        "id": d["id"], "kind": d["kind"], "state": d["state"],
        "url": d["url"], "final_url": d["final_url"], "status": d["status"], "fetched_at": d["fetched_at"],
        "outlet": d["outlet"], "topics": d["topics"], "matched": d["matched"],
        "discovered_via": {"url": d["discovered_via_url"], "record_id": d["discovered_via_record_id"]}
        if d["discovered_via_url"] else None,
        "warc_file": d["warc_file"], "warc_offset": d["warc_offset"], "warc_length": d["warc_length"],
        "warc_record_id": d["warc_record_id"], "payload_digest": d["payload_digest"],
        "content_type": d["content_type"], "title": d["title"], "published_at": published_at(d["published"]),
        "text_path": d["text_path"], "text_sha256": d["text_sha256"],
        "page_text_path": d["page_text_path"], "page_text_sha256": d["page_text_sha256"],
        "error": d["error"],
    }
