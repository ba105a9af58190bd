"""What the long-running commands share at start and stop: `archiver run` (the daemon),
`archiver scheduler` and `archiver worker` (the scaled setup).

SIGTERM and SIGINT ask a command to stop (it finishes what it is doing, closes its WARCs and
exits 0); SIGHUP asks the daemon to reload its config. The handlers stay in force until the
command has stopped, so a second signal while it winds down changes nothing.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .config import LoadedConfig
from .errors import ConfigError, ConfigProblem


@contextmanager
def handle_signals(stop: Callable[[], object], reload: Callable[[], object] | None = None,
                   loop: asyncio.AbstractEventLoop | None = None) -> Iterator[None]:
    """While the block runs, SIGTERM and SIGINT call `stop`, SIGHUP `reload` (when given); the
    handlers before come back after it. With `loop` they run on that event loop (asyncio's own
    handlers, which wake the loop; a plain one would run between two of its steps and leave it
    asleep); without, in the main thread as the signal comes (`threading.Event.set` is safe)."""
    calls: dict[signal.Signals, Callable[[], object]] = {signal.SIGTERM: stop, signal.SIGINT: stop}
    if reload is not None:
        calls[signal.SIGHUP] = reload
    before = {sig: signal.getsignal(sig) for sig in calls}
    try:
        for sig, call in calls.items():
            if loop is not None:
                loop.add_signal_handler(sig, call)
            else:
                signal.signal(sig, lambda _sig, _frame, call=call: call())
        yield
    finally:
        for sig, handler in before.items():
            if loop is not None:
                loop.remove_signal_handler(sig)
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def require_broker(cfg: LoadedConfig) -> str:
    """The scaled setup's broker URL; a ConfigError when the config names none."""
    broker = cfg.config.scale.broker
    if not broker:
        raise ConfigError([ConfigProblem(str(cfg.path), 0, "scale.broker",
                                         "a scaled setup needs a broker: set scale.broker or ARCHIVER_BROKER_URL")])
    return broker
