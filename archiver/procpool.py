"""Extraction worker processes: HTML parsing, readability and page rendering off the main process.

Extraction is pure CPU in Python and lxml (~11 ms a page), so threads cannot spread it over
cores; worker processes can, and they keep parse trees and allocator arenas out of the
process that holds the WARC writer and the index. Workers are started lazily (a pass that
finds nothing new starts none), with the "spawn" method so they carry only what extraction
imports, and they die with the process that started them, even when that one is killed -9.

`workers: 0` runs extraction in two threads of the calling process instead.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import resource
import signal
import sys
from collections import deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from typing import Any, Callable, Iterable, Iterator, TypeVar

from . import faults
from .errors import WorkerDied

log = logging.getLogger(__name__)
T = TypeVar("T")


def default_workers() -> int:
    """One worker per core the process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _die_with_parent(parent: int) -> None:
    """Worker start-up: leave shutdown to the parent (Ctrl-C, docker stop) and die with it.
    A worker is an entry point of its own, so its crash points are armed here too."""
    faults.arm()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
        except (OSError, AttributeError):  # pragma: no cover - no prctl: orphans notice below
            pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(0)


class ExtractorPool:
    """A lazily started pool of extraction workers, shared by a pass, a dump or a verify."""

    def __init__(self, workers: int | None = None):
        self.workers = default_workers() if workers is None else workers
        self._pool: Executor | None = None
        self.restarts = 0
        self.peak_worker_mb = 0.0  # largest peak RSS of a worker, read as workers stop (Linux)
        self._quarantine: ProcessPoolExecutor | None = None  # one worker: items from a broken pool, one by one
        self._alone: Any = None  # asyncio.Lock, made inside the event loop

    def _executor(self) -> Executor:
        if self._pool is None:
            if self.workers <= 0:
                self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="extract")
            else:
                self._pool = self._processes(self.workers)
        return self._pool

    @staticmethod
    def _processes(n: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_die_with_parent, initargs=(os.getpid(),))

    def _restart(self, broken: Executor) -> None:
        # several callers may see the same broken pool; only the first replaces it
        if self._pool is broken:
            self.restarts += 1
            self._note_peaks(broken)
            log.warning("an extraction worker died; starting a new pool (restart %d)", self.restarts)
            broken.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(*args) in a worker. A worker that dies breaks the whole pool and every item
        queued in it, so each of those is run again alone, in a one-worker pool kept for that:
        the item that kills the worker there is the culprit and raises WorkerDied; the others
        come back as if nothing had happened."""
        import asyncio  # here, not at the top: workers import this module and need no event loop

        loop = asyncio.get_running_loop()
        pool = self._executor()
        try:
            return await loop.run_in_executor(pool, fn, *args)
        except BrokenProcessPool:
            self._restart(pool)
        if self._alone is None:
            self._alone = asyncio.Lock()
        async with self._alone:
            if self._quarantine is None:
                self._quarantine = self._processes(1)
            quarantine = self._quarantine
            try:
                return await loop.run_in_executor(quarantine, fn, *args)
            except BrokenProcessPool:
                self._note_peaks(quarantine)
                quarantine.shutdown(wait=False, cancel_futures=True)
                self._quarantine = None
                raise WorkerDied(f"extraction worker died on this item, alone in its pool ({fn.__name__})") from None

    def map(self, fn: Callable[..., T], items: Iterable[tuple[Any, ...]], chunksize: int = 8) -> Iterator[T]:
        """fn(*item) for every item, results in order, workers in parallel (for dump and verify).
        Items are read and submitted a few chunks ahead of the results taken, not all at once,
        so memory stays flat however many there are."""
        pool = self._executor()
        if not isinstance(pool, ProcessPoolExecutor):
            yield from (fn(*item) for item in items)
            return
        ahead: deque[Future[list[T]]] = deque()
        it = iter(items)
        while True:
            while len(ahead) < 2 * self.workers:
                chunk = list(islice(it, chunksize))
                if not chunk:
                    break
                ahead.append(pool.submit(_run_chunk, fn, chunk))
            if not ahead:
                return
            try:
                done = ahead.popleft().result()
            except BrokenProcessPool:
                self._restart(pool)
                raise WorkerDied(f"an extraction worker died ({fn.__name__}); nothing after this item was "
                                 f"processed") from None
            yield from done

    def shutdown(self) -> None:
        for pool in (self._pool, self._quarantine):
            if pool is not None:
                self._note_peaks(pool)
                pool.shutdown(wait=True, cancel_futures=True)
        self._pool = self._quarantine = None

    def _note_peaks(self, pool: Executor) -> None:
        # getrusage(RUSAGE_CHILDREN) would count the parent's pages each child held between
        # fork and exec; the kernel's VmHWM is the worker's own high-water mark
        for pid in list(getattr(pool, "_processes", None) or {}):
            self.peak_worker_mb = max(self.peak_worker_mb, _vm_hwm_mb(pid) or 0.0)

    def __enter__(self) -> "ExtractorPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _run_chunk(fn: Callable[..., T], chunk: list[tuple[Any, ...]]) -> list[T]:
    return [fn(*args) for args in chunk]


def _vm_hwm_mb(pid: int | str) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss_mb() -> float:
    """Peak RSS of this process in MB. On Linux the kernel's VmHWM: getrusage's ru_maxrss
    survives exec, so a process started by a big parent would report the parent's size."""
    hwm = _vm_hwm_mb("self")
    if hwm is not None:
        return hwm
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
