"""Commands that check a config and run passes: check-config, crawl, run (the daemon),
status and demo."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..config import LoadedConfig, load_config
from ..crawl import PassResult
from ..errors import ArchiverError, ConfigError
from ..index import Index
from .common import err_console, open_index, out_console, setup_logging


@click.command("check-config")
@click.argument("config", type=click.Path(dir_okay=False))
def check_config_cmd(config: str) -> int:
    """Validate CONFIG; print 'ok' or every problem as FILE:LINE: key: what is wrong."""
    try:
        cfg = load_config(config)
    except ConfigError as e:  # the problems are this command's output: stdout
        for p in e.problems:
            click.echo(str(p))
        return 2
    click.echo("ok")
    if cfg.outlet_files:
        own = len(cfg.config.outlets) - sum(n for _, n in cfg.outlet_files)
        parts = [f"{own:,} in {config}"] + [f"{n:,} from {name}" for name, n in cfg.outlet_files]
        click.echo(f"{len(cfg.config.outlets):,} outlets: {', '.join(parts)}")
    for outlet in cfg.config.outlets:
        if outlet.headers or outlet.cookies:
            what = [f"header {name}: [redacted]" for name in outlet.headers]
            what += [f"cookie {name}=[redacted]" for name in outlet.cookies]
            click.echo(f"outlet {outlet.name} sends {', '.join(what)} to {', '.join(sorted(outlet.hosts()))} only")
    return 0


def summary_table(result: PassResult) -> Table:
    t = Table(title="archiving pass", title_justify="left")
    cols = ["outlet", "discovered", "on-topic", "fetched", "archived", "skipped by robots", "failed",
            "blocked", "already had", "gone or not due"]
    for c in cols:
        t.add_column(c, justify="left" if c == "outlet" else "right")
    totals = [0] * (len(cols) - 1)
    for s in result.outlets:
        vals = [s.discovered, s.on_topic, s.fetched, s.archived, s.robots, s.failed, s.blocked, s.skipped_known,
                s.not_due]
        totals = [a + b for a, b in zip(totals, vals)]
        t.add_row(s.outlet, *map(str, vals))
    t.add_section()
    t.add_row("total", *map(str, totals))
    return t


def crawl_and_report(cfg: LoadedConfig, outlets: tuple[str, ...] = (), show_progress: bool = True,
                     fmt: str = "table") -> int:
    """Run one pass with a progress bar and print the summary; returns the exit code. With
    fmt "jsonl" the summary is one JSON object per outlet on stdout and the notes after it go
    to stderr."""
    from ..crawl import run_pass

    unknown = [o for o in outlets if o not in {x.name for x in cfg.config.outlets}]
    if unknown:
        click.echo(f"{cfg.path}: no outlet named {', '.join(map(repr, unknown))}", err=True)
        return 2
    err, out = err_console(), out_console()
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=err, transient=True, disable=not show_progress or not err.is_terminal)
    task = progress.add_task("discovering and fetching", total=0)
    started = os.times()

    def on_progress(event: str, advance: int, total: int) -> None:
        if total:
            progress.update(task, total=(progress.tasks[0].total or 0) + total)
        if advance:
            progress.advance(task, advance)

    try:
        with progress:
            result = asyncio.run(run_pass(cfg, on_progress, list(outlets) or None))
    except ArchiverError as e:
        click.echo(f"archiver: the pass could not run: {e}", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("archiver: interrupted", err=True)
        return 1
    if fmt == "jsonl":
        for s in result.outlets:
            sys.stdout.write(json.dumps({"outlet": s.outlet, **s.counts(), "errors": s.errors,
                                         "failures": s.failures}, ensure_ascii=False) + "\n")
        out = out_console(stderr=True)
    else:
        out.print(summary_table(result))
    max_age = cfg.config.discover.max_age_days
    for s in result.outlets:
        if s.sitemap_too_old and max_age is not None:  # why an old sitemap found nothing
            out.print(f"{s.outlet}: {s.sitemap_too_old} sitemap entries older than {max_age:g} days skipped "
                              "(discover.max_age_days)", markup=False, highlight=False)
        if s.sources_not_due and s.next_source_due:  # why a pass fetched fewer feeds than configured
            when, url = s.next_source_due
            out.print(f"{s.outlet}: {s.sources_not_due} feeds, pages or sitemaps not due yet (adaptive schedule); "
                      f"the next, {url}, at {when[:19]}", markup=False, highlight=False)
    problems = [(s.outlet, s.errors, s.failures, s.failed) for s in result.outlets if s.errors or s.failures]
    if problems:
        out.print("[bold]problems[/bold] (the first of each outlet; all are in the index):")
        for name, errors, failures, failed in problems:
            if errors:
                more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
                out.print(f"  {name}: {errors[0]}{more}", markup=False, highlight=False)
            for line in failures[:3]:
                out.print(f"  {name}: article {line}", markup=False, highlight=False)
            if failed > 3:
                out.print(f"  {name}: (+{failed - 3} more failed articles: archiver captures --state failed)",
                                  markup=False, highlight=False)
    out.print(f"storage root: {result.storage_root}", markup=False, highlight=False)
    for f in result.warc_files:
        out.print(f"  wrote {f}", markup=False, highlight=False)
    out.print(resources_line(result.worker_peak_mb, started), markup=False, highlight=False)
    return 0


def resources_line(worker_peak_mb: float, started: os.times_result) -> str:
    """CPU and peak memory of this process and of its extraction workers (exited by now).
    Child CPU is counted from `started`: times survive exec, so a wrapper script's own
    children (a pip install) would otherwise show up as extraction."""
    from ..procpool import peak_rss_mb

    t = os.times()
    kids = (t.children_user - started.children_user) + (t.children_system - started.children_system)
    line = f"resources: {t.user + t.system:.1f} s CPU, peak memory {peak_rss_mb():.0f} MB"
    if kids > 0.05:
        line += f"; extraction workers {kids:.1f} s CPU"
        if worker_peak_mb:
            line += f", peak memory {worker_peak_mb:.0f} MB each at most"
    return line


@click.command()
@click.option("--config", "-c", "config", required=True, type=click.Path(dir_okay=False), help="YAML config file")
@click.option("--outlet", "outlets", multiple=True, help="only this outlet (repeatable)")
@click.option("-v", "--verbose", count=True, help="more log output (-vv for debug)")
@click.option("--no-progress", is_flag=True, help="no progress bar")
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table", show_default=True,
              help="the summary as a table, or as one JSON object per outlet (notes then go to stderr)")
def crawl(config: str, outlets: tuple[str, ...], verbose: int, no_progress: bool, fmt: str) -> int:
    """Run one archiving pass over every outlet in the config."""
    setup_logging(verbose)
    cfg = load_config(config)
    return crawl_and_report(cfg, outlets, not no_progress, fmt)


@click.command()
@click.option("--config", "-c", "config", required=True, type=click.Path(dir_okay=False), help="YAML config file")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None,
              help="log lines for people or for machines (default: daemon.log_format)")
@click.option("-v", "--verbose", count=True, help="debug logging with -v")
def run(config: str, log_format: str | None, verbose: int) -> int:
    """Run the daemon: poll every outlet on its schedule until SIGTERM/SIGINT (SIGHUP reloads the config)."""
    from ..daemon import Daemon
    from ..schedule import quiet_scheduler_logs

    cfg = load_config(config)
    setup_logging(2 if verbose else 0, log_format or cfg.config.daemon.log_format, base=logging.INFO)
    quiet_scheduler_logs()
    try:
        daemon = Daemon(Path(config), cfg)
        del cfg  # the daemon's alone, freed when a reload replaces it
        code = daemon.main()
    except (ArchiverError, OSError) as e:  # said in the daemon's log format, not as a CLI line
        logging.getLogger("archiver").error("the daemon could not start: %s", e)
        code = 1
    return code


@click.command()
@click.option("--config", "-c", "config", required=True, type=click.Path(dir_okay=False))
def status(config: str) -> int:
    """Per outlet: last pass, its counts and error, and the next scheduled pass."""
    from ..jobstore import next_run_times

    cfg = load_config(config)
    index = open_index(cfg)
    upcoming = next_run_times(cfg)
    t = Table(title=f"archiver status ({cfg.storage_root})", title_justify="left")
    for c in ("outlet", "last pass start", "end", "discovered", "archived", "updated", "failed", "next pass",
              "last error"):
        t.add_column(c, overflow="fold")
    with index:
        last = index.last_passes()
        totals = index.article_totals()
        adaptive = _adaptive_lines(cfg, index)
    for o in cfg.config.outlets:
        r = last.get(o.name)
        counts = r.counts.as_dict() if r is not None and r.counts is not None else {}
        nxt = upcoming.get(o.name)
        t.add_row(o.name, r.started_at[:19] if r else "never", (r.ended_at or "running")[:19] if r else "",
                  str(counts.get("discovered", "")), str(counts.get("archived", "")), str(counts.get("updated", "")),
                  str(counts.get("failed", "")), nxt.strftime("%Y-%m-%dT%H:%M:%S") if nxt else "not scheduled",
                  (r.error or "")[:120] if r else "")
    out_console().print(t)
    for line in adaptive:
        out_console().print(line, markup=False, highlight=False)
    out_console().print(f"totals: {totals['passes']} passes; articles: {totals['archived']} archived, "
                        f"{totals['updated']} updated, {totals['failed']} failing", markup=False, highlight=False)
    return 0


def _adaptive_lines(cfg: LoadedConfig, index: Index) -> list[str]:
    """For each outlet on an adaptive schedule: its bounds and which of its feeds and pages is due next."""
    from ..polling import OutletPolls, duration_text

    lines = []
    for o in cfg.config.outlets:
        if not o.schedule.adaptive:
            continue
        try:
            polls = OutletPolls.start(index, o.name, o.schedule)
        except ArchiverError:  # an index from before adaptive polling: nothing polled adaptively yet
            continue
        nxt = polls.upcoming(list(o.feeds) + o.listing_pages())
        lines.append(f"{o.name}: feeds and pages polled every {duration_text(o.schedule.shortest or 0)} to "
                     f"{duration_text(o.schedule.longest or 0)}"
                     + (f"; next due: {nxt[1]} at {nxt[0][:19]}" if nxt else ""))
    return lines


@click.command()
@click.option("--storage", type=click.Path(file_okay=False), default=None,
              help="storage root for the demo archive (default: a new temporary folder)")
@click.option("--serve-seconds", type=float, default=0, help="keep the sample outlet up this long afterwards")
def demo(storage: str | None, serve_seconds: float) -> int:
    """Archive a bundled sample outlet on 127.0.0.1, offline, and show where everything went."""
    from ..demo.command import run_demo

    setup_logging(0)
    return run_demo(Path(storage) if storage else None, serve_seconds)
