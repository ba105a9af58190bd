"""A log for conditions that repeat: each kind of message at most once per period."""

from __future__ import annotations

import logging
import time


class RateLimitedLog:
    """Lets a repeating message through at most once per `every` seconds, with a count of the
    ones held back, so a condition that lasts is seen without flooding the log."""

    def __init__(self, logger: logging.Logger, every: float = 60.0):
        self.logger, self.every = logger, every
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def log(self, level: int, key: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.every:
            self._held[key] = self._held.get(key, 0) + 1
            return
        held = self._held.pop(key, 0)
        self._last[key] = now
        if held and last is not None:
            msg += f" ({held} more like this in the last {now - last:.0f}s)"
        self.logger.log(level, msg, *args)

    def hold(self, key: str) -> None:
        """Count the next `every` seconds as if `key` had just been logged."""
        self._last[key] = time.monotonic()
