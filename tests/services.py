"""Real PostgreSQL and Redis servers on loopback for the scale-out tests, from Debian's packages,
and an S3-compatible store (moto's server, from PyPI).

Each server gets a fresh data folder and a free port on 127.0.0.1 and is stopped at the end.
PostgreSQL refuses to run as root; as root, it runs as the `postgres` user the package made.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f}s")


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return Path(found[-1]).parent if found else None


def redis_bin() -> str | None:
    return shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)


class Postgres:
    """`with Postgres() as pg:` -> pg.url (postgresql://archiver@127.0.0.1:PORT/archiver)."""

    def __init__(self) -> None:
        bindir = postgres_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
        self.bin = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="archiver-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgresql://archiver@127.0.0.1:{self.port}/archiver"

    def _as_owner(self, cmd: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *cmd]
        return cmd

    def __enter__(self) -> "Postgres":
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run(self._as_owner([str(self.bin / "initdb"), "-D", str(self.data), "-U", "archiver",
                                       "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"]),
                       check=True, capture_output=True)
        # loopback only, no unix socket in a shared folder, and durability kept (fsync on)
        subprocess.run(self._as_owner([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"),
                                       "-o", f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c max_connections=200",
                                       "-w", "start"]), check=True, capture_output=True)
        subprocess.run(self._as_owner([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p",
                                       str(self.port), "-U", "archiver", "archiver"]), check=True, capture_output=True)
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(self._as_owner([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def psql(self, sql: str, db: str = "archiver") -> str:
        return subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "archiver", "-At", "-c", sql,
                               db], check=True, capture_output=True, text=True).stdout

    def new_database(self) -> str:
        """A fresh, empty database on this server; returns its URL."""
        import uuid

        name = f"t{uuid.uuid4().hex[:10]}"
        self.psql(f"CREATE DATABASE {name}")
        return self.url.rsplit("/", 1)[0] + f"/{name}"


class Redis:
    """`with Redis() as r:` -> r.url (redis://127.0.0.1:PORT/0), no persistence."""

    def __init__(self) -> None:
        exe = redis_bin()
        if exe is None:
            raise RuntimeError("redis-server not found (apt-get install redis-server)")
        self.exe = exe
        self.dir = Path(tempfile.mkdtemp(prefix="archiver-redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Redis":
        self.proc = subprocess.Popen([self.exe, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                                      "--appendonly", "no", "--dir", str(self.dir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port, "redis-server")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


class S3Server:
    """`with S3Server() as s3:` -> s3.endpoint (http://127.0.0.1:PORT), an S3-compatible store
    answering real HTTP (moto's standalone server, in memory); s3.env has the credentials
    it accepts (any) and the region, for processes started by a test."""

    def __init__(self) -> None:
        import sys

        self.python = sys.executable
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {"AWS_ACCESS_KEY_ID": "archiver-test", "AWS_SECRET_ACCESS_KEY": "archiver-test-secret",
                    "AWS_DEFAULT_REGION": "us-east-1"}
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "S3Server":
        self.proc = subprocess.Popen([self.python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port, "moto S3 server")
        return self

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])

    def new_bucket(self) -> str:
        name = f"archive-{free_port()}"
        self.client().create_bucket(Bucket=name)
        return name

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
