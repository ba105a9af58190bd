"""The WARC records of one capture, found by offset and copied byte for byte.

An index row names where its response (or revisit) record is (file, gzip member offset,
length) and the ids of the records written with it: its request, and for a kept article
its conversion (the article text) and metadata (provenance) records. The writer puts those
right after the response, in the same file (capture.Recorder.keep writes them with nothing
in between but the resource records of a rendered page, its DOM and screenshot, linked to
the response; conversion, metadata and resource records never rotate the file). So they are
found by reading on from the response up to the last record the row names, at most
MAX_FOLLOWING records. Each is then copied as the gzip member it is on disk: a WARC of
just these members is a valid WARC whose every digest can be checked against the original.
A metadata record written later about the page (the list of its requisites, after they were
fetched) is not among them: it is no part of what the capture recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders

from .errors import StorageError
from .index import CaptureRow
from .warcfiles import WarcFiles

# records read after the response for the ones its row names (request, conversion,
# metadata, a rendered page's DOM and screenshot): a capture writes at most six
MAX_FOLLOWING = 12
COPY_CHUNK = 1 << 16


@dataclass(frozen=True)
class Member:
    """One record: the gzip member [offset, offset + length) of warc_file."""

    warc_file: str
    offset: int
    length: int
    record_type: str
    record_id: str


@dataclass
class CaptureRecords:
    members: list[Member]
    missing: list[str]  # ids the row names that were not found where they should be

    @property
    def size(self) -> int:
        return sum(m.length for m in self.members)


def capture_records(warcs: WarcFiles, row: CaptureRow, refers_to: CaptureRow | None = None) -> CaptureRecords:
    """The records of capture `row`: its response or revisit record, then the records its
    row names that follow it. With `refers_to` (the capture a revisit record refers to), that
    capture's response record comes first, so the payload the revisit vouches for travels
    with it."""
    if not row.warc_file or row.warc_offset is None or not row.warc_record_id:
        raise StorageError(f"capture {row.id} ({row.url}) has no record in a WARC")
    members: list[Member] = []
    if refers_to is not None:
        original = _own_records(warcs, refers_to, following=False)
        members += original.members
    own = _own_records(warcs, row, following=True)
    return CaptureRecords(members + own.members, own.missing)


def _own_records(warcs: WarcFiles, row: CaptureRow, following: bool) -> CaptureRecords:
    assert row.warc_file and row.warc_offset is not None and row.warc_record_id
    head = row.warc_record_id
    wanted = {i for i in (row.request_record_id, row.conversion_record_id, row.metadata_record_id) if i}
    found: list[Member] = []
    with warcs.open_record(row.warc_file, row.warc_offset, None if following else row.warc_length) as f:
        it = ArchiveIterator(f)
        base = None
        for n, rec in enumerate(it):
            h = rec.rec_headers
            rid = h.get_header("WARC-Record-ID") or ""
            it.read_to_end()
            at, length = it.get_record_offset(), it.get_record_length()
            if base is None:
                # a local file says its absolute offsets, a stream from a store counts from 0
                base = row.warc_offset - at
                if rid != head:
                    raise StorageError(f"{row.warc_file} at {row.warc_offset} holds record {rid or '(none)'}, "
                                       f"not {head} as the index says for capture {row.id}")
            elif not (rid in wanted or _linked(rec.rec_type, h, head)):
                if n >= MAX_FOLLOWING:
                    break
                continue
            found.append(Member(row.warc_file, base + at, length, rec.rec_type, rid))
            wanted.discard(rid)
            # what comes after the last named record is another capture's (or written later,
            # like the list of a page's requisites, which is not this capture's evidence)
            if not wanted or not following or n >= MAX_FOLLOWING:
                break
    if not found:
        raise StorageError(f"{row.warc_file} at {row.warc_offset} holds no record (capture {row.id})")
    return CaptureRecords(found, sorted(wanted) if following else [])


def _linked(rtype: str, headers: StatusAndHeaders, response_id: str) -> bool:
    """A resource or metadata record about the response (a rendered DOM, a screenshot)."""
    if rtype not in ("resource", "metadata"):
        return False
    return response_id in (headers.get_header("WARC-Concurrent-To"), headers.get_header("WARC-Refers-To"))


def copy_members(warcs: WarcFiles, members: list[Member]) -> Iterator[bytes]:
    """The members' bytes, as they are on disk, one after the other."""
    for m in members:
        left = m.length
        with warcs.open_record(m.warc_file, m.offset, m.length) as f:
            while left:
                chunk = f.read(min(COPY_CHUNK, left))
                if not chunk:
                    raise StorageError(f"{m.warc_file} ends inside record {m.record_id} "
                                       f"(at {m.offset}, {m.length} bytes)")
                left -= len(chunk)
                yield chunk
