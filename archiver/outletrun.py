"""What one outlet's pass carries from stage to stage: the outlet, its pass id, its counts,
its topic matcher."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from .settings import Outlet
from .topics import TopicMatcher

log = logging.getLogger("archiver.crawl")

MAX_LISTED_FAILURES = 20  # failed articles a pass summary names (all are in the index)


@dataclass
class OutletStats:
    outlet: str
    discovered: int = 0
    on_topic: int = 0
    fetched: int = 0
    archived: int = 0
    robots: int = 0
    failed: int = 0
    blocked: int = 0
    skipped_known: int = 0
    not_due: int = 0  # candidates whose HTTP failures say not yet, or never (retry.py)
    refetched: int = 0  # kept articles fetched again by the refetch policy
    unchanged: int = 0  # ... of which had not changed (304 or the same payload)
    updated: int = 0  # ... of which had changed: a new capture linked to the previous one
    sitemap_too_old: int = 0  # sitemap entries left out by discover.max_age_days
    sources_not_due: int = 0  # feeds, pages, sitemaps not fetched: an adaptive schedule has them due later
    next_source_due: tuple[str, str] | None = None  # (when, URL) of the first of those
    requisites: int = 0  # stylesheets, images, fonts... fetched for kept pages
    requisites_reused: int = 0  # ... named again and not fetched: captured within capture.requisites.refresh
    requisites_failed: int = 0
    errors: list[str] = field(default_factory=list)  # discovery documents' and the pass's problems
    failures: list[str] = field(default_factory=list)  # the first failed articles, with their reasons

    def counts(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("discovered", "on_topic", "fetched", "archived", "robots",
                                               "failed", "blocked", "skipped_known", "not_due", "refetched",
                                               "unchanged", "updated", "requisites", "requisites_reused",
                                               "requisites_failed", "sitemap_too_old", "sources_not_due")}

    def article_failed(self, url: str, reason: str) -> None:
        self.failed += 1
        if len(self.failures) < MAX_LISTED_FAILURES:
            self.failures.append(f"{url}: {reason}")


class ArchivedPages(Protocol):
    """The final URLs an outlet's pass archived: a set, or the pass's lane (lanes.LanePages)."""

    def __contains__(self, url: object) -> bool: ...

    def add(self, url: str) -> None: ...


@dataclass
class OutletRun:
    """One outlet's pass in progress."""

    outlet: Outlet
    pass_id: int
    matcher: TopicMatcher
    stats: OutletStats
    # two candidates redirected to one page give one capture (claims.PassClaims)
    archived: ArchivedPages = field(default_factory=set, repr=False)

    @property
    def name(self) -> str:
        return self.outlet.name

    @classmethod
    def start(cls, outlet: Outlet, pass_id: int, matcher: TopicMatcher) -> "OutletRun":
        return cls(outlet, pass_id, matcher, OutletStats(outlet.name))


def unexpected(e: Exception, what: str) -> str:
    """The reason an unexpected exception gives one item's failure row; logged with its
    traceback, since it is a defect (or a case nobody foresaw) worth a report."""
    reason = f"{type(e).__name__}: {e}"
    log.error("%s failed unexpectedly: %s", what, reason, exc_info=e)
    return f"unexpected error: {reason}"
