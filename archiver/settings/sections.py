"""The config's sections that tune one stage each: storage, index, scale, fetch, discover, extract, daemon, refetch."""

from __future__ import annotations

import re
from typing import Any, Optional

from pydantic import Field, field_validator

from ..units import parse_duration, parse_size
from .base import DEFAULT_STORAGE_ROOT, _Model

class WarcSettings(_Model):
    prefix: str = Field("archiver", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    rotate_size: int = 1_000_000_000
    operator: str = ""
    compress_level: int = Field(6, ge=1, le=9)

    @field_validator("rotate_size", mode="before")
    @classmethod
    def _size(cls, v: Any) -> int:
        return parse_size(v)

    @field_validator("rotate_size")
    @classmethod
    def _min_rotate(cls, v: int) -> int:
        if v < 1_000_000:
            raise ValueError("must be at least 1 MB")
        return v


class StorageSettings(_Model):
    root: str = DEFAULT_STORAGE_ROOT
    keep_off_topic: bool = False
    warc: WarcSettings = WarcSettings()
    # A scaled setup's shared store: workers ship closed WARCs there from their spools
    # (file:///PATH on a mounted filesystem, or s3://BUCKET/PREFIX); readers find files
    # through the index. Credentials for S3 come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY.
    ship_to: str | None = None
    s3_endpoint: str | None = None  # an S3-compatible store's URL (MinIO, Ceph); None: AWS
    s3_region: str | None = None

    @field_validator("ship_to")
    @classmethod
    def _store(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^(file:///.|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/|$))", v):
            raise ValueError("must be file:///PATH or s3://BUCKET/PREFIX")
        return v

    @field_validator("s3_endpoint")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("must be http(s)://HOST[:PORT]")
        return v


class IndexSettings(_Model):
    # None: SQLite at <storage root>/index.sqlite3. postgresql://USER:PASSWORD@HOST/DB for a
    # scaled setup (the password is better given as ARCHIVER_INDEX_URL than written here)
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^(sqlite|postgres(ql)?)(\+\w+)?://", v):
            raise ValueError("must be sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB")
        return v


class ScaleSettings(_Model):
    """A scaled setup (`archiver scheduler` + `archiver worker`); unused by `archiver run`."""

    broker: str | None = None  # redis://HOST:PORT/DB
    requeue_after: float = Field(60.0, ge=2)  # seconds of silence before a worker counts as dead
    worker_threads: int | None = Field(None, ge=1, le=256)  # tasks a worker runs at once; default fetch.concurrency

    @field_validator("broker")
    @classmethod
    def _redis(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^rediss?://", v):
            raise ValueError("must be redis://HOST:PORT/DB")
        return v


class FetchSettings(_Model):
    user_agent: str = "archiver/0.1 (news archiving; operator contact not configured)"
    concurrency: int = Field(16, ge=1, le=1024)
    per_host_concurrency: int = Field(2, ge=1, le=64)
    per_host_delay: float = Field(1.0, ge=0)
    timeout: float = Field(30.0, gt=0)
    max_body_bytes: int = 20_000_000
    max_decoded_bytes: int = 50_000_000
    max_redirects: int = Field(10, ge=0, le=50)
    respect_robots: bool = True
    allow_private_networks: bool = False
    accept_encoding: str = "gzip, deflate"
    robots_max_age: float = Field(86400.0, gt=0)
    max_retry_after: float = Field(3600.0, ge=0)
    # a robots.txt Crawl-delay is obeyed up to this many seconds (Heritrix's
    # respectCrawlDelayUpToSeconds); a site asking for more gets this
    max_crawl_delay: float = Field(60.0, ge=0)

    @field_validator("max_body_bytes", "max_decoded_bytes", mode="before")
    @classmethod
    def _sizes(cls, v: Any) -> int:
        return parse_size(v)

    @field_validator("per_host_delay", "timeout", "robots_max_age", "max_retry_after", "max_crawl_delay",
                     mode="before")
    @classmethod
    def _durations(cls, v: Any) -> float:
        return parse_duration(v)

    @field_validator("max_body_bytes", "max_decoded_bytes")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1024:
            raise ValueError("must be at least 1 KB")
        return v


class DiscoverSettings(_Model):
    max_candidates_per_outlet: int = Field(5000, ge=1)
    max_sitemaps_per_outlet: int = Field(50, ge=1)
    max_age_days: Optional[float] = Field(30, gt=0)


class ExtractSettings(_Model):
    # worker processes for article extraction; null means one per core, 0 means threads in
    # the crawling process (less memory, one core)
    workers: Optional[int] = Field(None, ge=0, le=256)


class DaemonSettings(_Model):
    listen: str = Field("127.0.0.1:8771", pattern=r"^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$")
    shutdown_grace: float = Field(20.0, ge=0)
    jitter: float = Field(0.1, ge=0, le=1)
    misfire_grace_time: float = Field(600.0, gt=0)
    not_modified: str = Field("revisit", pattern=r"^(revisit|none)$")
    close_idle_warc: float = Field(300.0, gt=0)
    log_format: str = Field("text", pattern=r"^(text|json)$")
    # below this much free space on the storage root no pass starts and /healthz answers 503
    # (a pass that runs the disk full stops on its first failed write; this keeps room for
    # the index and job store to go on working); 0 turns the check off
    min_free_bytes: int = 256 * 2**20
    # the browse UI (`archiver serve`) as alert receivers reach it, e.g. https://archive.example.org;
    # alerts' links are absolute under it, and relative (/web/..., /capture/...) when it is unset
    public_url: Optional[str] = None

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", v):
            raise ValueError("must be the browse UI's http(s)://HOST[:PORT][/PATH]")
        return v.rstrip("/") if v is not None else None

    @field_validator("shutdown_grace", "misfire_grace_time", "close_idle_warc", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> float:
        return parse_duration(v)

    @field_validator("min_free_bytes", mode="before")
    @classmethod
    def _size(cls, v: Any) -> int:
        return parse_size(v)

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class RefetchSettings(_Model):
    after: list[float] = [3600.0, 21600.0, 86400.0]

    @field_validator("after", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> list[float]:
        if not isinstance(v, list):
            raise ValueError("expected a list of durations such as [1h, 6h, 24h]")
        return sorted(parse_duration(x) for x in v)
