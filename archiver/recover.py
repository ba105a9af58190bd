"""Crash recovery: repair `.open` WARC files and drop index rows that point at nothing.

A process killed while writing leaves `*.warc.gz.open`. Every record in it that reached the
disk whole is a complete gzip member holding a complete WARC record; anything after the last
such member is a torn write. Repair cuts the file there, fsyncs it and drops the suffix.
Index rows are only committed after their records were flushed, so they survive repair; rows
that still point past the end of a file (a power loss can reorder writes) are deleted, which
makes their URLs candidates again on the next pass.
"""

from __future__ import annotations

import logging
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from .config import LoadedConfig
from .index import Index
from .warc import OPEN_SUFFIX

log = logging.getLogger(__name__)

_READ = 1 << 16
_CONTENT_LENGTH = re.compile(rb"\r\nContent-Length:\s*(\d+)\r\n", re.IGNORECASE)


@dataclass
class RepairReport:
    path: Path
    records: int
    kept_bytes: int
    cut_bytes: int
    removed: bool = False


def _complete_members(path: Path) -> tuple[int, int]:
    """(records, byte offset after the last complete record member)."""
    good_end = 0
    records = 0
    with open(path, "rb") as f:
        pos = 0
        while True:
            f.seek(pos)
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            head = bytearray()
            out_len = 0
            consumed = 0
            try:
                while not d.eof:
                    chunk = f.read(_READ)
                    if not chunk:
                        return records, good_end  # torn member at the end
                    out = d.decompress(chunk)
                    out_len += len(out)
                    if len(head) < _READ:
                        head += out[: _READ - len(head)]
                    consumed += len(chunk) - (len(d.unused_data) if d.eof else 0)
            except zlib.error:
                return records, good_end
            end = head.find(b"\r\n\r\n")
            m = _CONTENT_LENGTH.search(bytes(head[: end + 2])) if end > 0 else None
            if not head.startswith(b"WARC/1.") or m is None or out_len != end + 4 + int(m.group(1)) + 4:
                return records, good_end  # a member that is not one whole record
            records += 1
            pos += consumed
            good_end = pos


def repair_open_warc(path: Path) -> RepairReport:
    """Cut a `.open` WARC after its last whole record, fsync, and rename it without `.open`."""
    assert path.name.endswith(OPEN_SUFFIX)
    size = path.stat().st_size
    records, good_end = _complete_members(path)
    final = path.with_name(path.name[: -len(OPEN_SUFFIX)])
    if records == 0:
        path.unlink()  # not even the warcinfo record made it: nothing to keep
        log.warning("removed %s: no complete record in it", path)
        return RepairReport(final, 0, 0, size, removed=True)
    with open(path, "r+b") as f:
        f.truncate(good_end)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path, final)
    if size != good_end:
        log.warning("repaired %s: kept %d records (%d bytes), cut %d bytes of a torn write",
                    final.name, records, good_end, size - good_end)
    return RepairReport(final, records, good_end, size - good_end)


def repair_storage(storage_root: Path, index: Index | None = None, only_prefix: str = "") -> list[RepairReport]:
    """Repair every `.open` WARC under the storage root; then drop index rows pointing past a file.
    With `only_prefix` (a worker of a scaled setup), only files named so are this root's:
    rows naming other workers' files are left alone."""
    reports = [repair_open_warc(p) for p in sorted((storage_root / "warc").glob(f"{only_prefix}*{OPEN_SUFFIX}"))]
    if index is not None:
        dropped = drop_dangling_rows(storage_root, index, only_prefix)
        if dropped:
            log.warning("dropped %d index rows pointing at records that are not on disk; "
                        "their URLs will be fetched again", dropped)
    return reports


def drop_dangling_rows(storage_root: Path, index: Index, only_prefix: str = "") -> int:
    sizes: dict[str, int] = {}
    doomed: list[int] = []
    for span in index.record_spans():
        row_id, warc_file, offset, length = span.capture_id, span.warc_file, span.offset, span.length
        if not warc_file.startswith(f"warc/{only_prefix}"):
            continue
        if warc_file not in sizes:
            p = storage_root / warc_file
            open_p = p.with_name(p.name + OPEN_SUFFIX)
            sizes[warc_file] = p.stat().st_size if p.exists() else (open_p.stat().st_size if open_p.exists() else -1)
        if offset + length > sizes[warc_file]:
            doomed.append(row_id)
    index.delete_captures(doomed)
    return len(doomed)


def open_archive(cfg: LoadedConfig, root: Path | None = None, only_prefix: str = "") -> Index:
    """The index for writing, its schema brought up to date, after the `.open` WARCs an earlier
    run left under `root` (the storage root; a worker's spool, with its files' `only_prefix`)
    were repaired and rows pointing past their ends dropped: what every process that writes
    WARCs does before anything else (`archiver crawl`, `run`, `worker`)."""
    index = Index.open(cfg.storage_root, url=cfg.config.index.url)
    try:
        repaired = repair_storage(root or cfg.storage_root, index, only_prefix)
    except BaseException:
        index.close()
        raise
    if repaired:
        log.warning("repaired %d WARC file(s) left open by an earlier run: %s", len(repaired), ", ".join(
            f"{r.path.name} (removed: no whole record)" if r.removed else f"{r.path.name} ({r.records} records kept)"
            for r in repaired))
    return index
