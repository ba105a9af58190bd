"""The capture section: what is fetched of a page beside it (requisites) and how pages are rendered (browser)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from ..units import parse_duration, parse_size
from .base import _Model

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
    scroll: bool = True  # show the whole page first (a viewport as tall as it), so lazy images and text load
    screenshot: bool = True
    # a taller page's screenshot is its top this tall: the shot's pixels are held several
    # times over by the browser while it is taken (~290 MB at 16,384 px, ~150 at 8,192)
    screenshot_max_height: int = Field(8192, ge=100, le=16384)
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
