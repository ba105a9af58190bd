"""Shipping closed WARC files to shared storage and reading them back from there: a mounted
folder, and an S3-compatible store (moto's server on loopback, real HTTP)."""

from __future__ import annotations

import hashlib
import io
from dataclasses import asdict
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from archiver import schema
from archiver.errors import StorageError
from archiver.index import Index
from archiver.scale.ship import Shipper, adopt_spool, ship_file
from archiver.stores import FolderStore, S3Store, StoreSettings, file_sha256, local_copy, store_for
from archiver.warc import read_payload
from archiver.warcfiles import WarcFiles


def _warc(path: Path, bodies: list[bytes]) -> list[tuple[int, int, str]]:
    """A real WARC of responses; returns (offset, length, record id) of each."""
    with open(path, "wb") as f:
        w = WARCWriter(f, gzip=True)
        for i, body in enumerate(bodies):
            http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
            w.write_record(w.create_warc_record(f"http://example.test/{i}", "response",
                                                payload=io.BytesIO(body), http_headers=http))
    out = []
    with open(path, "rb") as f:
        it = ArchiveIterator(f)
        for rec in it:
            rid = rec.rec_headers.get_header("WARC-Record-ID")
            it.read_to_end()
            out.append((it.get_record_offset(), it.get_record_length(), rid))
    return out


def _record(index: Index, path: Path, worker: str = "w1", state: str = "closed", location: str | None = None) -> None:
    with index.transaction() as c:
        c.execute(schema.warc_files.insert().values(
            name=path.name, worker=worker, location=location or path.resolve().as_uri(), state=state,
            size=path.stat().st_size if path.exists() else 0, updated_at="2026-01-01T00:00:00Z"))


def _files(index: Index) -> dict[str, dict]:
    return {f.name: asdict(f) for f in index.warc_files()}


def test_a_shipped_file_is_read_from_the_shared_folder_once_the_spool_copy_is_gone(tmp_path: Path):
    spool, shared = tmp_path / "spool" / "warc", tmp_path / "shared"
    spool.mkdir(parents=True)
    f = spool / "archiver-w1-20260101000000000-00000.warc.gz"
    recs = _warc(f, [b"<p>first</p>", b"<p>second page</p>"])
    original = f.read_bytes()
    with Index.open(tmp_path / "idx") as index:
        _record(index, f)
        reader = WarcFiles([tmp_path / "other-machine"], index, StoreSettings())
        stale = reader.location(f.name)  # a reader that looked the file up before it moved
        assert stale == f.resolve().as_uri()
        where = ship_file(index, FolderStore(shared), f)
        assert where == (shared / f.name).resolve().as_uri()
        assert not f.exists() and (shared / f.name).read_bytes() == original
        assert not list(shared.glob(".*partial"))
        row = _files(index)[f.name]
        assert row["state"] == "shipped" and row["location"] == where
        assert (row["sha256"], row["size"]) == (hashlib.sha256(original).hexdigest(), len(original))
        offset, length, rid = recs[1]
        with reader.open_record(f.name, offset, length) as stream:  # stale location: looked up again
            _, body = read_payload(stream, 1000)
        assert body == b"<p>second page</p>"


def test_a_copy_that_does_not_match_is_refused_and_the_spool_keeps_the_file(tmp_path: Path):
    f = tmp_path / "a.warc.gz"
    _warc(f, [b"x"])
    with pytest.raises(StorageError) as e:
        FolderStore(tmp_path / "shared").put(f, f.name, "0" * 64)
    assert "differs" in str(e.value) and f.name in str(e.value)
    assert f.exists() and not list((tmp_path / "shared").iterdir())


