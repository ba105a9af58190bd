"""`archiver alerts deliver`: send what the alerts' outbox holds, once (cron) or until stopped.

The daemon (`archiver run`) delivers by itself; this is for archives filled by `archiver
crawl` from cron, or by a scaled setup's workers."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import click

from ..config import load_config
from ..index import Index
from .common import setup_logging

if TYPE_CHECKING:
    from ..alerts import Deliverer, Round


@click.group("alerts")
def alerts_group() -> None:
    """Alerts of new, updated and removed articles (webhooks, e-mail)."""


@alerts_group.command("deliver")
@click.option("--config", "-c", "config", required=True, type=click.Path(dir_okay=False), help="YAML config file")
@click.option("--follow", is_flag=True, help="keep delivering, looking at the outbox every second, until "
                                             "SIGTERM/SIGINT")
@click.option("-v", "--verbose", count=True, help="log every delivery (-v)")
def deliver_cmd(config: str, follow: bool, verbose: int) -> int:
    """Send the deliveries not made yet, in the order queued; report what was delivered and what failed.

    A receiver that fails is left for the next run (or the daemon), its deliveries queued.
    Exit 0 when the outbox could be read and written, whatever the receivers answered."""
    from ..alerts import Deliverer

    cfg = load_config(config)
    setup_logging(verbose, base=logging.WARNING)
    with Index.open(cfg.storage_root, url=cfg.config.index.url) as index:
        return asyncio.run(_deliver(Deliverer(cfg, index), index, follow))


async def _deliver(deliverer: Deliverer, index: Index, follow: bool) -> int:
    from ..alerts import Round
    from ..runtime import handle_signals

    done = Round()
    try:
        if follow:
            with handle_signals(deliverer.stop, loop=asyncio.get_running_loop()):
                await deliverer.run()
            return 0
        # a round reads a batch; more rounds while they go well (a failure ends the receivers' turns)
        while True:
            got = await deliverer.round(backoff=False)
            _add(done, got)
            if not got.delivered or got.failed:
                break
    finally:
        await deliverer.aclose()
    left = len(index.outbox(pending_only=True))
    for error in done.errors:
        click.echo(f"failed: {error}", err=True)
    line = f"delivered {done.delivered}, failed {done.failed}, still queued {left}"
    if done.waiting:
        line += f" ({done.waiting} for receivers no alert in the config names any more)"
    click.echo(line)
    return 0


def _add(total: Round, one: Round) -> None:
    total.delivered += one.delivered
    total.failed += one.failed
    total.waiting = max(total.waiting, one.waiting)
    total.errors += one.errors
