"""Commands of a scaled setup: scheduler and worker (see README "Scaling out")."""

from __future__ import annotations

import logging
import time

import click
from rich.table import Table

from ..config import load_config
from ..errors import ArchiverError
from .common import open_index, out_console, setup_logging


@click.command("scheduler")
@click.option("--config", "-c", "config", required=True, type=click.Path(dir_okay=False), help="YAML config file")
@click.option("--once", is_flag=True, help="one pass of every outlet, wait until all are done, then exit")
@click.option("--outlet", "outlets", multiple=True, help="with --once: only this outlet (repeatable)")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None)
@click.option("-v", "--verbose", count=True, help="debug logging with -v")
def scheduler_cmd(config: str, once: bool, outlets: tuple[str, ...], log_format: str | None, verbose: int) -> int:
    """Scaled setup: start outlet passes on their schedules for `archiver worker`s to do (needs scale.broker)."""
    from ..scale.scheduler import run_scheduler
    from ..schedule import quiet_scheduler_logs

    cfg = load_config(config)
    setup_logging(2 if verbose else 0, log_format or cfg.config.daemon.log_format, base=logging.INFO)
    quiet_scheduler_logs()
    last = [0.0]

    def progress(passes: int, rows: int) -> None:
        if time.monotonic() - last[0] >= 5:
            last[0] = time.monotonic()
            logging.getLogger("archiver").info("%d passes open, %d candidates not settled", passes, rows)

    started = run_scheduler(cfg, once, list(outlets) or None, progress)
    if once:
        with open_index(cfg) as index:
            t = Table(title="passes", title_justify="left")
            for c in ("outlet", "pass", "discovered", "archived", "off topic", "failed", "duplicate", "error"):
                t.add_column(c, overflow="fold")
            for pid in started:
                r = index.get_pass(pid)
                if r is None:
                    continue
                n = r.counts.as_dict() if r.counts is not None else {}
                t.add_row(r.outlet, str(pid), str(n.get("discovered", "")), str(n.get("archived", "")),
                          str(n.get("off_topic", "")), str(n.get("failed", "")), str(n.get("duplicate", "")),
                          (r.error or "")[:120])
            out_console().print(t)
    return 0


@click.command("worker")
@click.option("--config", "-c", "config", required=True, type=click.Path(dir_okay=False), help="YAML config file")
@click.option("--name", default=None, help="worker name, in its WARC file names (default: ARCHIVER_WORKER_NAME or the host name)")
@click.option("--threads", type=int, default=None, help="tasks at once (default: scale.worker_threads or fetch.concurrency)")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None)
@click.option("-v", "--verbose", count=True, help="debug logging with -v")
def worker_cmd(config: str, name: str | None, threads: int | None, log_format: str | None, verbose: int) -> int:
    """Scaled setup: do the passes and fetches the scheduler sends, until SIGTERM/SIGINT."""
    from ..scale.worker import run_worker

    cfg = load_config(config)
    setup_logging(2 if verbose else 0, log_format or cfg.config.daemon.log_format, base=logging.INFO)
    try:
        code = run_worker(cfg, name, threads)
    except ArchiverError as e:
        logging.getLogger("archiver").error("the worker could not start: %s", e)
        code = 1
    return code
