"""WARC files: rotation, closing, and what every file starts with."""

from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import sys
import zlib
from datetime import datetime, timezone
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator

from archiver.warc import WarcWriter


def exchange(n: int) -> dict:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % (n * 1000)
    body = b"".join(hashlib.sha256(b"%d-%d" % (n, i)).digest() for i in range(n * 32))[: n * 1000]  # incompressible
    return dict(url=f"http://127.0.0.1/{n}", started=datetime.now(timezone.utc), ip="127.0.0.1",
                request_bytes=b"GET /%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % n, raw=io.BytesIO(head + body),
                raw_length=len(head) + len(body), block_sha1=hashlib.sha1(head + body).digest(),
                payload_sha1=hashlib.sha1(body).digest())


def test_rotation_keeps_captures_together_and_closes_every_file(tmp_path: Path):
    w = WarcWriter(tmp_path, "rot", rotate_size=5000, warcinfo={"operator": "tests", "software": "t"})
    refs = []
    for n in range(1, 6):
        req, resp = w.write_exchange(**exchange(n))
        conv = w.write_conversion(f"http://127.0.0.1/{n}", datetime.now(timezone.utc), resp.record_id, b"text")
        refs.append((req, resp, conv))
        w.flush()
    assert len(list((tmp_path / "warc").glob("*.open"))) == 1  # the file being written
    w.close()
    files = sorted((tmp_path / "warc").glob("*"))
    assert len(files) >= 3 and all(f.name.endswith(".warc.gz") for f in files)
    assert all(f.name.startswith("rot-") and len(f.name.split("-")[1]) == 17 for f in files)
    for req, resp, conv in refs:  # a capture's records never straddle two files
        assert req.warc_file == resp.warc_file == conv.warc_file
    for f in files:
        with open(f, "rb") as fh:
            recs = []
            for r in ArchiveIterator(fh, check_digests=True):
                recs.append((r.rec_type, r.content_stream().read(), r.digest_checker.passed))
        assert recs[0][0] == "warcinfo"
        assert b"operator: tests" in recs[0][1] and b"format: WARC File Format 1.1" in recs[0][1]
        assert all(passed is not False for _, _, passed in recs)


def test_each_record_is_one_standard_gzip_member_where_its_ref_says(tmp_path: Path):
    # members come from zlib-ng: what every reader has (Python's zlib, gzip, warcio) must read
    # each one alone, from the offset and length the writer returned, as the record named
    w = WarcWriter(tmp_path, "std", rotate_size=1 << 30, warcinfo={"software": "t"}, compress_level=6)
    page = b"".join(b"<p>%s</p>\n" % hashlib.sha256(b"%d" % i).hexdigest().encode() for i in range(20_000))
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % len(page)
    big = dict(exchange(3), raw=io.BytesIO(head + page), raw_length=len(head) + len(page),
               block_sha1=hashlib.sha1(head + page).digest(), payload_sha1=hashlib.sha1(page).digest())
    refs = [*w.write_exchange(**exchange(2)), *w.write_exchange(**big)]  # the big one spans several writes
    refs.append(w.write_conversion("http://127.0.0.1/3", datetime.now(timezone.utc), refs[3].record_id, b"text"))
    w.close()
    data = (tmp_path / refs[0].warc_file).read_bytes()
    assert refs[3].length > 1 << 18
    for ref in refs:
        member = data[ref.offset: ref.offset + ref.length]
        record = gzip.decompress(member)
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        assert d.decompress(member) == record and d.eof and not d.unused_data
        assert f"WARC-Record-ID: {ref.record_id}\r\n".encode() in record.split(b"\r\n\r\n", 1)[0]
    assert page in gzip.decompress(data[refs[3].offset: refs[3].offset + refs[3].length])
    check = subprocess.run([str(Path(sys.executable).with_name("warcio")), "check", str(tmp_path / refs[0].warc_file)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
