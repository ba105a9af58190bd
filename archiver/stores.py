"""Where closed WARC files live and how to read them: a local or mounted folder, or an
S3-compatible bucket.

A location is a URL: `file:///mnt/archive/warc/NAME.warc.gz` or `s3://BUCKET/KEY`. Workers
of a scaled setup put their closed files into the store named by `storage.ship_to` (put() returns
only after the copy is verified); readers open one record by location, offset and length,
which on S3 is one ranged GET, so serving or dumping a capture never downloads whole files.

boto3 is imported only when an s3:// location is used: it costs a process ~25 MB.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator, Protocol
from urllib.parse import unquote, urlsplit

from .errors import StorageError

CHUNK = 1 << 20
OPEN_SUFFIX = ".open"  # a WARC file being written


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (the directory entry is data too)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class StoreSettings:
    """What any process needs to reach the stores (plain strings: it travels to extraction
    worker processes). Credentials never do: boto3 reads AWS_ACCESS_KEY_ID and friends."""

    ship_to: str | None = None
    s3_endpoint: str | None = None
    s3_region: str | None = None


class Store(Protocol):
    def put(self, local: Path, name: str, sha256: str) -> str:
        """Copy `local` in as `name`; return its location once the copy is verified."""
        ...


def file_sha256(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def local_path(location: str) -> Path | None:
    """The file of a file:// location (None for other schemes)."""
    u = urlsplit(location)
    return Path(unquote(u.path)) if u.scheme == "file" else None


def s3_parts(location: str) -> tuple[str, str]:
    u = urlsplit(location)
    if u.scheme != "s3" or not u.netloc:
        raise StorageError(f"not an s3:// location: {location!r}")
    return u.netloc, u.path.lstrip("/")


class FolderStore:
    """A local or mounted folder (NFS, a shared volume). A file is written under a temporary
    name, synced, read back and compared, then renamed: a reader never sees half a file."""

    def __init__(self, folder: Path):
        self.folder = folder

    def put(self, local: Path, name: str, sha256: str) -> str:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            dest = self.folder / name
            tmp = self.folder / f".{name}.partial"
            with open(local, "rb") as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK)
                out.flush()
                os.fsync(out.fileno())
            got, _ = file_sha256(tmp)
            if got != sha256:
                tmp.unlink(missing_ok=True)
                raise StorageError(f"copy of {name} to {self.folder} differs from the original "
                                   f"(sha256 {got[:12]}... vs {sha256[:12]}...)")
            os.replace(tmp, dest)
            fsync_dir(self.folder)
        except OSError as e:
            raise StorageError(f"cannot copy {name} to {self.folder}: {e.strerror or e}") from None
        return dest.resolve().as_uri()


_clients: dict[tuple[str | None, str | None], Any] = {}
_clients_lock = threading.Lock()


def s3_client(settings: StoreSettings) -> Any:
    """One boto3 client per endpoint and process (clients are thread-safe; making one is slow)."""
    key = (settings.s3_endpoint, settings.s3_region)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.session.Session().client(
                "s3", endpoint_url=settings.s3_endpoint, region_name=settings.s3_region or "us-east-1",
                config=Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=10, read_timeout=60))
            _clients[key] = client
        return client


def _s3_reason(e: Exception) -> str:
    err = getattr(e, "response", {}).get("Error", {}) if hasattr(e, "response") else {}
    if err:
        return f"{err.get('Code', '?')}: {err.get('Message', '')}".strip(": ")
    return str(e).splitlines()[0] if str(e) else type(e).__name__


class S3Store:
    """An S3 bucket (AWS, MinIO, Ceph, ...). The upload carries its SHA-256, which the store
    checks before it accepts the object; the object's size and recorded digest are then read
    back with a HEAD request."""

    def __init__(self, location: str, settings: StoreSettings):
        self.bucket, self.prefix = s3_parts(location.rstrip("/") + "/")
        self.settings = settings

    def put(self, local: Path, name: str, sha256: str) -> str:
        from boto3.s3.transfer import TransferConfig

        client = s3_client(self.settings)
        key = self.prefix + name
        size = local.stat().st_size
        where = f"s3://{self.bucket}/{key}"
        try:
            if size <= 64 * CHUNK:
                with open(local, "rb") as f:
                    client.put_object(Bucket=self.bucket, Key=key, Body=f, Metadata={"sha256": sha256},
                                      ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256)).decode("ascii"))
            else:  # multipart: each part's checksum is checked by the store
                client.upload_file(str(local), self.bucket, key,
                                   ExtraArgs={"Metadata": {"sha256": sha256}, "ChecksumAlgorithm": "SHA256"},
                                   Config=TransferConfig(multipart_chunksize=64 * CHUNK))
            head = client.head_object(Bucket=self.bucket, Key=key)
        except Exception as e:  # botocore raises many unrelated classes; all mean "not stored"
            raise StorageError(f"cannot upload {local.name} to {where}: {_s3_reason(e)}") from None
        if head.get("ContentLength") != size or head.get("Metadata", {}).get("sha256") != sha256:
            raise StorageError(f"{where} does not match {local} after upload "
                               f"({head.get('ContentLength')} bytes vs {size})")
        return where


def store_for(settings: StoreSettings) -> Store | None:
    """The store named by storage.ship_to (None: files stay where they were written)."""
    target = settings.ship_to
    if not target:
        return None
    if target.startswith("s3://"):
        return S3Store(target, settings)
    path = local_path(target)
    if path is None:
        raise StorageError(f"storage.ship_to must be file:///PATH or s3://BUCKET/PREFIX (got {target!r})")
    return FolderStore(path)


@contextmanager
def open_record(location: str, offset: int, length: int | None, settings: StoreSettings) -> Iterator[IO[bytes]]:
    """A stream positioned at the record at `offset` (a gzip member, `length` bytes when known)."""
    path = local_path(location)
    if path is not None:
        if not path.exists() and Path(str(path) + OPEN_SUFFIX).exists():
            path = Path(str(path) + OPEN_SUFFIX)  # still being written
        with open(path, "rb") as f:
            f.seek(offset)
            yield f
        return
    bucket, key = s3_parts(location)
    rng = f"bytes={offset}-{offset + length - 1}" if length else f"bytes={offset}-"
    try:
        body = s3_client(settings).get_object(Bucket=bucket, Key=key, Range=rng)["Body"]
    except Exception as e:
        raise StorageError(f"cannot read {location} at {offset}: {_s3_reason(e)}") from None
    try:
        yield body
    finally:
        body.close()


@contextmanager
def local_copy(location: str, settings: StoreSettings, scratch: Path | None = None) -> Iterator[Path]:
    """A local file with the whole of `location` (itself when it is a file; else a download,
    removed afterwards)."""
    path = local_path(location)
    if path is not None:
        yield path
        return
    bucket, key = s3_parts(location)
    fd, tmp = tempfile.mkstemp(prefix=".download-", suffix=".warc.gz", dir=scratch)
    os.close(fd)
    try:
        try:
            s3_client(settings).download_file(bucket, key, tmp)
        except Exception as e:
            raise StorageError(f"cannot download {location}: {_s3_reason(e)}") from None
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)
