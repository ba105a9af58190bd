"""Publication dates as pages state them, read into ISO 8601.

Extraction keeps the date exactly as the page gave it (a meta tag, JSON-LD, a `<time>`):
usually ISO 8601, sometimes an RFC 2822 date or "June 14, 2025". Here it becomes one form
that sorts and compares: `YYYY-MM-DDTHH:MM:SS` with the offset the page stated (`Z` for
UTC), or `YYYY-MM-DD` when the page gave a date alone. The day is the date as published, in
the outlet's own offset: converting to UTC would move a late-evening story to the next day.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from email.utils import parsedate_to_datetime

# outside these years a stated date is a placeholder (0001-01-01, 1970-01-01 from a zero
# timestamp is still accepted) or a typo, not a publication date
FIRST_YEAR, LAST_YEAR = 1800, 2999
MAX_CHARS = 100  # a longer "date" is prose that a page put in a date field

_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
_MONTH_FIRST = re.compile(r"([a-z]{3})[a-z]*\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})", re.I)
_DAY_FIRST = re.compile(r"(\d{1,2})(?:st|nd|rd|th)?\s+([a-z]{3})[a-z]*\.?,?\s+(\d{4})", re.I)


def published_at(stated: str | None) -> str | None:
    """The stated publication date in ISO 8601, or None when there is none or it cannot be
    read as a date."""
    text = (stated or "").strip()
    if not text or len(text) > MAX_CHARS:
        return None
    found = _iso(text) or _rfc2822(text) or _words(text)
    if found is None:
        return None
    if isinstance(found, datetime):
        if not FIRST_YEAR <= found.year <= LAST_YEAR:
            return None
        offset = found.utcoffset()
        out = found.replace(microsecond=0).isoformat()
        return out.removesuffix("+00:00") + "Z" if offset is not None and not offset else out
    return found.isoformat() if FIRST_YEAR <= found.year <= LAST_YEAR else None


def published_day(stated: str | None) -> str | None:
    """The date of publication (YYYY-MM-DD) as the page states it, or None."""
    at = published_at(stated)
    return at[:10] if at else None


def _iso(text: str) -> datetime | date | None:
    value = text.replace("z", "Z")
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    try:
        if len(value) <= 10 and "T" not in value and ":" not in value:
            return date.fromisoformat(value)
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _rfc2822(text: str) -> datetime | None:
    try:
        dt = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    # "-0000" says the zone is unknown (RFC 2822): the time stays without an offset
    return dt


def _words(text: str) -> date | None:
    for rx, order in ((_MONTH_FIRST, (1, 2, 3)), (_DAY_FIRST, (2, 1, 3))):
        m = rx.search(text)
        if m is None:
            continue
        month = _MONTHS.get(m.group(order[0]).lower())
        if month is None:
            continue
        try:
            return date(int(m.group(order[2])), month, int(m.group(order[1])))
        except ValueError:
            return None
    return None
