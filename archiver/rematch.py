"""Rematch: the pages fetched before, tested again against the topics as they are now.

Every article page a pass fetches leaves what it said in the index (page_texts: headline,
stated date, body text), kept or not, so a topic added or changed later is tested on the
pages already fetched without fetching them. A page whose newest text now matches a topic
it is not archived under is

- promoted when that capture is archived already (its records are in a WARC: it was kept
  for another topic, or by `storage.keep_off_topic`): a metadata record about its response
  says what was found and why, and its row gets the topic. Nothing is fetched; its
  conversion record and text files were written when it was kept.
- fetched again otherwise (an off-topic page left only its row): its current version goes
  through a pass of its outlet like a discovered candidate (via-kind `rematch`) and is
  archived if it still matches, its metadata record saying
  `found-by: rematch of capture ID (URL) first fetched TIME`.

A page archived under the topic already (any of its captures) is left alone, so a second
rematch finds nothing new. The page itself decides, as in a pass: its headline and body.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .clock import warc_date
from .config import LoadedConfig
from .crawl import Pass, Progress
from .discover import Candidate
from .errors import RematchError
from .index import ARCHIVED, OFF_TOPIC, CaptureRow, PageText
from .settings import Outlet, Topic
from .topics import TopicMatcher

log = logging.getLogger(__name__)

MAX_LISTED = 20  # pages a result names that could not be archived (all are in the index)


@dataclass
class RematchResult:
    tested: int = 0  # pages whose stored text was tested
    matching: int = 0  # ... that match a topic they are not archived under
    fetched: int = 0  # ... fetched again and archived
    promoted: int = 0  # ... archived already, given the topic without fetching
    failed: int = 0  # ... fetched again and not archived (gone, refused, no longer matching)
    waiting: int = 0  # ... not fetched: waiting out an HTTP failure (retry.py), or never again (410)
    failures: list[str] = field(default_factory=list)  # the first of those, with the reason


def topics_by_outlet(cfg: LoadedConfig, topics: list[str] | None = None) -> dict[str, set[str]]:
    """outlet -> names of the topics to test its pages on: every topic it follows, or of
    those only `topics`. A name the config does not define is a RematchError."""
    defined = [t.name for t in cfg.config.topics]
    unknown = [t for t in topics or () if t not in defined]
    if unknown:
        raise RematchError(f"--topic {unknown[0]!r}: {cfg.path} defines no such topic "
                           f"(defined: {', '.join(defined) or 'none'})")
    return {o.name: {t.name for t in cfg.topics_for(o) if topics is None or t.name in topics}
            for o in cfg.config.outlets}


def changed_topics(old: LoadedConfig, new: LoadedConfig) -> dict[str, set[str]]:
    """outlet -> the topics `new` has for it that `old` did not have, or had defined otherwise
    (what a reload asks a rematch for); outlets with none are left out."""
    before = {o.name: {t.name: t for t in old.topics_for(o)} for o in old.config.outlets}
    out: dict[str, set[str]] = {}
    for o in new.config.outlets:
        had = before.get(o.name, {})
        names = {t.name for t in new.topics_for(o) if had.get(t.name) != t}
        if names:
            out[o.name] = names
    return out


def parse_since(value: str) -> str:
    """`--since` (YYYY-MM-DD[THH:MM:SS], UTC unless it says) as index timestamps are written."""
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise RematchError(f"--since {value!r} is not a date or time (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS)") from None
    return warc_date(dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc))


def _terms(topics: list[Topic]) -> set[str]:
    return {term for t in topics for term in (*t.any, *t.all)}


def found_by(row: CaptureRow) -> str:
    """The provenance line of a page a rematch of capture `row` found."""
    seen = row.warc_record_id or row.final_url or row.url
    return f"rematch of capture {row.id} ({seen}) first fetched {row.fetched_at}"


async def rematch(p: Pass, wanted: Mapping[str, set[str]], since: str | None = None,
                  progress: Progress | None = None) -> RematchResult:
    """Test the stored texts of the outlets in `wanted` (outlet -> topic names) against those
    topics, promote or fetch again what now matches (see the module's docstring), on the
    pass machinery `p` (the daemon's shared one, or a command's own)."""
    report = progress or (lambda event, advance, total: None)
    cfg, index = p.cfg, p.index
    outlets = {o.name: o for o in cfg.config.outlets if wanted.get(o.name)}
    matchers = {name: TopicMatcher([t for t in cfg.topics_for(o) if t.name in wanted[name]])
                for name, o in outlets.items()}
    kept: dict[str, dict[str, set[str]]] = {}
    not_due: dict[str, set[str]] = {}
    again: dict[str, list[Candidate]] = {}
    result = RematchResult()
    ids = index.page_text_ids(list(outlets), since)
    report("discovered", 0, len(ids))
    for row, page in index.page_texts(ids):
        result.tested += 1
        report("tested", 1, 0)
        if row.outlet not in kept:
            kept[row.outlet] = index.kept_topics(row.outlet)
            not_due[row.outlet] = index.failures_not_due(row.outlet, datetime.now(timezone.utc))
        new, matched = _new_topics(matchers[row.outlet], page, row, kept[row.outlet])
        if not new:
            continue
        result.matching += 1
        if row.state == ARCHIVED and row.warc_record_id:
            p.recorder.promote(row, new, matched, found_by(row))
            result.promoted += 1
            log.info("%s: %s is about %s too: promoted capture %s", row.outlet, row.final_url, ", ".join(new), row.id)
        elif row.url in not_due[row.outlet]:
            result.waiting += 1  # as a pass would: a 404 is asked again after an hour, a 410 never
        else:
            again.setdefault(row.outlet, []).append(Candidate(
                row.url, row.discovered_via_url or row.url, "rematch", via_record_id=row.discovered_via_record_id,
                found_by=found_by(row)))
    # the outlets side by side, as a pass runs them (each host's politeness holds across them)
    done = await asyncio.gather(*(_fetch_again(p, outlets[name], candidates, result)
                                  for name, candidates in again.items()), return_exceptions=True)
    for e in done:
        if isinstance(e, BaseException):
            raise e
    return result


def _new_topics(matcher: TopicMatcher, page: PageText, row: CaptureRow,
                kept: dict[str, set[str]]) -> tuple[list[str], dict[str, list[str]]]:
    """The topics the page matches that it is not archived under yet, and their matched terms."""
    found = matcher.terms_in({"page_title": page.title, "body": page.text})
    got = matcher.decide(found)
    have = kept.get(row.url, set()) | kept.get(row.final_url or row.url, set())
    new = [t for t in got.topics if t not in have]
    terms = _terms([t for t in matcher.topics if t.name in new])
    return new, {t: where for t, where in got.matched.items() if t in terms}


async def _fetch_again(p: Pass, outlet: Outlet, candidates: list[Candidate], result: RematchResult) -> None:
    """One pass of the outlet over `candidates`; what became of each is read from the rows it made."""
    after = p.index.last_capture_id()
    await p.outlet(outlet, given=candidates)
    asked = {c.url for c in candidates}
    outcome: dict[str, CaptureRow] = {}
    for row in p.index.captures(outlet=outlet.name, kind="article", after=after):
        if row.url in asked:
            outcome[row.url] = row
    for c in candidates:
        row = outcome.get(c.url)
        if row is not None and row.state == ARCHIVED:
            result.fetched += 1
            continue
        result.failed += 1
        if len(result.failures) < MAX_LISTED:
            why = ("no longer matches" if row.state == OFF_TOPIC else f"{row.state}: {row.error or row.status}"
                   ) if row is not None else "not fetched (the pass stopped)"
            result.failures.append(f"{c.url}: {why}")


async def run_rematch(cfg: LoadedConfig, wanted: Mapping[str, set[str]], since: str | None = None,
                      progress: Progress | None = None) -> tuple[RematchResult, list[str]]:
    """A rematch on a pass machinery of its own (`archiver rematch`); also the WARC files written."""
    from .recover import open_archive

    index = open_archive(cfg)
    p = Pass(cfg, index, progress)
    try:
        result = await rematch(p, wanted, since, progress)
    finally:
        await p.aclose()
        index.close()
    return result, p.writer.closed_files
