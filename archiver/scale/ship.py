"""Shipping a worker's closed WARC files from its spool to the shared store.

Each closed file is copied (stores.Store.put verifies the copy), then its `warc_files` row is
pointed at the new location in one transaction, and only then is the spool copy removed. A
worker killed at any step leaves the file either still in its spool with the row saying so
(shipped again at its next start: a second copy overwrites the first) or shipped with the row
saying so (the spool copy is removed at the next start). A store that is down costs retries,
never a file: the spool keeps it until a copy succeeds.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Callable

from ..errors import StorageError
from ..index import Index
from ..stores import Store, file_sha256, local_path
from ..clock import utc_now as _now

log = logging.getLogger(__name__)

RETRY_AFTER = 30.0  # seconds before a failed copy is tried again


def ship_file(index: Index, store: Store, path: Path) -> str:
    """Copy one closed file to the store, record its new location, remove the spool copy."""
    sha256, size = file_sha256(path)
    location = store.put(path, path.name, sha256)
    index.record_warc_shipped(path.name, location, size, sha256, _now())
    if local_path(location) != path.resolve():
        path.unlink()
    return location


def adopt_spool(index: Index, worker: str, spool_warc: Path, record: Callable[[Path], None],
                shipper: "Shipper | None") -> None:
    """At a worker's start: closed files of its spool the index does not know (repaired, or
    closed just before a kill) go to `record`; files recorded and not shipped go to the
    shipper; spool copies of files shipped before the last run stopped are removed."""
    recorded = {f.name: (f.state, f.location) for f in index.warc_files(worker=worker)}
    for p in sorted(spool_warc.glob("*.warc.gz")):
        state, location = recorded.get(p.name, (None, ""))
        if state is None:
            record(p)
        elif state == "shipped" and local_path(location) != p.resolve():
            log.info("%s was shipped to %s before this worker stopped: spool copy removed", p.name, location)
            p.unlink()
        elif shipper is not None:
            shipper.submit(p)


class Shipper:
    """Ships files handed to submit() one at a time on a thread of its own, so the pass's
    event loop never waits on a copy; failed copies are retried every RETRY_AFTER seconds."""

    def __init__(self, index: Index, store: Store, worker: str):
        self.index, self.store, self.worker = index, store, worker
        self._todo: queue.Queue[Path | None] = queue.Queue()
        self._failed: dict[Path, float] = {}
        self._thread = threading.Thread(target=self._run, name="ship", daemon=True)
        self._thread.start()

    def submit(self, path: Path) -> None:
        self._todo.put(path)

    def _run(self) -> None:
        while True:
            try:
                path = self._todo.get(timeout=1.0)
            except queue.Empty:
                self._requeue_due()
                continue
            if path is None:  # from close(): everything queued before it is done
                return
            if not path.exists():  # submitted twice and shipped the first time
                continue
            try:
                where = ship_file(self.index, self.store, path)
                self._failed.pop(path, None)
                log.info("shipped %s to %s", path.name, where)
            except (StorageError, OSError) as e:
                self._failed[path] = time.monotonic() + RETRY_AFTER
                log.error("could not ship %s (kept in the spool, tried again in %.0f s): %s", path.name, RETRY_AFTER, e)
            self._requeue_due()

    def _requeue_due(self) -> None:
        now = time.monotonic()
        for p in [p for p, at in self._failed.items() if at <= now]:
            del self._failed[p]
            self._todo.put(p)

    def close(self, timeout: float = 120.0) -> int:
        """Ship what is queued (failed ones wait for the next start), then stop; returns how
        many files stay in the spool for the next start."""
        self._todo.put(None)
        self._thread.join(timeout)
        return self._todo.qsize() + len(self._failed)
