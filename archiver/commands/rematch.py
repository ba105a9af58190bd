"""`archiver rematch`: test the pages fetched before against the topics as they are now
(archiver/rematch.py), archive what now matches, and say what was found."""

from __future__ import annotations

import asyncio

import click

from ..config import load_config
from ..rematch import parse_since, run_rematch, topics_by_outlet
from .common import out_console, progress_bar, setup_logging


@click.command("rematch")
@click.option("--config", "-c", "config", required=True, type=click.Path(dir_okay=False), help="YAML config file")
@click.option("--topic", "topics", multiple=True, help="only this topic (repeatable; default: every topic)")
@click.option("--since", default=None, help="only pages fetched at or after this UTC date/time (YYYY-MM-DD[THH:MM:SS])")
@click.option("-v", "--verbose", count=True, help="more log output (-vv for debug)")
@click.option("--no-progress", is_flag=True, help="no progress bar")
def rematch_cmd(config: str, topics: tuple[str, ...], since: str | None, verbose: int, no_progress: bool) -> int:
    """Test the pages fetched before against the current topics; archive those that now match
    (promoted in place when already in a WARC, else fetched again)."""
    setup_logging(verbose)
    cfg = load_config(config)
    wanted = topics_by_outlet(cfg, list(topics) or None)
    after = parse_since(since) if since else None
    bar = progress_bar(0, "testing stored pages, fetching what matches")
    if no_progress:
        bar.disable = True
    task = bar.tasks[0].id

    def on_progress(event: str, advance: int, total: int) -> None:
        if total:
            bar.update(task, total=(bar.tasks[0].total or 0) + total)
        if advance:
            bar.advance(task, advance)

    with bar:
        result, written = asyncio.run(run_rematch(cfg, wanted, after, on_progress))
    out = out_console()
    out.print(f"rematch: tested {result.tested}, now matching {result.matching}, fetched {result.fetched}, "
              f"promoted {result.promoted}, failed {result.failed}"
              + (f", waiting out an HTTP failure {result.waiting}" if result.waiting else ""),
              markup=False, highlight=False)
    if not result.tested:
        out.print("no stored page texts to test (pages fetched before archiver kept them cannot be rematched)",
                  markup=False, highlight=False)
    for line in result.failures:
        out.print(f"  not archived: {line}", markup=False, highlight=False)
    if result.failed > len(result.failures):
        out.print(f"  (+{result.failed - len(result.failures)} more; every one is in the index)",
                  markup=False, highlight=False)
    for f in written:
        out.print(f"  wrote {f}", markup=False, highlight=False)
    return 0
