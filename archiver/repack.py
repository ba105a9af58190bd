"""Some captures of an archive as WARC files of their own: each capture's records found in
the WARC files they were written to and copied byte for byte, gzip member by member.

A capture's records are its response (or revisit, or resource) record, the redirect hops
its row names, and every request, resource (rendered DOM, screenshot), conversion and
metadata record naming one of those in WARC-Concurrent-To or WARC-Refers-To: what the
writer puts beside a response (warc.py, capture.py). A revisit names the capture it repeats
in WARC-Refers-To too, but it is a capture of its own: responses and revisits are only ever
taken because an index row names them, never for what they refer to.

Every copied record keeps its WARC-Warcinfo-ID, so the warcinfo records they name are
copied too. Each new file holds the records of one source file, in their order there,
after a new warcinfo record that describes the export and names that source.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Iterable

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed

from .clock import warc_date
from .errors import ExportError, StorageError
from .index import CaptureRow
from .stores import local_copy, local_path
from .warc import new_record_id, sha1_b32
from .warcfiles import WarcFiles

# record types that belong to the response (or revisit, or resource) they name
_BESIDE = ("request", "resource", "conversion", "metadata")
_WARC_NAME = re.compile(r"^(?P<prefix>.+)-\d{17}-\d{5}\.warc\.gz$")  # WarcWriter's file names


@dataclass(frozen=True)
class Member:
    """One record of a source WARC file: the gzip member at [offset, offset + length)."""

    warc_file: str  # the file's base name
    offset: int
    length: int
    rtype: str
    record_id: str
    uri: str
    links: tuple[str, ...]  # the record ids its WARC-Concurrent-To and WARC-Refers-To name
    warcinfo_id: str | None


@dataclass
class SourceRecords:
    """The records of the source files read so far, by id and by the ids they name."""

    warcs: WarcFiles
    scratch: Path
    by_id: dict[str, Member] = field(default_factory=dict)
    by_place: dict[tuple[str, int], Member] = field(default_factory=dict)
    naming: dict[str, list[Member]] = field(default_factory=lambda: defaultdict(list))
    first: dict[str, Member] = field(default_factory=dict)  # file -> its first record
    scanned: set[str] = field(default_factory=set)

    def scan(self, name: str) -> None:
        """Read the record headers of file `name` (once)."""
        base = Path(name).name
        if base in self.scanned:
            return
        try:
            loc = self.warcs.location(base)
        except StorageError as e:
            raise ExportError(f"WARC {base} named by the index cannot be found: {e}") from None
        path = local_path(loc)
        if path is not None and not path.exists():
            raise ExportError(f"{path}.open is still being written; stop the daemon or wait for it to close the file")
        try:
            with local_copy(loc, self.warcs.settings, scratch=self.scratch) as local, open(local, "rb") as f:
                members = list(_members(f, base))
        except (ArchiveLoadFailed, OSError, ValueError, zlib.error) as e:
            raise ExportError(f"WARC {base} cannot be read: {e}") from None
        self.scanned.add(base)
        for m in members:
            self.by_id.setdefault(m.record_id, m)
            self.by_place[(base, m.offset)] = m
            for target in m.links:
                self.naming[target].append(m)
        if members:
            self.first[base] = members[0]


def _members(f: IO[bytes], base: str) -> Iterable[Member]:
    it = ArchiveIterator(f, no_record_parse=True)
    for rec in it:
        h = rec.rec_headers
        links = tuple(v.strip() for k, v in h.headers if k.lower() in ("warc-concurrent-to", "warc-refers-to"))
        it.read_to_end(rec)
        yield Member(base, it.get_record_offset(), it.get_record_length(), rec.rec_type,
                     (h.get_header("WARC-Record-ID") or "").strip(), h.get_header("WARC-Target-URI") or "", links,
                     h.get_header("WARC-Warcinfo-ID"))


class Repack:
    """Collects the records of captures (add), then writes them as new WARC files (write)."""

    def __init__(self, warcs: WarcFiles, scratch: Path):
        self.warcs = warcs
        self.source = SourceRecords(warcs, scratch)
        self.chosen: dict[tuple[str, int], Member] = {}
        self._names: list[str] | None = None
        self._heads: set[str] = set()  # record ids of the captures' responses and redirect hops
        self.copied = 0  # records written by write(), the source files' warcinfo records among them

    def add(self, row: CaptureRow) -> None:
        """The records of the capture `row`: where the index says its record is, and beside it."""
        if not (row.warc_file and row.warc_offset is not None and row.warc_record_id):
            raise ExportError(f"capture {row.id} ({row.url}) has no WARC record to export")
        base = Path(row.warc_file).name
        self.source.scan(base)
        own = self.source.by_place.get((base, row.warc_offset))
        if own is None or own.record_id != row.warc_record_id:
            there = f"a {own.rtype} record {own.record_id}" if own else "no record starting there"
            raise ExportError(f"capture {row.id} ({row.url}): the index puts record {row.warc_record_id} at "
                              f"{base}@{row.warc_offset}, the file has {there}")
        heads = [row.warc_record_id, *row.redirect_record_ids]
        expected = {i for i in (row.request_record_id, row.conversion_record_id, row.metadata_record_id) if i}
        expected.update(row.redirect_record_ids)
        missing = self._missing(heads, expected)
        if missing:
            # a capture's records can straddle a rotation of the file they were written to
            for name in self._neighbours(base):
                self.source.scan(name)
            missing = self._missing(heads, expected)
        if missing:
            raise ExportError(f"capture {row.id} ({row.url}): records {', '.join(sorted(missing))} it names are not "
                              f"in {base} or the files written before and after it")
        self._take(own)
        # what names them is gathered by write(), over every file read by then: a page's list of
        # requisites is written after them, into the file of the last one
        self._heads.update(heads)

    def _missing(self, heads: list[str], expected: set[str]) -> set[str]:
        found = {h for h in heads if h in self.source.by_id}
        found.update(m.record_id for h in heads for m in self.source.naming.get(h, ()))
        return expected - found

    def _take(self, m: Member) -> None:
        self.chosen[(m.warc_file, m.offset)] = m

    def _neighbours(self, base: str) -> list[str]:
        """The files the same writer wrote just before and after `base`."""
        if self._names is None:
            self._names = [n for n, _ in self.warcs.all_closed()]
        match = _WARC_NAME.match(base)
        if match is None or base not in self._names:
            return []
        same = [n for n in self._names if (m := _WARC_NAME.match(n)) and m["prefix"] == match["prefix"]]
        i = same.index(base)
        return same[max(i - 1, 0):i] + same[i + 1:i + 2]

    def write(self, folder: Path, prefix: str, fields: dict[str, str]) -> list[Path]:
        """One new WARC file in `folder` per source file (named `prefix` + the source's name):
        a warcinfo record with `fields` and the source's name, then the source's warcinfo
        records the chosen ones name, then the chosen records, in the source's order."""
        for head in sorted(self._heads):
            if head in self.source.by_id:
                self._take(self.source.by_id[head])
            for m in self.source.naming.get(head, ()):
                if m.rtype in _BESIDE:
                    self._take(m)
        by_file: dict[str, list[Member]] = defaultdict(list)
        for m in self.chosen.values():
            by_file[m.warc_file].append(m)
        written = []
        for base in sorted(by_file):
            members = by_file[base]
            infos = {m.warcinfo_id for m in members if m.warcinfo_id}
            keep = {(m.warc_file, m.offset): m for m in members}
            first = self.source.first.get(base)
            if first is not None and first.rtype == "warcinfo":
                keep.setdefault((base, first.offset), first)
            for rid in infos:
                info = self.source.by_id.get(rid)
                if info is not None and info.rtype == "warcinfo" and info.warc_file == base:
                    keep.setdefault((base, info.offset), info)
            path = folder / f"{prefix}{base}"
            with open(path, "xb") as out:
                out.write(warcinfo_member(path.name, {**fields, "source-warc": base}))
                for m in sorted(keep.values(), key=lambda m: m.offset):
                    self._copy(m, out)
                    self.copied += 1
            written.append(path)
        return written

    def _copy(self, m: Member, out: IO[bytes]) -> None:
        with self.warcs.open_record(m.warc_file, m.offset, m.length) as f:
            left = m.length
            while left:
                chunk = f.read(min(left, 1 << 20))
                if not chunk:
                    raise ExportError(f"WARC {m.warc_file}: record {m.record_id} at {m.offset} ends after "
                                      f"{m.length - left} of its {m.length} bytes")
                out.write(chunk)
                left -= len(chunk)


def warcinfo_member(filename: str, fields: dict[str, str]) -> bytes:
    """A warcinfo record (WARC/1.1, application/warc-fields) as one gzip member."""
    body = "".join(f"{k}: {' '.join(str(v).split())}\r\n" for k, v in fields.items() if v).encode("utf-8")
    head = ["WARC/1.1", "WARC-Type: warcinfo", f"WARC-Record-ID: {new_record_id()}",
            f"WARC-Date: {warc_date(datetime.now(timezone.utc))}", f"WARC-Filename: {filename}",
            "Content-Type: application/warc-fields", f"WARC-Block-Digest: {sha1_b32(hashlib.sha1(body).digest())}",
            f"Content-Length: {len(body)}"]
    comp = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return comp.compress(("\r\n".join(head) + "\r\n\r\n").encode("utf-8") + body + b"\r\n\r\n") + comp.flush()
