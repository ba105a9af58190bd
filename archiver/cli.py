"""Command line: `archiver crawl | run | status | captures | dump | verify | extract | serve | export | fsck | migrate | scheduler | worker | check-config | demo`.

Exit codes: 0 done (individual fetch failures are reported, not fatal), 1 the command could
not run (storage not writable, index unreadable, ...), 2 bad config or usage.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__
from .config import LoadedConfig, load_config
from .crawl import PassResult
from .errors import ArchiverError, ConfigError
from .index import Index, row_to_public

if TYPE_CHECKING:
    from .warcfiles import WarcFiles

err_console = Console(stderr=True)
# a summary piped to a file or CI log should not be squeezed into 80 columns
out_console = Console() if Console().is_terminal else Console(width=160)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message (and exception)."""

    def format(self, record: logging.LogRecord) -> str:
        from datetime import datetime, timezone

        obj = {"time": datetime.fromtimestamp(record.created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
               "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            obj["exception"] = self.formatException(record.exc_info)
        return json.dumps(obj, ensure_ascii=False)


def _setup_logging(verbose: int, fmt: str = "rich", base: int = logging.WARNING) -> None:
    level = base if verbose == 0 else (logging.INFO if verbose == 1 else logging.DEBUG)
    if fmt == "json":
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    elif fmt == "text":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler = RichHandler(console=err_console, show_path=False, markup=False)
    logging.basicConfig(level=level, format="%(message)s", datefmt="[%X]", handlers=[handler], force=True)
    # readability logs every candidate at INFO: noise for an archiving daemon
    for noisy in ("httpx", "httpcore", "apscheduler.executors.default", "readability", "readability.readability"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    scheduler_log = logging.getLogger("apscheduler.scheduler")
    if not any(isinstance(f, _SkippedRunFilter) for f in scheduler_log.filters):
        scheduler_log.addFilter(_SkippedRunFilter())


class _SkippedRunFilter(logging.Filter):
    """APScheduler warns every time a run is skipped because the outlet's previous pass is
    still going; with short intervals that is routine, so it is logged at INFO instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "maximum number of running instances reached" in record.getMessage():
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _load(path: str) -> LoadedConfig:
    try:
        return load_config(path)
    except ConfigError as e:
        for p in e.problems:
            click.echo(str(p), err=True)
        sys.exit(2)


def _open_index(cfg: LoadedConfig) -> Index:
    """The index for reading, or exit 1 with the reason (e.g. nothing archived yet)."""
    try:
        return Index.open(cfg.storage_root, readonly=True, url=cfg.config.index.url)
    except ArchiverError as e:
        click.echo(f"archiver: {e}", err=True)
        sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="archiver")
def main() -> None:
    """Archive what news outlets publish about your topics: WARC captures, text and provenance."""


@main.command("check-config")
@click.argument("config", type=click.Path(dir_okay=False))
def check_config_cmd(config: str) -> None:
    """Validate CONFIG; print 'ok' or every problem as FILE:LINE: key: what is wrong."""
    try:
        cfg = load_config(config)
    except ConfigError as e:
        for p in e.problems:
            click.echo(str(p))
        sys.exit(2)
    click.echo("ok")
    for outlet in cfg.config.outlets:
        if outlet.headers or outlet.cookies:
            what = [f"header {name}: [redacted]" for name in outlet.headers]
            what += [f"cookie {name}=[redacted]" for name in outlet.cookies]
            click.echo(f"outlet {outlet.name} sends {', '.join(what)} to {', '.join(sorted(outlet.hosts()))} only")


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


def crawl_and_report(cfg: LoadedConfig, outlets: tuple[str, ...] = (), show_progress: bool = True) -> int:
    """Run one pass with a progress bar and print the summary; returns the exit code."""
    from .crawl import run_pass

    unknown = [o for o in outlets if o not in {x.name for x in cfg.config.outlets}]
    if unknown:
        click.echo(f"{cfg.path}: no outlet named {', '.join(map(repr, unknown))}", err=True)
        return 2
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=err_console, transient=True,
                        disable=not show_progress or not err_console.is_terminal)
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
    out_console.print(summary_table(result))
    max_age = cfg.config.discover.max_age_days
    for s in result.outlets:
        if s.sitemap_too_old and max_age is not None:  # why an old sitemap found nothing
            out_console.print(f"{s.outlet}: {s.sitemap_too_old} sitemap entries older than {max_age:g} days skipped "
                              "(discover.max_age_days)", markup=False, highlight=False)
    problems = [(s.outlet, s.errors, s.failures, s.failed) for s in result.outlets if s.errors or s.failures]
    if problems:
        out_console.print("[bold]problems[/bold] (the first of each outlet; all are in the index):")
        for name, errors, failures, failed in problems:
            if errors:
                more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
                out_console.print(f"  {name}: {errors[0]}{more}", markup=False, highlight=False)
            for line in failures[:3]:
                out_console.print(f"  {name}: article {line}", markup=False, highlight=False)
            if failed > 3:
                out_console.print(f"  {name}: (+{failed - 3} more failed articles: archiver captures --state failed)",
                                  markup=False, highlight=False)
    out_console.print(f"storage root: {result.storage_root}", markup=False, highlight=False)
    for f in result.warc_files:
        out_console.print(f"  wrote {f}", markup=False, highlight=False)
    out_console.print(resources_line(result.worker_peak_mb, started), markup=False, highlight=False)
    return 0


def resources_line(worker_peak_mb: float, started: os.times_result) -> str:
    """CPU and peak memory of this process and of its extraction workers (exited by now).
    Child CPU is counted from `started`: times survive exec, so a wrapper script's own
    children (a pip install) would otherwise show up as extraction."""
    from .procpool import peak_rss_mb

    t = os.times()
    kids = (t.children_user - started.children_user) + (t.children_system - started.children_system)
    line = f"resources: {t.user + t.system:.1f} s CPU, peak memory {peak_rss_mb():.0f} MB"
    if kids > 0.05:
        line += f"; extraction workers {kids:.1f} s CPU"
        if worker_peak_mb:
            line += f", peak memory {worker_peak_mb:.0f} MB each at most"
    return line


@main.command()
@click.option("--config", "-c", "config", required=True, type=click.Path(dir_okay=False), help="YAML config file")
@click.option("--outlet", "outlets", multiple=True, help="only this outlet (repeatable)")
@click.option("-v", "--verbose", count=True, help="more log output (-vv for debug)")
@click.option("--no-progress", is_flag=True, help="no progress bar")
def crawl(config: str, outlets: tuple[str, ...], verbose: int, no_progress: bool) -> None:
    """Run one archiving pass over every outlet in the config."""
    _setup_logging(verbose)
    cfg = _load(config)
    sys.exit(crawl_and_report(cfg, outlets, not no_progress))


@main.command()
@click.option("--config", "-c", "config", required=True, type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["jsonl", "table"]), default="table", show_default=True)
@click.option("--outlet", default=None, help="only captures of this outlet")
@click.option("--kind", default=None, help="article, feed, sitemap, page, search, robots, redirect")
@click.option("--state", default=None, help="archived, off_topic, failed, robots, blocked")
def captures(config: str, fmt: str, outlet: str | None, kind: str | None, state: str | None) -> None:
    """List captures from the provenance index."""
    cfg = _load(config)
    index = _open_index(cfg)
    with index:
        rows = index.captures(outlet=outlet, kind=kind, state=state)
        if fmt == "jsonl":
            for row in rows:
                sys.stdout.write(json.dumps(row_to_public(row), ensure_ascii=False, sort_keys=False) + "\n")
            return
        t = Table()
        for c in ("id", "outlet", "kind", "state", "status", "fetched_at", "topics", "url"):
            t.add_column(c, overflow="fold")
        for row in rows:
            t.add_row(str(row.id), row.outlet, row.kind, row.state, str(row.status or ""), row.fetched_at[:19],
                      ",".join(row.topics), row.final_url or row.url)
        out_console.print(t)


@main.command()
@click.option("--config", "-c", "config", required=True, type=click.Path(dir_okay=False), help="YAML config file")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None,
              help="log lines for people or for machines (default: daemon.log_format)")
@click.option("-v", "--verbose", count=True, help="debug logging with -v")
def run(config: str, log_format: str | None, verbose: int) -> None:
    """Run the daemon: poll every outlet on its schedule until SIGTERM/SIGINT (SIGHUP reloads the config)."""
    from .daemon import run_daemon

    cfg = _load(config)
    _setup_logging(2 if verbose else 0, log_format or cfg.config.daemon.log_format, base=logging.INFO)
    try:
        code = run_daemon(Path(config))
    except ArchiverError as e:
        logging.getLogger("archiver").error("the daemon could not start: %s", e)
        code = 1
    except OSError as e:
        logging.getLogger("archiver").error("the daemon could not start: %s", e)
        code = 1
    sys.exit(code)


@main.command()
@click.option("--config", "-c", "config", required=True, type=click.Path(dir_okay=False))
def status(config: str) -> None:
    """Per outlet: last pass, its counts and error, and the next scheduled pass."""
    from .daemon import next_run_times

    cfg = _load(config)
    index = _open_index(cfg)
    upcoming = next_run_times(cfg)
    t = Table(title=f"archiver status ({cfg.storage_root})", title_justify="left")
    for c in ("outlet", "last pass start", "end", "discovered", "archived", "updated", "failed", "next pass",
              "last error"):
        t.add_column(c, overflow="fold")
    with index:
        last = {r["outlet"]: r for r in index.rows(
            "SELECT * FROM passes WHERE id IN (SELECT MAX(id) FROM passes GROUP BY outlet)")}
        totals = index.article_totals()
    for o in cfg.config.outlets:
        r = last.get(o.name)
        counts = json.loads(r["counts"]) if r is not None and r["counts"] else {}
        nxt = upcoming.get(o.name)
        t.add_row(o.name, r["started_at"][:19] if r else "never", (r["ended_at"] or "running")[:19] if r else "",
                  str(counts.get("discovered", "")), str(counts.get("archived", "")), str(counts.get("updated", "")),
                  str(counts.get("failed", "")), nxt.strftime("%Y-%m-%dT%H:%M:%S") if nxt else "not scheduled",
                  (r["error"] or "")[:120] if r else "")
    out_console.print(t)
    out_console.print(f"totals: {totals['passes']} passes; articles: {totals['archived']} archived, "
                      f"{totals['updated']} updated, {totals['failed']} failing", markup=False, highlight=False)


def _bar(total: int, what: str) -> Progress:
    p = Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err_console,
                 transient=True, disable=not err_console.is_terminal)
    p.add_task(what, total=total)
    return p


def _selection_options(f):
    """--topic, --outlet, --since, --until: which archived articles a dump or export takes."""
    for opt in reversed([
        click.option("--topic", "topics", multiple=True, help="only captures about this topic (repeatable)"),
        click.option("--outlet", "outlets", multiple=True, help="only this outlet (repeatable)"),
        click.option("--since", default=None, help="captured at or after this UTC date/time (YYYY-MM-DD[THH:MM:SS])"),
        click.option("--until", default=None, help="captured at or before this UTC date/time"),
    ]):
        f = opt(f)
    return f


@main.command("scheduler")
@click.option("--config", "-c", "config", required=True, type=click.Path(dir_okay=False), help="YAML config file")
@click.option("--once", is_flag=True, help="one pass of every outlet, wait until all are done, then exit")
@click.option("--outlet", "outlets", multiple=True, help="with --once: only this outlet (repeatable)")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None)
@click.option("-v", "--verbose", count=True, help="debug logging with -v")
def scheduler_cmd(config: str, once: bool, outlets: tuple[str, ...], log_format: str | None, verbose: int) -> None:
    """Scaled setup: start outlet passes on their schedules for `archiver worker`s to do (needs scale.broker)."""
    from .scale.scheduler import run_scheduler

    cfg = _load(config)
    _setup_logging(2 if verbose else 0, log_format or cfg.config.daemon.log_format, base=logging.INFO)
    last = [0.0]

    def progress(passes: int, rows: int) -> None:
        if time.monotonic() - last[0] >= 5:
            last[0] = time.monotonic()
            logging.getLogger("archiver").info("%d passes open, %d candidates not settled", passes, rows)

    try:
        started = run_scheduler(cfg, once, list(outlets) or None, progress)
    except ArchiverError as e:
        click.echo(f"archiver: {e}", err=True)
        sys.exit(1)
    if once:
        with _open_index(cfg) as index:
            t = Table(title="passes", title_justify="left")
            for c in ("outlet", "pass", "discovered", "archived", "off topic", "failed", "duplicate", "error"):
                t.add_column(c, overflow="fold")
            for pid in started:
                r = index.rows("SELECT * FROM passes WHERE id = :i", i=pid)[0]
                n = json.loads(r["counts"] or "{}")
                t.add_row(r["outlet"], str(pid), str(n.get("discovered", "")), str(n.get("archived", "")),
                          str(n.get("off_topic", "")), str(n.get("failed", "")), str(n.get("duplicate", "")),
                          (r["error"] or "")[:120])
            out_console.print(t)


@main.command("worker")
@click.option("--config", "-c", "config", required=True, type=click.Path(dir_okay=False), help="YAML config file")
@click.option("--name", default=None, help="worker name, in its WARC file names (default: ARCHIVER_WORKER_NAME or the host name)")
@click.option("--threads", type=int, default=None, help="tasks at once (default: scale.worker_threads or fetch.concurrency)")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None)
@click.option("-v", "--verbose", count=True, help="debug logging with -v")
def worker_cmd(config: str, name: str | None, threads: int | None, log_format: str | None, verbose: int) -> None:
    """Scaled setup: do the passes and fetches the scheduler sends, until SIGTERM/SIGINT."""
    from .scale.worker import run_worker

    cfg = _load(config)
    _setup_logging(2 if verbose else 0, log_format or cfg.config.daemon.log_format, base=logging.INFO)
    try:
        code = run_worker(cfg, name, threads)
    except ArchiverError as e:
        logging.getLogger("archiver").error("the worker could not start: %s", e)
        code = 1
    sys.exit(code)


@main.command("dump")
@click.option("--config", "-c", "config", required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="folder for the text files and manifest")
@_selection_options
@click.option("--url", "urls", multiple=True, help="only this URL (repeatable)")
@click.option("--kind", type=click.Choice(["page", "article"]), default="page", show_default=True)
@click.option("--latest", is_flag=True, help="only the newest capture of each URL")
@click.option("--workers", type=click.IntRange(0, 256), default=None,
              help="processes deriving texts [default: extract.workers of the config, else one per core]")
def dump_cmd(config: str, out: str, topics: tuple[str, ...], outlets: tuple[str, ...], since: str | None,
             until: str | None, urls: tuple[str, ...], kind: str, latest: bool, workers: int | None) -> None:
    """Write one text file per capture, re-derived from the WARCs, and DIR/manifest.json."""
    from .dump import Selection, dump, select

    cfg = _load(config)
    index = _open_index(cfg)
    sel = Selection(topics, outlets, since, until, urls, kind, latest)
    with index:
        total = len(select(index, sel))
        bar = _bar(total, "dumping")
        try:
            with bar:
                manifest = dump(_warcs(cfg, index), index, Path(out), sel, lambda n: bar.advance(bar.task_ids[0], n),
                                workers if workers is not None else cfg.config.extract.workers)
        except ArchiverError as e:
            click.echo(f"archiver: {e}", err=True)
            sys.exit(1)
    click.echo(f"wrote {len(manifest['files'])} {kind} text files and manifest.json to {out}")


def _warcs(cfg: LoadedConfig, index: Index) -> WarcFiles:
    """Where the index's WARC files are: the storage root's warc/, then the index's record."""
    from .warcfiles import WarcFiles, store_settings

    return WarcFiles.for_root(cfg.storage_root, index, store_settings(cfg.config.storage))


@main.command("verify")
@click.argument("dump_dir", type=click.Path(file_okay=False))
@click.option("--config", "-c", "config", default=None, type=click.Path(dir_okay=False),
              help="find the WARCs under this config's storage root")
@click.option("--warcs", "warcs", multiple=True, type=click.Path(), help="a folder holding the WARCs (repeatable)")
@click.option("--workers", type=click.IntRange(0, 256), default=None,
              help="processes re-deriving texts [default: one per core]")
def verify_cmd(dump_dir: str, config: str | None, warcs: tuple[str, ...], workers: int | None) -> None:
    """Re-derive every file of DUMP_DIR/manifest.json from its WARC and compare; exit 0 only if all match."""
    from .dump import verify

    roots = [Path(w) for w in warcs]
    index = None
    if config:
        cfg = _load(config)
        roots.append(cfg.storage_root)
        try:  # the index says where shipped files are; a dump of a copied archive needs none
            index = Index.open(cfg.storage_root, readonly=True, url=cfg.config.index.url)
        except ArchiverError:
            index = None
    if not roots:
        click.echo("archiver: give --config or --warcs to say where the WARCs are", err=True)
        sys.exit(2)
    try:
        verdicts = verify(Path(dump_dir), roots, workers=workers,
                          warcs=_warcs(cfg, index) if index is not None else None)
    except ArchiverError as e:
        click.echo(f"archiver: {e}", err=True)
        sys.exit(1)
    finally:
        if index is not None:
            index.close()
    for v in verdicts:
        click.echo(f"{v.status:<14} {v.file}{'  (' + v.detail + ')' if v.detail and v.status != 'ok' else ''}")
    bad = [v for v in verdicts if v.status != "ok"]
    counts = {s: sum(1 for v in verdicts if v.status == s)
              for s in ("ok", "DIFFERS", "MISSING", "WARC NOT FOUND", "REFUSED")}
    click.echo(", ".join(f"{n} {s}" for s, n in counts.items()) + f" of {len(verdicts)} files")
    sys.exit(1 if bad else 0)


@main.command("serve")
@click.option("--config", "-c", "config", required=True, type=click.Path(dir_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to listen on (the UI has no login: keep it on loopback unless a proxy guards it)")
@click.option("--port", default=8770, show_default=True, type=int)
@click.option("--replay-port", type=int, default=None,
              help="port of the replay origin, where archived pages are served  [default: --port + 2, beside the daemon's 8771]")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="another name the UI may be reached by (repeatable); loopback names and --host are always allowed")
@click.option("-v", "--verbose", count=True)
def serve_cmd(config: str, host: str, port: int, replay_port: int | None, allowed_hosts: tuple[str, ...],
              verbose: int) -> None:
    """Browse the archive offline: search, captures, diffs and replay, read-only."""
    from .web.app import serve
    from .warcfiles import store_settings

    cfg = _load(config)
    _setup_logging(verbose, base=logging.WARNING)
    try:
        serve(cfg.storage_root, host, port, index_url=cfg.config.index.url, log_level="info" if verbose else "warning",
              store=store_settings(cfg.config.storage), replay_port=replay_port, allowed_hosts=allowed_hosts)
    except ArchiverError as e:
        click.echo(f"archiver: {e}", err=True)
        sys.exit(1)


@main.group("export")
def export_group() -> None:
    """Export for standard web-archive tools (WACZ for ReplayWeb.page, CDXJ for pywb)."""


@export_group.command("wacz")
@click.option("--config", "-c", "config", required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="the .wacz file to write")
@_selection_options
def export_wacz_cmd(config: str, out: str, topics: tuple[str, ...], outlets: tuple[str, ...],
                    since: str | None, until: str | None) -> None:
    """Write a WACZ: the WARCs holding the selected articles, a CDXJ index, pages with text."""
    from .dump import Selection
    from .export import export_wacz

    cfg = _load(config)
    index = _open_index(cfg)
    with index:
        try:
            counts = export_wacz(cfg.storage_root, _warcs(cfg, index), index, Path(out),
                                 Selection(topics, outlets, since, until, kind="article"))
        except ArchiverError as e:
            click.echo(f"archiver: {e}", err=True)
            sys.exit(1)
    click.echo(f"wrote {out}: {counts['pages']} pages, {counts['warcs']} WARC files, "
               f"{counts['cdxj_lines']} index lines")


@export_group.command("cdxj")
@click.option("--config", "-c", "config", required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="the .cdxj file to write")
def export_cdxj_cmd(config: str, out: str) -> None:
    """Write a sorted CDXJ index of every closed WARC, for pywb."""
    from .export import export_cdxj

    cfg = _load(config)
    index = _open_index(cfg)
    try:
        with index:
            n = export_cdxj(_warcs(cfg, index), Path(out))
    except (ArchiverError, OSError) as e:
        click.echo(f"archiver: {e}", err=True)
        sys.exit(1)
    click.echo(f"wrote {n} index lines to {out}")


@main.command("fsck")
@click.option("--config", "-c", "config", required=True, type=click.Path(dir_okay=False))
@click.option("--repair", is_flag=True, help="fix what is found (drop, index again, repair .open files)")
def fsck_cmd(config: str, repair: bool) -> None:
    """Check the index and the WARC files against each other; exit 0 when they agree."""
    from .fsck import fsck

    cfg = _load(config)
    try:
        index = Index.open(cfg.storage_root, readonly=not repair, url=cfg.config.index.url)
    except ArchiverError as e:
        click.echo(f"archiver: {e}", err=True)
        sys.exit(1)
    with index:
        try:
            report = fsck(cfg.storage_root, index, repair, _warcs(cfg, index))
        except ArchiverError as e:
            click.echo(f"archiver: {e}", err=True)
            sys.exit(1)
    for name in report.open_files:
        click.echo(f"OPEN FILE          {name} (not closed: --repair cuts it after its last whole record and closes it)")
    for row in report.rows_in_open_files:
        click.echo(f"IN OPEN FILE       row {row.id} {row.url} -> {row.warc_file}@{row.warc_offset} "
                   "(the record is whole; --repair closes the file)")
    for row in report.rows_without_record:
        click.echo(f"ROW WITHOUT RECORD row {row.id} {row.url} -> {row.warc_file}@{row.warc_offset}")
    for rec in report.records_without_row:
        click.echo(f"RECORD WITHOUT ROW {rec.warc_file}@{rec.offset} {rec.rtype} {rec.uri}")
    for line in report.repaired:
        click.echo(f"repaired: {line}")
    inside = f" ({len(report.rows_in_open_files)} rows point into them)" if report.rows_in_open_files else ""
    click.echo(f"{report.rows_checked} rows and {report.records_checked} response/revisit records checked: "
               f"{len(report.open_files)} open files{inside}, {len(report.rows_without_record)} rows without record, "
               f"{len(report.records_without_row)} records without row")
    sys.exit(0 if report.clean or repair else 1)


@main.command("migrate")
@click.option("--config", "-c", "config", required=True, type=click.Path(dir_okay=False))
def migrate_cmd(config: str) -> None:
    """Bring the index's schema up to this version (any writer does it too; this says what it did)."""
    from .index import current_revision, display_url, index_url
    from .schema import HEAD

    cfg = _load(config)
    where = display_url(index_url(cfg.storage_root, cfg.config.index.url))
    try:
        with Index.open(cfg.storage_root, readonly=True, url=cfg.config.index.url) as index:
            before = current_revision(index)
    except ArchiverError:
        before = None  # nothing there yet: the open below creates it
    try:
        with Index.open(cfg.storage_root, url=cfg.config.index.url) as index:
            after = current_revision(index)
    except ArchiverError as e:
        click.echo(f"archiver: {e}", err=True)
        sys.exit(1)
    if before == after:
        click.echo(f"index {where}: schema {after}, up to date")
    else:
        click.echo(f"index {where}: schema {before or '(none)'} -> {after} (newest: {HEAD})")


@main.command("extract")
@click.option("--kind", type=click.Choice(["article", "page"]), default="article", show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
def extract_cmd(kind: str, out: str, files: tuple[str, ...]) -> None:
    """Run the extractor (article) or page renderer on local HTML files (plain or .html.gz)."""
    from .dump import file_to_text, stem

    dest = Path(out)
    dest.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name in files:
        path = Path(name)
        try:
            text = file_to_text(path, kind)
        except (OSError, EOFError, ValueError) as e:
            click.echo(f"{path}: {e}", err=True)
            failed += 1
            continue
        (dest / f"{stem(path)}.txt").write_text(text, encoding="utf-8")
    click.echo(f"wrote {len(files) - failed} {kind} texts to {dest}" + (f"; {failed} failed" if failed else ""))
    sys.exit(1 if failed else 0)


@main.command()
@click.option("--storage", type=click.Path(file_okay=False), default=None,
              help="storage root for the demo archive (default: a new temporary folder)")
@click.option("--serve-seconds", type=float, default=0, help="keep the sample outlet up this long afterwards")
def demo(storage: str | None, serve_seconds: float) -> None:
    """Archive a bundled sample outlet on 127.0.0.1, offline, and show where everything went."""
    from .demo.command import run_demo

    _setup_logging(0)
    sys.exit(run_demo(Path(storage) if storage else None, serve_seconds))


if __name__ == "__main__":  # pragma: no cover
    main()
