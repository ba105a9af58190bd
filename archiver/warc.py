"""WARC/1.1 writing: one gzip member per record, `.open` while being written, size rotation.

Records are serialised here rather than through warcio's writer because warcio re-serialises
HTTP headers from its parsed form (not byte-exact) and re-reads payloads to hash them; the
fetcher has already hashed the exact bytes as they arrived. Everything written is read back
with warcio (tests, `fsck`, replay), and the layout follows warcio/wget conventions: SHA-1
digests in base32, `WARC-Concurrent-To` linking request and response, a warcinfo record first.

Crash safety: a file is named `*.warc.gz.open` until `close()` flushes, fsyncs and renames it;
a caller commits an index row only after `flush()` returned for the records it names.

Members are deflated with zlib-ng at the configured level: standard gzip that every zlib reads,
about as small as zlib's at the same level, in ~60% of zlib's CPU on pages and ~1/6 on the
small records (zlib's per-stream setup costs ~80 us, a request record's whole deflate ~10 us).
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Callable, Iterable

from warcio.archiveiterator import ArchiveIterator
from zlib_ng import zlib_ng

from . import faults
from .errors import StorageError, os_reason
from .clock import timestamp17, warc_date
from .stores import OPEN_SUFFIX, fsync_dir

COPY_CHUNK = 1 << 16
WRITE_CHUNK = 1 << 18  # compressed bytes gathered before a write() call


def sha1_b32(digest: bytes) -> str:
    return "sha1:" + base64.b32encode(digest).decode("ascii")


def new_record_id() -> str:
    return f"<urn:uuid:{uuid.uuid4()}>"


@dataclass(frozen=True)
class RecordRef:
    """Where a record lives: file (relative to the storage root), gzip member offset and length."""

    warc_file: str
    offset: int
    length: int
    record_id: str


class WarcWriter:
    """Appends records to rotating WARC files under `storage_root/subdir`."""

    def __init__(self, storage_root: Path, prefix: str, rotate_size: int, warcinfo: dict[str, str],
                 compress_level: int = 6, subdir: str = "warc", on_close: Callable[[Path], None] | None = None):
        self.storage_root = storage_root
        self.directory = storage_root / subdir
        self.subdir = subdir
        self.prefix = prefix
        self.rotate_size = rotate_size
        self.level = compress_level
        self.warcinfo_fields = warcinfo
        self._serial = 0
        self._file: IO[bytes] | None = None
        self._name: str | None = None
        self._warcinfo_id: str | None = None
        self.closed_files: list[str] = []
        self.on_close = on_close  # told of every file closed (scaled setups)
        self.bytes_written = 0
        self.last_write = 0.0  # time.monotonic() of the last record

    # ------------------------------------------------------------------ files

    @property
    def current_name(self) -> str | None:
        return self._name

    @property
    def is_open(self) -> bool:
        return self._file is not None

    def _open(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"cannot create WARC folder {self.directory}: {os_reason(e)}") from None
        while True:
            now = datetime.now(timezone.utc)
            name = f"{self.prefix}-{timestamp17(now)}-{self._serial:05d}.warc.gz"
            self._serial += 1
            path = self.directory / name
            if not path.exists() and not (self.directory / (name + OPEN_SUFFIX)).exists():
                break
        try:
            # unbuffered: each record is handed to the OS whole when it ends, and after a failed
            # write (disk full) the file is exactly what the kernel has, so it can be cut back
            self._file = open(self.directory / (name + OPEN_SUFFIX), "xb", buffering=0)
        except OSError as e:
            raise StorageError(f"cannot create WARC file {path}{OPEN_SUFFIX}: {os_reason(e)}") from None
        self._name = name
        fields = {"software": "", "format": "WARC File Format 1.1",
                  "conformsTo": "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/",
                  "hostname": socket.gethostname()}
        fields.update(self.warcinfo_fields)
        body = "".join(f"{k}: {v}\r\n" for k, v in fields.items() if v).encode("utf-8")
        self._warcinfo_id = new_record_id()
        try:
            self._write(self._warcinfo_id, [("WARC-Type", "warcinfo"), ("WARC-Record-ID", self._warcinfo_id),
                                            ("WARC-Date", warc_date(now)), ("WARC-Filename", name),
                                            ("Content-Type", "application/warc-fields"),
                                            ("WARC-Block-Digest", sha1_b32(hashlib.sha1(body).digest()))],
                        [body], len(body))
        except StorageError:
            # a file without its warcinfo is no use: next time starts a fresh one
            f, self._file, self._name = self._file, None, None
            assert f is not None
            f.close()
            (self.directory / (name + OPEN_SUFFIX)).unlink(missing_ok=True)
            raise

    def _ensure_open(self, may_rotate: bool = False) -> None:
        # rotation only at the start of a capture keeps its records together in one file
        if self._file is None:
            self._open()
        elif may_rotate and self._file.tell() >= self.rotate_size:
            self.close()
            self._open()

    def flush(self) -> None:
        """Records are handed to the OS as each one ends (the file is unbuffered), so they
        already survive the process being killed; kept so callers state the ordering."""

    def close(self) -> None:
        """Flush, fsync and drop the `.open` suffix."""
        if self._file is None:
            return
        f, name = self._file, self._name
        assert name is not None
        self._file = self._name = None
        try:
            os.fsync(f.fileno())
            f.close()
            faults.reached("rotation")
            os.replace(self.directory / (name + OPEN_SUFFIX), self.directory / name)
            fsync_dir(self.directory)
        except OSError as e:
            raise StorageError(f"cannot close WARC file {self.directory / name}: {os_reason(e)}") from None
        self.closed_files.append(f"{self.subdir}/{name}")
        if self.on_close is not None:
            self.on_close(self.directory / name)

    # ------------------------------------------------------------------ records

    def _write(self, record_id: str, headers: list[tuple[str, str]], chunks: Iterable[bytes],
               length: int) -> RecordRef:
        f = self._file
        assert f is not None and self._name is not None
        comp = zlib_ng.compressobj(self.level, zlib_ng.DEFLATED, 16 + zlib_ng.MAX_WBITS)
        start = f.tell()
        out = [comp.compress(_head_bytes(headers, length))]
        size = len(out[0])
        try:
            written = 0
            for chunk in chunks:
                written += len(chunk)
                piece = comp.compress(chunk)
                if piece:
                    out.append(piece)
                    size += len(piece)
                if size >= WRITE_CHUNK:
                    self._put(f, out)
                    out, size = [], 0
            if written != length:
                raise StorageError(f"record {record_id} declared {length} bytes but {written} were supplied")
            out.append(comp.compress(b"\r\n\r\n"))
            out.append(comp.flush())
            self._put(f, out)
        except OSError as e:
            # a partial gzip member would corrupt the file for every reader: cut it off
            try:
                f.truncate(start)
                f.seek(start)
            except OSError:
                pass
            raise StorageError(f"cannot write WARC file {self.directory / (self._name + OPEN_SUFFIX)}: "
                               f"{os_reason(e)}") from None
        end = f.tell()
        self.bytes_written += end - start
        self.last_write = time.monotonic()
        return RecordRef(f"{self.subdir}/{self._name}", start, end - start, record_id)

    @staticmethod
    def _put(f: IO[bytes], pieces: list[bytes]) -> None:
        data = b"".join(pieces)
        if faults.ARMED:
            faults.reached("warc-write", lambda: _write_all(f, data[: len(data) // 2]))
        _write_all(f, data)

    def _common(self, rtype: str, uri: str | None, date: str, record_id: str) -> list[tuple[str, str]]:
        h = [("WARC-Type", rtype), ("WARC-Record-ID", record_id), ("WARC-Date", date)]
        if uri:
            h.append(("WARC-Target-URI", uri))
        if self._warcinfo_id:
            h.append(("WARC-Warcinfo-ID", self._warcinfo_id))
        return h

    def write_exchange(self, url: str, started: datetime, ip: str | None, request_bytes: bytes,
                       raw: IO[bytes], raw_length: int, block_sha1: bytes, payload_sha1: bytes,
                       truncated: str | None = None) -> tuple[RecordRef, RecordRef]:
        """A request + response pair; returns (request ref, response ref)."""
        self._ensure_open(may_rotate=True)
        req_id, resp_id = new_record_id(), new_record_id()
        date = warc_date(started)
        h = self._common("response", url, date, resp_id)
        if ip:
            h.append(("WARC-IP-Address", ip))
        h.append(("WARC-Concurrent-To", req_id))
        h.append(("Content-Type", "application/http;msgtype=response"))
        h.append(("WARC-Block-Digest", sha1_b32(block_sha1)))
        h.append(("WARC-Payload-Digest", sha1_b32(payload_sha1)))
        if truncated:
            h.append(("WARC-Truncated", truncated))
        raw.seek(0)
        resp_ref = self._write(resp_id, h, iter(lambda: raw.read(COPY_CHUNK), b""), raw_length)
        q = self._common("request", url, date, req_id)
        if ip:
            q.append(("WARC-IP-Address", ip))
        q.append(("WARC-Concurrent-To", resp_id))
        q.append(("Content-Type", "application/http;msgtype=request"))
        q.append(("WARC-Block-Digest", sha1_b32(hashlib.sha1(request_bytes).digest())))
        req_ref = self._write(req_id, q, [request_bytes], len(request_bytes))
        return req_ref, resp_ref

    def write_revisit(self, url: str, started: datetime, ip: str | None, request_bytes: bytes, head: bytes,
                      profile: str, refers_to: str, refers_to_uri: str, refers_to_date: str,
                      payload_digest: str) -> tuple[RecordRef, RecordRef]:
        """A revisit record (HTTP headers only) + its request; profile is
        'server-not-modified' (a 304) or 'identical-payload-digest' (same body as before)."""
        self._ensure_open(may_rotate=True)
        req_id, rev_id = new_record_id(), new_record_id()
        date = warc_date(started)
        h = self._common("revisit", url, date, rev_id)
        if ip:
            h.append(("WARC-IP-Address", ip))
        h += [("WARC-Concurrent-To", req_id), ("Content-Type", "application/http;msgtype=response"),
              ("WARC-Profile", f"http://netpreserve.org/warc/1.1/revisit/{profile}"),
              ("WARC-Refers-To", refers_to), ("WARC-Refers-To-Target-URI", refers_to_uri),
              ("WARC-Refers-To-Date", refers_to_date), ("WARC-Payload-Digest", payload_digest),
              ("WARC-Block-Digest", sha1_b32(hashlib.sha1(head).digest()))]
        rev_ref = self._write(rev_id, h, [head], len(head))
        q = self._common("request", url, date, req_id)
        if ip:
            q.append(("WARC-IP-Address", ip))
        q += [("WARC-Concurrent-To", rev_id), ("Content-Type", "application/http;msgtype=request"),
              ("WARC-Block-Digest", sha1_b32(hashlib.sha1(request_bytes).digest()))]
        return self._write(req_id, q, [request_bytes], len(request_bytes)), rev_ref

    def write_conversion(self, url: str, date: datetime, refers_to: str, text: bytes,
                         content_type: str = "text/plain; charset=utf-8") -> RecordRef:
        self._ensure_open()
        record_id = new_record_id()
        h = self._common("conversion", url, warc_date(date), record_id)
        h.append(("WARC-Refers-To", refers_to))
        h.append(("Content-Type", content_type))
        digest = sha1_b32(hashlib.sha1(text).digest())
        h.append(("WARC-Block-Digest", digest))
        h.append(("WARC-Payload-Digest", digest))
        return self._write(record_id, h, [text], len(text))

    def write_resource(self, uri: str, date: datetime, content_type: str, data: bytes,
                       concurrent_to: str | None = None) -> RecordRef:
        """A resource record: something archiver made of a capture rather than an exchange
        (a rendered DOM as `urn:dom:<url>`, a screenshot as `urn:screenshot:<url>`), linked to
        the response it was made from. Never rotates: it stays in the file of that response."""
        self._ensure_open()
        record_id = new_record_id()
        h = self._common("resource", uri, warc_date(date), record_id)
        if concurrent_to:
            h.append(("WARC-Concurrent-To", concurrent_to))
        h.append(("Content-Type", content_type))
        digest = sha1_b32(hashlib.sha1(data).digest())
        h.append(("WARC-Block-Digest", digest))
        h.append(("WARC-Payload-Digest", digest))
        return self._write(record_id, h, [data], len(data))

    def write_metadata(self, url: str, date: datetime, refers_to: str,
                       fields: list[tuple[str, str]]) -> RecordRef:
        """Provenance as application/warc-fields (replay tools do not index those as pages)."""
        self._ensure_open()
        record_id = new_record_id()
        h = self._common("metadata", url, warc_date(date), record_id)
        h.append(("WARC-Refers-To", refers_to))
        h.append(("Content-Type", "application/warc-fields"))
        body = "".join(f"{k}: {_field_value(v)}\r\n" for k, v in fields).encode("utf-8")
        h.append(("WARC-Block-Digest", sha1_b32(hashlib.sha1(body).digest())))
        return self._write(record_id, h, [body], len(body))


def read_payload(f: IO[bytes], max_bytes: int) -> tuple[object, bytes]:
    """(HTTP headers, entity body with transfer and content encodings removed) of the record
    the stream is at (WarcFiles.open_record)."""
    rec = next(iter(ArchiveIterator(f)))
    return rec.http_headers, rec.content_stream().read(max_bytes)


def existing(path: Path) -> Path:
    """A WARC by its final name, or by its `.open` name while it is still being written."""
    if path.exists():
        return path
    open_path = path.with_name(path.name + OPEN_SUFFIX)
    return open_path if open_path.exists() else path


def _head_bytes(headers: list[tuple[str, str]], length: int) -> bytes:
    return ("WARC/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
            + f"Content-Length: {length}\r\n\r\n").encode("utf-8")


def _write_all(f: IO[bytes], data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        n = f.write(view)
        if n is None:  # pragma: no cover - only non-blocking files return None
            continue
        view = view[n:]


def _field_value(v: str) -> str:
    return " ".join(str(v).split())
