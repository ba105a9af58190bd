"""Topics, schedules and outlets: what is archived, from where, how often."""

from __future__ import annotations

import re
from typing import Any, Optional

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from ..units import parse_duration
from .base import _MANAGED_HEADERS, _Model, from_env
from .capture import _capture_mode

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
    # adaptive polling (polling.py): each feed between these, starting at `every`
    min: Optional[float] = None
    max: Optional[float] = None

    @field_validator("every", "min", "max", mode="before")
    @classmethod
    def _every(cls, v: Any) -> Optional[float]:
        return None if v is None else parse_duration(v)

    @property
    def adaptive(self) -> bool:
        return self.min is not None or self.max is not None

    @property
    def shortest(self) -> Optional[float]:
        """How often the outlet's job runs: `min` when adaptive, else `every` (None: cron)."""
        return self.min if self.min is not None else self.every

    @property
    def longest(self) -> Optional[float]:
        return self.max if self.max is not None else self.every

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
        if self.adaptive:
            if self.every is None:
                raise ValueError("'min' and 'max' go with 'every' (the interval a feed starts at), not with 'cron'")
            lo, hi = self.shortest or 0.0, self.longest or 0.0
            if lo < 1:
                raise ValueError("'min' must be at least 1 second")
            if not lo <= self.every <= hi:
                raise ValueError(f"give min <= every <= max (got min {lo:g}s, every {self.every:g}s, max {hi:g}s)")
        return self


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
        from ..urls import host_key

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
