"""What "nothing lost, nothing corrupt" means, as checks any crash or disk test can run.

They read the archive the way a user's tools do: WARC files with warcio (and `warcio check`),
the index through a read-only SQLite connection.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import sys
import zlib
from collections import Counter
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator

from archiver.index import Index
from archiver.warc import existing


def check_closed_warc(path: Path) -> int:
    """`warcio check` passes and every record's digests verify; returns the record count."""
    warcio = Path(sys.executable).with_name("warcio")
    check = subprocess.run([str(warcio), "check", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    n = 0
    with open(path, "rb") as f:
        for rec in ArchiveIterator(f, check_digests=True):
            rec.content_stream().read()
            assert rec.digest_checker.passed is not False, (path, rec.rec_headers.get_header("WARC-Record-ID"))
            n += 1
    return n


def complete_members(path: Path) -> int:
    """Bytes of `path` made of whole gzip members (an `.open` file may end in a torn one)."""
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            d.decompress(data[pos:])
        except zlib.error:
            break
        if not d.eof:
            break
        pos = len(data) - len(d.unused_data)
    return pos


def rows_point_at_records(root: Path) -> int:
    """Every index row that names a record finds it (in a closed or still open file) with the
    row's URL and payload digest; returns how many rows were checked."""
    n = 0
    with Index.open(root, readonly=True) as idx:
        for row in idx.captures():
            if not row.warc_file:
                continue
            with open(existing(root / row.warc_file), "rb") as f:
                f.seek(row.warc_offset)
                member = f.read(row.warc_length)
            rec = next(iter(ArchiveIterator(io.BytesIO(member))))
            assert rec.rec_headers.get_header("WARC-Record-ID") == row.warc_record_id, row
            assert rec.rec_headers.get_header("WARC-Target-URI") == row.final_url, row
            assert rec.rec_headers.get_header("WARC-Payload-Digest") == row.payload_digest, row
            n += 1
    return n


def nothing_indexed_twice(root: Path) -> None:
    with Index.open(root, readonly=True) as idx:
        rows = list(idx.captures())
    records = Counter(r.warc_record_id for r in rows if r.warc_record_id)
    assert not [k for k, v in records.items() if v > 1], "a record is indexed twice"
    articles = Counter(r.final_url for r in rows if r.kind == "article" and r.state == "archived")
    assert not [k for k, v in articles.items() if v > 1], [k for k, v in articles.items() if v > 1]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def warc_text(root: Path) -> bytes:
    """Everything in every WARC (closed or open), decompressed, for "never stored" checks."""
    out = []
    for p in sorted((root / "warc").iterdir()):
        data = p.read_bytes()[: complete_members(p)] if p.name.endswith(".open") else p.read_bytes()
        out.append(gzip.decompress(data) if data else b"")
    return b"".join(out)