def test_s3_upload_ranged_reads_and_download(s3_server, tmp_path: Path):
    bucket = s3_server.new_bucket()
    settings = StoreSettings(ship_to=f"s3://{bucket}/warc", s3_endpoint=s3_server.endpoint)
    store = store_for(settings)
    assert isinstance(store, S3Store)
    f = tmp_path / "archiver-w2-20260101000000000-00003.warc.gz"
    bodies = [b"<p>one</p>" * 50, b"<p>two</p>" * 2000, b"<p>three</p>"]
    recs = _warc(f, bodies)
    sha, size = file_sha256(f)
    where = store.put(f, f.name, sha)
    assert where == f"s3://{bucket}/warc/{f.name}"
    head = s3_server.client().head_object(Bucket=bucket, Key=f"warc/{f.name}")
    assert head["ContentLength"] == size and head["Metadata"]["sha256"] == sha
    with Index.open(tmp_path / "idx") as index:
        _record(index, f, state="shipped", location=where)
        reader = WarcFiles([tmp_path / "elsewhere"], index, settings)
        for (offset, length, rid), body in zip(recs, bodies):
            with reader.open_record(f.name, offset, length) as stream:
                _, got = read_payload(stream, 1 << 20)
            assert got == body
        with reader.open_record(f.name, recs[2][0], None) as stream:  # length unknown: open-ended range
            _, got = read_payload(stream, 1 << 20)
        assert got == bodies[2]
        with local_copy(where, settings, scratch=tmp_path) as copy:
            assert copy.read_bytes() == f.read_bytes()
        assert not list(tmp_path.glob(".download-*"))


def test_s3_errors_name_the_file_and_the_reason(s3_server, tmp_path: Path):
    f = tmp_path / "a.warc.gz"
    _warc(f, [b"x"])
    settings = StoreSettings(ship_to="s3://no-such-bucket/warc", s3_endpoint=s3_server.endpoint)
    with pytest.raises(StorageError) as e:
        store_for(settings).put(f, f.name, file_sha256(f)[0])
    assert "a.warc.gz" in str(e.value) and "no-such-bucket" in str(e.value) and "NoSuchBucket" in str(e.value)


def test_a_worker_restarting_after_a_kill_ships_what_its_last_run_left(s3_server, tmp_path: Path):
    # three states a kill can leave: closed but not recorded (killed right after the close),
    # recorded but not shipped, shipped but the spool copy not yet removed
    bucket = s3_server.new_bucket()
    settings = StoreSettings(ship_to=f"s3://{bucket}/warc", s3_endpoint=s3_server.endpoint)
    spool = tmp_path / "spool" / "w1" / "warc"
    spool.mkdir(parents=True)
    unrecorded, unshipped, shipped = (spool / f"archiver-w1-2026010100000000{i}-0000{i}.warc.gz" for i in range(3))
    for p in (unrecorded, unshipped, shipped):
        _warc(p, [p.name.encode()])
    with Index.open(tmp_path / "idx") as index:
        _record(index, unshipped)
        store = store_for(settings)
        assert store is not None
        done = ship_file(index, store, shipped)
        _warc(shipped, [shipped.name.encode()])  # as if the unlink had not happened
        shipper = Shipper(index, store, "w1")

        def record(p: Path) -> None:
            _record(index, p)
            shipper.submit(p)

        adopt_spool(index, "w1", spool, record, shipper)
        assert shipper.close(timeout=60) == 0
        files = _files(index)
        assert not list(spool.iterdir())
        assert {n: r["state"] for n, r in files.items()} == {p.name: "shipped" for p in (unrecorded, unshipped, shipped)}
        assert files[shipped.name]["location"] == done
        listed = s3_server.client().list_objects_v2(Bucket=bucket, Prefix="warc/")["Contents"]
        assert sorted(o["Key"] for o in listed) == sorted(f"warc/{p.name}" for p in (unrecorded, unshipped, shipped))


def test_a_store_that_is_down_costs_retries_not_files(tmp_path: Path):
    # nothing listens on this endpoint: the file stays in the spool and recorded as closed
    settings = StoreSettings(ship_to="s3://archive/warc", s3_endpoint="http://127.0.0.1:9")
    f = tmp_path / "spool" / "archiver-w1-20260101000000000-00000.warc.gz"
    f.parent.mkdir(parents=True)
    _warc(f, [b"kept"])
    with Index.open(tmp_path / "idx") as index:
        _record(index, f)
        store = store_for(settings)
        assert store is not None
        shipper = Shipper(index, store, "w1")
        shipper.submit(f)
        left = shipper.close(timeout=120)
        assert left == 1 and f.exists()
        assert _files(index)[f.name]["state"] == "closed"
