"""When a candidate that failed with an HTTP status is asked again.

410 Gone is terminal: the URL is never fetched again. A 404 is asked again after 1 h, 6 h and
24 h (pages appear late, CMSs answer 404 while publishing), then it is dead. A 5xx is the
server's trouble, not the page's: asked again after 1 h, 6 h, then every 24 h. Other failures
(timeouts, resets, refusals) are asked again on the next pass, as before.
"""

from __future__ import annotations

from datetime import datetime, timedelta

NOT_FOUND_WAITS = (timedelta(hours=1), timedelta(hours=6), timedelta(hours=24))
SERVER_ERROR_WAITS = (timedelta(hours=1), timedelta(hours=6), timedelta(hours=24))


def next_try(statuses: list[int], last_attempt: datetime) -> datetime | None:
    """When a URL whose failed attempts answered `statuses` (oldest first) may be fetched
    again; None for never. Only the trailing run of failures of the last one's kind counts."""
    if not statuses:
        return last_attempt
    last = statuses[-1]
    if last == 410:
        return None
    kind = (lambda s: s == 404) if last == 404 else (lambda s: s >= 500)
    streak = 0
    for s in reversed(statuses):
        if not kind(s):
            break
        streak += 1
    if last == 404:
        if streak > len(NOT_FOUND_WAITS):
            return None
        return last_attempt + NOT_FOUND_WAITS[streak - 1]
    return last_attempt + SERVER_ERROR_WAITS[min(streak, len(SERVER_ERROR_WAITS)) - 1]
