"""Load and validate the YAML config.

Every problem is reported as ``FILE:LINE: key.path: what is wrong (got VALUE)``; all problems
are collected, not just the first, so a user fixes a config in one round. Unknown keys are
errors: a typo silently ignored would quietly change what gets archived.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator

from .errors import ConfigError, ConfigProblem

# relative to the config file's folder, like any relative root: never the package's own
# folder, which after a plain `pip install` is inside site-packages
DEFAULT_STORAGE_ROOT = "storage"

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6,
               "mib": 2**20, "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_size(value: Any) -> int:
    """'1 GB', '500MiB', 1000000 -> bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 1000000 or '1 GB'")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must not be negative")
        return int(value)
    m = _SIZE_RE.match(str(value))
    if not m or (m.group(2) or "").lower() not in _SIZE_UNITS:
        raise ValueError("expected a size such as 1000000 or '1 GB'")
    return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower()])


def parse_duration(value: Any) -> float:
    """'30m', '1h', '45s', 90 -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30, '45s', '30m' or '2h'")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    m = _DURATION_RE.match(str(value))
    if not m:
        raise ValueError("expected a duration such as 30, '45s', '30m' or '2h'")
    unit = m.group(2).lower() if m.group(2) else None
    return float(m.group(1)) * _DURATION_UNITS[unit]


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


CAPTURE_MODES = ("html", "requisites")


class CaptureSettings(_Model):
    # html: the page alone; requisites: the page and what it needs to render
    mode: str = "requisites"
    requisites: RequisiteSettings = RequisiteSettings()

    @field_validator("mode")
    @classmethod
    def _mode(cls, v: str) -> str:
        return _capture_mode(v)


def _capture_mode(v: str) -> str:
    if v in ("browser", "auto"):
        raise ValueError(f"capture mode {v!r} (a browser rendering the page) is not available in this version; "
                         f"use one of {', '.join(CAPTURE_MODES)}")
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
SECRET_KEYS = ("headers", "cookies", "url", "broker")  # index.url, scale.broker may carry passwords


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
            if isinstance(value, str):
                m = re.fullmatch(r"\$\{(\w+)\}", value.strip())
                if m:
                    if m.group(1) not in os.environ:
                        raise ValueError(f"{key}: environment variable {m.group(1)} is not set")
                    value = os.environ[m.group(1)]
            out[key] = value
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


class LoadedConfig(BaseModel):
    """A validated config plus where it came from; `sha256` goes into every WARC's warcinfo."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    path: Path
    config: Config
    sha256: str
    storage_root: Path

    def capture_mode(self, outlet: Outlet) -> str:
        return outlet.capture_mode or self.config.capture.mode

    def topics_for(self, outlet: Outlet) -> list[Topic]:
        if not outlet.topics:
            return list(self.config.topics)
        return [t for t in self.config.topics if t.name in outlet.topics]


# ----------------------------------------------------------------------------- line lookup

def _node_line(root: yaml.Node | None, loc: tuple[Any, ...]) -> int:
    """Line (1-based) of the deepest YAML node along `loc`; for a missing key, its parent's."""
    node = root
    line = (root.start_mark.line + 1) if root is not None else 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == part:
                    line, node = k.start_mark.line + 1, v  # a key is shown where it is written
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _lookup(data: Any, loc: tuple[Any, ...]) -> Any:
    cur = data
    for part in loc:
        try:
            cur = cur[part]
        except (KeyError, IndexError, TypeError):
            return None
    return cur


def _loc_path(data: Any, loc: tuple[Any, ...]) -> str:
    """Dotted key path; list items are named by their `name` when they have one."""
    out: list[str] = []
    cur = data
    for part in loc:
        if isinstance(part, int):
            item = cur[part] if isinstance(cur, list) and part < len(cur) else None
            label = item.get("name") if isinstance(item, dict) else None
            out[-1:] = [f"{out[-1] if out else ''}[{label if isinstance(label, str) else part}]"]
        else:
            out.append(str(part))
        cur = _lookup(cur, (part,))
    return ".".join(out) or "(top level)"


