"""Command line: `archiver crawl | run | status | captures | dump | verify | extract | serve | export |
fsck | migrate | scheduler | worker | check-config | demo | alerts | rematch`.

The commands are in archiver/commands/ (passes.py: check-config, crawl, run, status, demo;
archive.py: captures, dump, verify, extract, export, fsck, migrate, serve; scaled.py:
scheduler, worker; alerts.py: alerts deliver; rematch.py: rematch). This module gathers them
under `main`, the one boundary: each command returns its exit code, and the errors archiver
raises on purpose end here, a ConfigError as its problems and any other ArchiverError as one
line `archiver: MESSAGE`, both on stderr.

Exit codes: 0 done (individual fetch failures are reported, not fatal), 1 the command could
not run (storage not writable, index unreadable, ...), 2 bad config or usage.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from . import __version__, faults
from .commands import alerts, archive, passes, rematch, scaled
from .errors import ArchiverError, ConfigError


def _one_line(e: BaseException) -> str:
    return "; ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__


class _Boundary(click.Group):
    """The one place the command line meets the errors archiver raises on purpose: commands
    return their exit code, a ConfigError prints its problems (exit 2) and any other
    ArchiverError one line `archiver: MESSAGE` (exit 1), both on stderr."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,  # type: ignore[override]
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> int:
        code = self._exit_code(args, prog_name, complete_var, **extra)
        if standalone_mode:  # the installed command, or click's test runner
            sys.exit(code)
        return code

    def _exit_code(self, args: Sequence[str] | None, prog_name: str | None, complete_var: str | None,
                   **extra: Any) -> int:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ConfigError as e:
            for p in e.problems:
                click.echo(str(p), err=True)
            return 2
        except ArchiverError as e:
            click.echo(f"archiver: {_one_line(e)}", err=True)
            return 1
        except click.ClickException as e:  # usage errors: click's own message, exit 2
            e.show()
            return e.exit_code
        except click.Abort:  # Ctrl-C outside a command's own handling
            click.echo("Aborted!", err=True)
            return 1
        return rv if isinstance(rv, int) else 0


@click.group(cls=_Boundary, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="archiver")
def main() -> None:
    """Archive what news outlets publish about your topics: WARC captures, text and provenance."""
    faults.arm()  # the crash and failure points are read here, not when archiver is imported


for command in (passes.check_config_cmd, passes.crawl, passes.run, passes.status, passes.demo,
                archive.captures, archive.dump_cmd, archive.verify_cmd, archive.extract_cmd, archive.export_group,
                archive.fsck_cmd, archive.migrate_cmd, archive.serve_cmd, scaled.scheduler_cmd, scaled.worker_cmd,
                alerts.alerts_group, rematch.rematch_cmd):
    main.add_command(command)


if __name__ == "__main__":  # pragma: no cover
    main()
