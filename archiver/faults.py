"""Crash points: the process can be made to kill itself (SIGKILL) at a chosen step.

Crash safety is a claim about every moment of a pass; killing a process from outside at a
random time mostly lands while it waits on the network. These points let the crash tests
land a kill -9 inside the steps that matter: `fetch` (a body half received), `warc-write`
(a record half on disk), `rotation` (a full file not yet renamed), `index-commit` (records
flushed, row not yet committed) and `extract` (in an extraction worker, which counts its own
pages: every worker dies at its N-th).

`ARCHIVER_CRASH_AT=POINT:N` kills the process the N-th time it reaches POINT. Without the
variable (every normal run) `reached()` is one comparison, and callers on the per-record
path skip even the call by testing `ARMED`.

Importing this module reads nothing: the entry points (the command line, an extraction
worker's start-up) call `arm()`, which reads ARCHIVER_CRASH_AT and ARCHIVER_FAIL_AT.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Mapping

from .errors import InjectedFault

POINTS = ("fetch", "warc-write", "rotation", "index-commit", "extract")


def _crash_at(environ: Mapping[str, str]) -> tuple[str, int] | None:
    spec = environ.get("ARCHIVER_CRASH_AT", "")
    point, _, n = spec.partition(":")
    if point not in POINTS or not n.isdigit() or int(n) < 1:
        return None
    return point, int(n)


_ARMED: tuple[str, int] | None = None
ARMED = False  # callers on hot paths test this before building arguments
_counts: dict[str, int] = {}


def reached(point: str, before: Callable[[], object] | None = None) -> None:
    """Mark that `point` was reached; kill the process here if it is the armed one.
    `before` runs just before the kill (to put a half-written state on disk)."""
    if _ARMED is None or _ARMED[0] != point:
        return
    _counts[point] = n = _counts.get(point, 0) + 1
    if n == _ARMED[1]:
        if before is not None:
            before()
        os.kill(os.getpid(), signal.SIGKILL)


# Failure points: `ARCHIVER_FAIL_AT=STAGE:TEXT` makes the stage raise InjectedFault for every
# item whose URL contains TEXT. The tests use them to show that a failure in any stage costs
# only that item (its failure row), never the outlet's pass.
STAGES = ("document", "parse", "candidate", "redirect", "extract", "decide", "keep")


def _fail_at(environ: Mapping[str, str]) -> tuple[str, str] | None:
    stage, _, text = environ.get("ARCHIVER_FAIL_AT", "").partition(":")
    return (stage, text) if stage in STAGES and text else None


FAIL_AT: tuple[str, str] | None = None


def arm(environ: Mapping[str, str] | None = None) -> None:
    """Set the crash and failure points from ARCHIVER_CRASH_AT and ARCHIVER_FAIL_AT (of
    `environ`, default the process's environment); without them, disarm both."""
    global _ARMED, ARMED, FAIL_AT
    env = os.environ if environ is None else environ
    _ARMED = _crash_at(env)
    ARMED = _ARMED is not None
    FAIL_AT = _fail_at(env)
    _counts.clear()


def check(stage: str, url: str) -> None:
    """Raise InjectedFault here if the armed failure point names this stage and URL."""
    if FAIL_AT is not None and FAIL_AT[0] == stage and FAIL_AT[1] in url:
        raise InjectedFault(f"injected failure at {stage} for {url}")
