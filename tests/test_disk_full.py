"""A full disk: the daemon says which file it could not write, stops writing, damages nothing,
and picks up again by itself once there is room.

The disk is filled with RLIMIT_FSIZE (any user can set it, no mount needed): past the limit
every write to a regular file fails with EFBIG, as writes fail with ENOSPC on a full disk
(SIGXFSZ is ignored, so the write fails instead of the process dying). Raising the limit of
the running daemon with prlimit is the space coming back.
"""

from __future__ import annotations

import random
import resource
import signal
import subprocess
import threading
from pathlib import Path

from archiver.demo.site import ON_TOPIC, SampleSite

from .archive_checks import check_closed_warc, complete_members, nothing_indexed_twice, rows_point_at_records
from .test_crash import big_articles, config
from .test_daemon import EXE, archived, free_port, health, wait_for

LIMIT = 900_000  # bytes per file: the first WARC fills up after a few articles


def _small_disk() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, resource.RLIM_INFINITY))


def test_full_disk_stops_writing_names_the_path_and_recovers(tmp_path: Path):
    extra = big_articles(random.Random(7), 30)
    root = tmp_path / "archive"
    root.mkdir()
    port = free_port()
    with SampleSite(crawl_delay=0) as site:
        for a in extra:
            site.publish(a)
        cfg = config(site, root, port)
        # the daemon's stderr is a pipe, not a file: the limit must not stop its log
        proc = subprocess.Popen([str(EXE), "run", "--config", str(cfg)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, preexec_fn=_small_disk)
        lines: list[str] = []
        watchdog = threading.Timer(90, proc.kill)  # the log loop below must not wait forever
        watchdog.start()
        try:
            assert proc.stderr is not None
            for line in proc.stderr:
                lines.append(line)
                if "pass stopped" in line:
                    break
            stopped = lines[-1]
            assert "pass stopped" in stopped, "".join(lines[-20:])
            assert str(root) in stopped and "disk is full" in stopped, stopped  # names the file
            assert proc.poll() is None and health(port) == 200  # the daemon is still there
            # keep reading its log, so a full pipe never blocks it
            reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
            reader.start()

            # nothing already written is damaged: the open WARC ends on a whole record, every
            # row committed so far points at its record
            open_warc = next((root / "warc").glob("*.open"))
            assert complete_members(open_warc) == open_warc.stat().st_size
            assert rows_point_at_records(root) > 0
            archived_while_full = set(archived(root))
            assert 0 < len(archived_while_full) < len(extra)

            resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            want = {site.base_url + a.path for a in (*ON_TOPIC, *extra)}
            wait_for("every on-topic article after space came back", lambda: set(archived(root)) >= want,
                     timeout=120)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, "".join(lines[-30:])
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert not list((root / "warc").glob("*.open"))
    assert sum(check_closed_warc(p) for p in (root / "warc").glob("*.warc.gz")) > 100
    assert rows_point_at_records(root) > len(want)
    nothing_indexed_twice(root)