def _problems_from_validation(file: str, root: yaml.Node | None, data: Any,
                              err: ValidationError) -> list[ConfigProblem]:
    problems = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = e["msg"].removeprefix("Value error, ")
        value: Any = None
        if e["type"] == "extra_forbidden":
            msg = "unknown key" + _did_you_mean(loc)
            value = None
        elif e["type"] == "missing":
            msg = "required key is missing"
        else:
            value = _lookup(data, loc)
            if isinstance(value, (dict, list)):
                value = None
        if any(part in SECRET_KEYS for part in loc if isinstance(part, str)):
            value = None
            msg = re.sub(r"\(got .*\)$", "", msg)
        problems.append(ConfigProblem(file, _node_line(root, loc), _loc_path(data, loc), msg, value))
    problems.sort(key=lambda p: p.line)
    return problems


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The settings model that holds the last key of `loc` (list indexes skipped)."""
    model: Any = Config
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return None
        model = _inner_model(field.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    """The model inside list[M], Optional[M], M | None."""
    for arg in getattr(annotation, "__args__", ()) or ():
        inner = _inner_model(arg)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return annotation


def _did_you_mean(loc: tuple[Any, ...]) -> str:
    if not loc or not isinstance(loc[-1], str):
        return ""
    model = _model_at(loc)
    if model is None:
        return ""
    names = list(model.model_fields)
    key = loc[-1].strip().lower().replace("-", "_").replace(" ", "_")
    close = [n for n in names if n == key] or difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(names)})"


def _undefined_topics(cfg: Config, file: str, root: yaml.Node | None, data: Any) -> list[ConfigProblem]:
    """An outlet naming a topic that is not defined would keep nothing, silently."""
    defined = [t.name for t in cfg.topics]
    problems = []
    for i, outlet in enumerate(cfg.outlets):
        for j, name in enumerate(outlet.topics):
            if name not in defined:
                loc = ("outlets", i, "topics", j)
                close = difflib.get_close_matches(name, defined, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                problems.append(ConfigProblem(file, _node_line(root, loc), _loc_path(data, loc),
                                              f"names no defined topic ({hint}defined: {', '.join(defined)})",
                                              name))
    return problems


def parse_config_text(text: str, file: str) -> Config:
    """Validate YAML text; raises ConfigError listing every problem."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError([ConfigProblem(file, line, "(yaml)", f"not valid YAML: {problem}")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem(file, 1, "(top level)", "expected a mapping of settings",
                                         type(data).__name__)])
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_problems_from_validation(file, root, data, e)) from None
    problems = _undefined_topics(cfg, file, root, data)
    if problems:
        raise ConfigError(problems)
    return cfg


def load_config(path: str | Path) -> LoadedConfig:
    """Read, validate and resolve a config file. Relative storage roots resolve against its folder."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError([ConfigProblem(str(p), 0, "(file)", f"cannot read config: {e.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError([ConfigProblem(str(p), line, "(file)", "config is not UTF-8")]) from None
    cfg = _environment_overrides(parse_config_text(text, str(p)), str(p))
    root = Path(cfg.storage.root).expanduser()
    if not root.is_absolute():
        root = (p.resolve().parent / root).resolve()
    return LoadedConfig(path=p.resolve(), config=cfg, sha256=hashlib.sha256(raw).hexdigest(), storage_root=root)


# Deployment settings a container or service manager may set without editing the YAML.
ENV_OVERRIDES = {
    "ARCHIVER_STORAGE_ROOT": ("storage", "root"),
    "ARCHIVER_INDEX_URL": ("index", "url"),
    "ARCHIVER_BROKER_URL": ("scale", "broker"),
    "ARCHIVER_SHIP_TO": ("storage", "ship_to"),
    "ARCHIVER_S3_ENDPOINT": ("storage", "s3_endpoint"),
    "ARCHIVER_LISTEN": ("daemon", "listen"),
    "ARCHIVER_LOG_FORMAT": ("daemon", "log_format"),
}


def _environment_overrides(cfg: Config, file: str) -> Config:
    data = cfg.model_dump()
    changed = False
    for var, (section, key) in ENV_OVERRIDES.items():
        value = os.environ.get(var)
        if value:
            data[section][key] = value
            changed = True
    if not changed:
        return cfg
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        env_of = {f"{s}.{k}": v for v, (s, k) in ENV_OVERRIDES.items()}
        raise ConfigError([ConfigProblem(file, 0, f"{'.'.join(map(str, err['loc']))} (from "
                                                  f"{env_of.get('.'.join(map(str, err['loc'])), 'environment')})",
                                         err["msg"].removeprefix("Value error, "),
                                         None if any(p in SECRET_KEYS for p in err["loc"]) else err.get("input"))
                           for err in e.errors()]) from None


def check_config(path: str | Path) -> list[ConfigProblem]:
    """Every problem in a config file; an empty list means it is usable."""
    try:
        load_config(path)
    except ConfigError as e:
        return e.problems
    return []

