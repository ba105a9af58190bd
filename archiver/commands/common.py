"""What the commands share: their consoles, logging set-up, the index and WARC files of a
config, progress bars and the selection options of dump and export.

Nothing here runs at import: consoles and logging are made when a command runs.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..config import LoadedConfig
from ..index import Index

if TYPE_CHECKING:
    from ..warcfiles import WarcFiles


def err_console() -> Console:
    """Standard error for rich: built when a command runs, not at import, so it writes to the
    stderr of that moment."""
    return Console(stderr=True)


def out_console(stderr: bool = False) -> Console:
    """Standard output (or error) for a command's report; one piped to a file or CI log is
    not squeezed into 80 columns."""
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=160)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message (and exception)."""

    def format(self, record: logging.LogRecord) -> str:
        from datetime import datetime, timezone

        obj = {"time": datetime.fromtimestamp(record.created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
               "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            obj["exception"] = self.formatException(record.exc_info)
        return json.dumps(obj, ensure_ascii=False)


def setup_logging(verbose: int, fmt: str = "rich", base: int = logging.WARNING) -> None:
    level = base if verbose == 0 else (logging.INFO if verbose == 1 else logging.DEBUG)
    if fmt == "json":
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    elif fmt == "text":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler = RichHandler(console=err_console(), show_path=False, markup=False)
    logging.basicConfig(level=level, format="%(message)s", datefmt="[%X]", handlers=[handler], force=True)
    # readability logs every candidate at INFO: noise for an archiving daemon
    for noisy in ("httpx", "httpcore", "readability", "readability.readability"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def open_index(cfg: LoadedConfig) -> Index:
    """The index for reading; a StorageError (e.g. nothing archived yet) ends the command."""
    return Index.open(cfg.storage_root, readonly=True, url=cfg.config.index.url)


def warc_files(cfg: LoadedConfig, index: Index) -> WarcFiles:
    """Where the index's WARC files are: the storage root's warc/, then the index's record."""
    from ..warcfiles import WarcFiles, store_settings

    return WarcFiles.for_root(cfg.storage_root, index, store_settings(cfg.config.storage))


def progress_bar(total: int, what: str) -> Progress:
    err = err_console()
    p = Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err,
                 transient=True, disable=not err.is_terminal)
    p.add_task(what, total=total)
    return p


def selection_options(f):
    """--topic, --outlet, --since, --until: which archived articles a dump or export takes."""
    for opt in reversed([
        click.option("--topic", "topics", multiple=True, help="only captures about this topic (repeatable)"),
        click.option("--outlet", "outlets", multiple=True, help="only this outlet (repeatable)"),
        click.option("--since", default=None, help="captured at or after this UTC date/time (YYYY-MM-DD[THH:MM:SS])"),
        click.option("--until", default=None, help="captured at or before this UTC date/time"),
    ]):
        f = opt(f)
    return f
