"""`archiver fsck`: check the index and the WARC files against each other, and repair.

Finds index rows whose record is not where the row says (deleted with --repair: their URLs
are fetched again), response and revisit records no row points at (indexed with --repair,
with the provenance their metadata record carries), and `.open` files left by a crash
(repaired: cut after the last whole record, renamed). Rows whose record is whole in such a
file are counted apart: they are sound, and stay so once --repair has closed the file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator

from .errors import StorageError
from .index import ARCHIVED, CaptureRow, Index
from .recover import repair_open_warc
from .stores import StoreSettings, local_path
from .warc import OPEN_SUFFIX
from .warcfiles import WarcFiles


@dataclass
class Record:
    warc_file: str
    offset: int
    length: int
    rtype: str
    record_id: str
    uri: str
    date: str
    status: int | None
    payload_digest: str | None
    content_type: str | None


@dataclass
class FsckReport:
    open_files: list[str] = field(default_factory=list)
    rows_without_record: list[CaptureRow] = field(default_factory=list)
    rows_in_open_files: list[CaptureRow] = field(default_factory=list)  # record whole in a `.open` file
    records_without_row: list[Record] = field(default_factory=list)
    records_checked: int = 0
    rows_checked: int = 0
    repaired: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.open_files or self.rows_without_record or self.records_without_row)


def scan_records(root: Path) -> tuple[dict[str, Record], dict[str, dict[str, str]]]:
    """record id -> response/revisit record; response id -> fields of the metadata record about it."""
    records: dict[str, Record] = {}
    metadata: dict[str, dict[str, str]] = {}
    for path in sorted((root / "warc").glob("*.warc.gz")):
        rel = f"warc/{path.name}"
        with open(path, "rb") as f:
            it = ArchiveIterator(f)
            for rec in it:
                h = rec.rec_headers
                rid = h.get_header("WARC-Record-ID")
                if rec.rec_type in ("response", "revisit"):
                    records[rid] = Record(rel, it.get_record_offset(), 0, rec.rec_type, rid,
                                          h.get_header("WARC-Target-URI"), h.get_header("WARC-Date"),
                                          int(rec.http_headers.get_statuscode()) if rec.http_headers else None,
                                          h.get_header("WARC-Payload-Digest"),
                                          rec.http_headers.get_header("Content-Type") if rec.http_headers else None)
                    rec.raw_stream.read()
                elif rec.rec_type == "metadata":
                    # a page may have several (its provenance, its requisites): fields merge,
                    # the first of repeated fields is enough here
                    fields = metadata.setdefault(h.get_header("WARC-Refers-To"), {})
                    for line in rec.content_stream().read().decode("utf-8", "replace").splitlines():
                        name, _, value = line.partition(": ")
                        fields.setdefault(name, value)
                it.read_to_end()
                if rid in records:
                    records[rid].length = it.get_record_length()
    return records, metadata


ROW_OK, ROW_IN_OPEN_FILE, ROW_WITHOUT_RECORD = "ok", "in open file", "without record"


def _row_state(warcs: WarcFiles, row: CaptureRow) -> str:
    """Is the row's record where the row says: in a closed file, in a `.open` file (still
    being written, or left by a crash), or not at all? A file the index records in a shared
    store is read there (one ranged GET on S3); a store that cannot be reached stops fsck
    rather than count its rows as lost."""
    if not row.warc_file or row.warc_offset is None or row.warc_length is None:
        return ROW_WITHOUT_RECORD
    try:
        loc = warcs.location(row.warc_file)
    except StorageError:
        return ROW_WITHOUT_RECORD
    found = ROW_OK
    path = local_path(loc)
    if path is not None and not path.exists():
        if not path.with_name(path.name + OPEN_SUFFIX).exists():
            return ROW_WITHOUT_RECORD
        found = ROW_IN_OPEN_FILE  # read from the .open file below
    with warcs.open_record(row.warc_file, row.warc_offset, row.warc_length) as f:
        member = f.read(row.warc_length)
    try:
        rec = next(iter(ArchiveIterator(io.BytesIO(member))))
    except (StopIteration, Exception):
        return ROW_WITHOUT_RECORD
    return found if rec.rec_headers.get_header("WARC-Record-ID") == row.warc_record_id else ROW_WITHOUT_RECORD


def fsck(root: Path, index: Index, repair: bool = False, warcs: WarcFiles | None = None) -> FsckReport:
    """Check (and with `repair` mend) the storage root's WARC files and every index row.
    Records without a row are looked for in the storage root's own files only."""
    warcs = warcs or WarcFiles.for_root(root, index, StoreSettings())
    report = FsckReport()
    for p in sorted((root / "warc").glob(f"*{OPEN_SUFFIX}")):
        report.open_files.append(f"warc/{p.name}")
        if repair:
            repair_open_warc(p)
            report.repaired.append(f"repaired {p.name}")
    records, metadata = scan_records(root)
    report.records_checked = len(records)
    referenced: set[str] = set()
    for row in index.captures():
        if not row.warc_file:
            continue
        report.rows_checked += 1
        referenced.update(row.redirect_record_ids)
        state = _row_state(warcs, row)
        if state == ROW_OK:
            referenced.add(row.warc_record_id or "")
        elif state == ROW_IN_OPEN_FILE:
            report.rows_in_open_files.append(row)
        else:
            report.rows_without_record.append(row)
    report.records_without_row = [r for rid, r in records.items() if rid not in referenced]
    if repair:
        for row in report.rows_without_record:
            report.repaired.append(f"dropped row {row.id} ({row.url}): its record is not in {row.warc_file}")
        index.delete_captures([row.id for row in report.rows_without_record if row.id is not None])
        for rec in report.records_without_row:
            meta = metadata.get(rec.record_id, {})
            topics = [t.strip() for t in meta.get("topics", "").split(",") if t.strip()]
            row = CaptureRow(outlet=meta.get("outlet", "(unknown)"), kind="article" if meta else "recovered",
                             state=ARCHIVED, url=meta.get("requested-url") or rec.uri, final_url=rec.uri,
                             status=rec.status, fetched_at=rec.date, warc_file=rec.warc_file,
                             warc_offset=rec.offset, warc_length=rec.length, warc_record_id=rec.record_id,
                             payload_digest=rec.payload_digest, content_type=rec.content_type, topics=topics,
                             discovered_via_url=meta.get("via") or None,
                             discovered_via_record_id=meta.get("via-record-id") or None,
                             error="indexed again from the WARC by fsck")
            index.add(row)
            report.repaired.append(f"indexed {rec.rtype} {rec.record_id} ({rec.uri}) from {rec.warc_file}")
    return report
