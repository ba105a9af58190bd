"""The config file's sections as validated models: one pydantic model per section (storage,
index, scale, fetch, discover, extract, daemon, refetch, capture), the topics, outlets and
alerts, and Config holding them all.

Unknown keys are errors (extra="forbid"): a typo silently ignored would quietly change what
gets archived. Models are frozen, so a loaded config is never changed behind a pass's back.
"""

from __future__ import annotations

import os
import re
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator

from .units import parse_duration, parse_size

# relative to the config file's folder, like any relative root: never the package's own
# folder, which after a plain `pip install` is inside site-packages
DEFAULT_STORAGE_ROOT = "storage"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class RequisiteSettings(_Model):
    """What an archived page needs to render (stylesheets and what they import, fonts,
    images, scripts, icons, frames), fetched with the page."""

    max_per_page: int = Field(150, ge=0, le=10000)
    max_bytes_per_page: int = 50 * 2**20
    # any: every host the page names (images often live on a CDN); same-site: hosts sharing
    # the page's last two name labels
    scope: str = Field("any", pattern=r"^(any|same-site)$")
    # a requisite captured this recently is not fetched again for the next page naming it
    refresh: float = 86400.0

    @field_validator("max_bytes_per_page", mode="before")
    @classmethod
    def _size(cls, v: Any) -> int:
        return parse_size(v)

    @field_validator("refresh", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)


CAPTURE_MODES = ("html", "requisites", "browser", "auto")
BROWSER_MODES = ("browser", "auto")  # the modes that need capture.browser.executable
MAX_VIEWPORT_PX = 16384  # Chromium's largest texture


class BrowserCaptureSettings(_Model):
    """Pages rendered by Chromium (capture mode browser, and the pages of auto that need it);
    every request the browser makes goes through archiver's own fetcher."""

    executable: str = "/usr/bin/chromium"
    pages_at_once: int = Field(2, ge=1, le=64)
    page_timeout: float = 30.0  # one page, from its navigation to its last request
    settle_timeout: float = 5.0  # at most this long waiting for the network to go quiet
    scroll: bool = True  # scroll to the end first, so lazy images and text load
    screenshot: bool = True
    viewport: str = "1280x900"  # WIDTHxHEIGHT in pixels
    restart_after: int = Field(100, ge=1)  # pages, then a fresh browser
    max_browser_mb: int = Field(600, ge=1)  # past this (PSS of its processes) the browser is restarted

    @field_validator("page_timeout", "settle_timeout", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> float:
        return parse_duration(v)

    @field_validator("page_timeout")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("must be more than 0 seconds")
        return v

    @field_validator("viewport")
    @classmethod
    def _viewport(cls, v: str) -> str:
        sizes = v.split("x")
        if len(sizes) != 2 or not all(n.isdigit() and 100 <= int(n) <= MAX_VIEWPORT_PX for n in sizes):
            raise ValueError(f"expected WIDTHxHEIGHT in pixels such as 1280x900, each 100 to {MAX_VIEWPORT_PX}")
        return v

    @property
    def size(self) -> tuple[int, int]:
        width, height = self.viewport.split("x")
        return int(width), int(height)


class CaptureSettings(_Model):
    # html: the page alone; requisites: the page and what it needs to render; browser: the
    # page rendered by Chromium (every request it makes archived, its DOM and a screenshot
    # too); auto: requisites, and the browser for pages whose HTML holds no article text
    mode: str = "requisites"
    requisites: RequisiteSettings = RequisiteSettings()
    browser: BrowserCaptureSettings = BrowserCaptureSettings()

    @field_validator("mode")
    @classmethod
    def _mode(cls, v: str) -> str:
        return _capture_mode(v)


def _capture_mode(v: str) -> str:
    if v not in CAPTURE_MODES:
        raise ValueError(f"expected one of {', '.join(CAPTURE_MODES)}")
    return v


class Topic(_Model):
    name: str = Field(min_length=1, pattern=r"^[\w][\w .-]*$")
    any: list[str] = []
    all: list[str] = []
    none: list[str] = []

    @field_validator("any", "all", "none")
    @classmethod
    def _terms(cls, v: list[str]) -> list[str]:
        for term in v:
            if not str(term).strip():
                raise ValueError("empty term")
        return v

    @model_validator(mode="after")
    def _something(self) -> "Topic":
        if not self.any and not self.all:
            raise ValueError("a topic needs at least one term in 'any' or 'all'")
        return self


class Schedule(_Model):
    every: Optional[float] = None
    cron: Optional[str] = None

    @field_validator("every", mode="before")
    @classmethod
    def _every(cls, v: Any) -> Optional[float]:
        return None if v is None else parse_duration(v)

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and len(v.split()) != 5:
            raise ValueError("a cron expression has five fields: minute hour day month weekday")
        return v

    @model_validator(mode="after")
    def _one(self) -> "Schedule":
        if (self.every is None) == (self.cron is None):
            raise ValueError("give exactly one of 'every' or 'cron'")
        if self.every is not None and self.every < 1:
            raise ValueError("'every' must be at least 1 second")
        return self


# headers the fetcher sets or HTTP framing needs: configuring them would corrupt the exchange
_MANAGED_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "accept-encoding",
                    "user-agent", "if-none-match", "if-modified-since", "upgrade", "te", "cookie"}
