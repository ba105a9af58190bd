"""The config file's sections as validated models: one pydantic model per section (storage,
index, scale, fetch, discover, extract, daemon, refetch, capture), the topics, outlets and
alerts, and Config holding them all.

Unknown keys are errors (extra="forbid"): a typo silently ignored would quietly change what
gets archived. Models are frozen, so a loaded config is never changed behind a pass's back.
"""

from __future__ import annotations

from collections import Counter

from pydantic import Field, model_validator

from .alerts import ALERT_EVENTS, Alert, EmailSettings
from .base import DEFAULT_STORAGE_ROOT, SECRET_KEYS, _Model, from_env
from .capture import (BROWSER_MODES, CAPTURE_MODES, MAX_VIEWPORT_PX, BrowserCaptureSettings, CaptureSettings,
                      RequisiteSettings)
from .outlets import Outlet, Schedule, Topic
from .sections import (DaemonSettings, DiscoverSettings, ExtractSettings, FetchSettings, IndexSettings,
                       RefetchSettings, ScaleSettings, StorageSettings, WarcSettings)


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
        # counted, not list.count per name: that is quadratic, 0.6 s for 5,000 outlets
        dup = {n for n, k in Counter(t.name for t in self.topics).items() if k > 1}
        if dup:
            raise ValueError(f"topic names must be unique: {sorted(dup)}")
        dup = {n for n, k in Counter(o.name for o in self.outlets).items() if k > 1}
        if dup:
            raise ValueError(f"outlet names must be unique: {sorted(dup)}")
        return self


__all__ = ["ALERT_EVENTS", "BROWSER_MODES", "CAPTURE_MODES", "DEFAULT_STORAGE_ROOT", "MAX_VIEWPORT_PX", "SECRET_KEYS",
           "Alert", "BrowserCaptureSettings", "CaptureSettings", "Config", "DaemonSettings", "DiscoverSettings",
           "EmailSettings", "ExtractSettings", "FetchSettings", "IndexSettings", "Outlet", "RefetchSettings",
           "RequisiteSettings", "ScaleSettings", "Schedule", "StorageSettings", "Topic", "WarcSettings", "from_env"]