# config keys whose values are secrets: never echoed back in problems
SECRET_KEYS = ("headers", "cookies", "url", "broker",  # index.url, scale.broker may carry passwords
               "webhook", "secret", "password")  # a webhook URL often is its own credential


def from_env(value: Any) -> Any:
    """A value written "${NAME}" is the environment variable NAME's (a secret kept out of the
    file); ValueError naming NAME when it is not set. Any other value is itself."""
    if isinstance(value, str):
        m = re.fullmatch(r"\$\{(\w+)\}", value.strip())
        if m:
            if m.group(1) not in os.environ:
                raise ValueError(f"environment variable {m.group(1)} is not set")
            return os.environ[m.group(1)]
    return value


class Outlet(_Model):
    name: str = Field(min_length=1, pattern=r"^[\w][\w .-]*$")
    # the outlet's front page: read as a listing page, and the host whose robots.txt
    # `sitemaps: [auto]` reads (and whose well-known sitemap paths it tries)
    home: Optional[str] = None
    # overrides capture.mode for this outlet
    capture_mode: Optional[str] = None
    feeds: list[str] = []
    sitemaps: list[str] = []
    pages: list[str] = []
    search: list[str] = []
    topics: list[str] = []
    schedule: Schedule = Schedule(every=1800)
    # credentials for outlets that need them, sent only to this outlet's own hosts; a value
    # may be "${ENV_VAR}" to keep it out of the file. Never logged, never in warcinfo, and
    # replaced by "[redacted]" in the stored request records.
    headers: dict[str, SecretStr] = {}
    cookies: dict[str, SecretStr] = {}

    @field_validator("headers", "cookies", mode="before")
    @classmethod
    def _secrets_from_env(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out = {}
        for key, value in v.items():
            try:
                out[key] = from_env(value)
            except ValueError as e:
                raise ValueError(f"{key}: {e}") from None
        return out

    @field_validator("headers", "cookies")
    @classmethod
    def _credential_names(cls, v: dict[str, SecretStr], info: ValidationInfo) -> dict[str, SecretStr]:
        header = info.field_name == "headers"
        what = "an HTTP header name" if header else "a cookie name"
        for name, value in v.items():
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
                raise ValueError(f"not {what}: {name!r}")
            if header and name.lower() in _MANAGED_HEADERS:
                raise ValueError(f"{name} is set by archiver itself and cannot be configured per outlet")
            if re.search(r"[\r\n\x00]" if header else r"[;\r\n\x00]", value.get_secret_value()):
                raise ValueError(f"the value of {name} contains a line break" if header else
                                 f"the value of cookie {name} contains ';' or a line break")
        return v

    def credential_headers(self) -> dict[str, str]:
        out = {k: v.get_secret_value() for k, v in self.headers.items()}
        if self.cookies:
            out["Cookie"] = "; ".join(f"{k}={v.get_secret_value()}" for k, v in self.cookies.items())
        return out

    def hosts(self) -> set[str]:
        """host:port keys of every URL this outlet names (where its credentials may go)."""
        from .urls import host_key

        return {host_key(u) for u in (*self.feeds, *self.sitemaps, *self.pages, *self.search,
                                      *([self.home] if self.home else [])) if u != "auto"}

    def listing_pages(self) -> list[str]:
        """Pages read for article links: the home page first, then `pages`."""
        return ([self.home] if self.home and self.home not in self.pages else []) + list(self.pages)

    @field_validator("feeds", "sitemaps", "pages")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        for u in v:
            if u == "auto":
                continue
            if not re.match(r"^https?://[^/\s]+", u):
                raise ValueError(f"not an http(s) URL: {u!r}")
        return v

    @field_validator("capture_mode")
    @classmethod
    def _capture_mode(cls, v: Optional[str]) -> Optional[str]:
        return None if v is None else _capture_mode(v)

    @field_validator("home")
    @classmethod
    def _home(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"not an http(s) URL: {v!r}")
        return v

    @field_validator("search")
    @classmethod
    def _templates(cls, v: list[str]) -> list[str]:
        for u in v:
            if not re.match(r"^https?://[^/\s]+", u) or "{query}" not in u:
                raise ValueError(f"a search template is an http(s) URL containing {{query}}: {u!r}")
        return v

    @model_validator(mode="after")
    def _sources(self) -> "Outlet":
        if not (self.feeds or self.sitemaps or self.pages or self.search or self.home):
            raise ValueError("an outlet needs at least one of home, feeds, sitemaps, pages or search")
        if not (self.feeds or self.pages or self.search or self.home or [u for u in self.sitemaps if u != "auto"]):
            raise ValueError("sitemaps: [auto] needs a host to start from: give the outlet a home: URL")
        if "auto" in self.feeds or "auto" in self.pages:
            raise ValueError("'auto' is only valid in sitemaps")
        return self


ALERT_EVENTS = ("new", "updated", "removed")
_ADDRESS = r"[^@\s<>,;]+@[^@\s<>,;]+"


class EmailSettings(_Model):
    """An alert sent as mail through an SMTP server (smtplib)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    to: list[str] = Field(min_length=1)
    from_: str = Field(alias="from")
    smtp: str = Field(pattern=r"^[^\s:\[\]]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$")  # HOST:PORT
    # starttls: upgrade a plain connection (port 587); ssl: TLS from the start (port 465);
    # none: a relay on this machine or a trusted network (port 25)
    tls: str = Field("starttls", pattern=r"^(none|starttls|ssl)$")
    username: Optional[str] = None
    password: Optional[SecretStr] = None  # or "${ENV_VAR}"
    subject_prefix: str = Field("[archiver]", pattern=r"^[^\r\n]*$")

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_more(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("to")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        for address in v:
            if not re.fullmatch(_ADDRESS, address):
                raise ValueError(f"not an e-mail address: {address!r}")
        return v

    @field_validator("from_")
    @classmethod
    def _sender(cls, v: str) -> str:
        if not re.fullmatch(_ADDRESS, v):
            raise ValueError("not an e-mail address")
        return v

    @field_validator("password", mode="before")
    @classmethod
    def _password_from_env(cls, v: Any) -> Any:
        return from_env(v)

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.smtp.rpartition(":")
        return host.strip("[]"), int(port)


class Alert(_Model):
    """Where news of captures goes: a webhook (a signed JSON POST per event) or e-mail, for
    the events and topics named (default: every event, every topic)."""

    name: Optional[str] = Field(None, pattern=r"^[\w][\w .-]*$")  # how logs and messages name it
    webhook: Optional[str] = None  # or "${ENV_VAR}"
    secret: Optional[SecretStr] = None  # signs a webhook's bodies (X-Archiver-Signature); or "${ENV_VAR}"
    email: Optional[EmailSettings] = None
    topics: list[str] = []
    events: list[str] = list(ALERT_EVENTS)
    timeout: float = 10.0  # seconds for one delivery

    @field_validator("webhook", "secret", mode="before")
    @classmethod
    def _value_from_env(cls, v: Any) -> Any:
        return from_env(v)

    @field_validator("webhook")
    @classmethod
    def _url(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not re.fullmatch(r"https?://[^/\s?#]+[^\s#]*", v):
            raise ValueError("not an http(s) URL")
        return v

    @field_validator("events")
    @classmethod
    def _events(cls, v: list[str]) -> list[str]:
        for event in v:
            if event not in ALERT_EVENTS:
                raise ValueError(f"no event {event!r} (events are {', '.join(ALERT_EVENTS)})")
        if not v:
            raise ValueError(f"name at least one of {', '.join(ALERT_EVENTS)}")
        return v

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)

    @field_validator("timeout")
    @classmethod
    def _positive(cls, v: float) -> float:
        if not 0 < v <= 300:
            raise ValueError("must be more than 0 and at most 300 seconds")
        return v

    @model_validator(mode="after")
    def _one_channel(self) -> "Alert":
        if (self.webhook is None) == (self.email is None):
            raise ValueError("an alert is either a webhook: URL or an email: {to, from, smtp}")
        if self.secret is not None and self.webhook is None:
            raise ValueError("secret signs webhook bodies; an e-mail alert has none")
        return self

    @property
    def channel(self) -> str:
        return "webhook" if self.webhook is not None else "email"

    @property
    def address(self) -> str:
        """Where deliveries go, as the outbox records it: the webhook URL, or the mail recipients."""
        if self.webhook is not None:
            return self.webhook
        assert self.email is not None
        return ", ".join(self.email.to)

    @property
    def label(self) -> str:
        """The alert as logs name it: its name, else where it goes with a webhook's path left
        out (a webhook URL is often its own credential)."""
        if self.name:
            return self.name
        if self.webhook is not None:
            return "webhook " + re.sub(r"^(https?://[^/?#]+).*$", r"\1/…", self.webhook)
        return "e-mail to " + self.address


class Config(_Model):
    storage: StorageSettings = StorageSettings()
    index: IndexSettings = IndexSettings()
    scale: ScaleSettings = ScaleSettings()
    fetch: FetchSettings = FetchSettings()
    discover: DiscoverSettings = DiscoverSettings()
    extract: ExtractSettings = ExtractSettings()
    daemon: DaemonSettings = DaemonSettings()
    refetch: RefetchSettings = RefetchSettings()
    capture: CaptureSettings = CaptureSettings()
    topics: list[Topic] = Field(min_length=1)
    outlets: list[Outlet] = Field(min_length=1)
    alerts: list[Alert] = []

    @model_validator(mode="after")
    def _cross(self) -> "Config":
        names = [t.name for t in self.topics]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"topic names must be unique: {sorted(dup)}")
        onames = [o.name for o in self.outlets]
        dup = {n for n in onames if onames.count(n) > 1}
        if dup:
            raise ValueError(f"outlet names must be unique: {sorted(dup)}")
        return self
