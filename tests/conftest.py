"""Shared fixtures: the sample outlet on 127.0.0.1 and a crawled archive of it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from archiver.config import LoadedConfig, load_config
from archiver.crawl import PassResult, run_pass
from archiver.demo.site import SampleSite


@pytest.fixture(scope="module")
def site():
    with SampleSite(crawl_delay=0.1) as s:
        yield s


@dataclass
class Crawled:
    site: SampleSite
    cfg: LoadedConfig
    config_path: Path
    root: Path
    result: PassResult


def write_config(site: SampleSite, root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "config.yaml"
    path.write_text(site.config_yaml(str(root)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def crawled(site, tmp_path_factory) -> Crawled:
    root = tmp_path_factory.mktemp("archive")
    path = write_config(site, root)
    cfg = load_config(path)
    result = asyncio.run(run_pass(cfg))
    return Crawled(site, cfg, path, root, result)


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the installed `archiver` entry point the way a user does, in a process of its own:
    for what only a whole process shows (its memory, signals, kills, inherited environment)."""
    exe = Path(sys.executable).with_name("archiver")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout)


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


class _Hung(BaseException):  # a BaseException, so no `except Exception` in the command swallows it
    pass


def invoke(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> Ran:
    """Run `archiver ARGS` in this process through archiver.cli.main, the boundary the installed
    command goes through (exit codes, error lines), with stdout and stderr captured. The
    logging a command sets up is put back afterwards; `timeout` bounds a hang."""
    import logging
    import signal

    from click.testing import CliRunner

    from archiver.cli import main

    def hung(signum: int, frame: object) -> None:
        raise _Hung(f"archiver {' '.join(args)} still running after {timeout} s")

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: lg.level for name, lg in logging.root.manager.loggerDict.items()
              if isinstance(lg, logging.Logger)}
    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, lg in logging.root.manager.loggerDict.items():
            if isinstance(lg, logging.Logger):
                lg.setLevel(levels.get(name, logging.NOTSET))
    return Ran(result.exit_code, result.stdout, result.stderr)


def _service(kind: str):
    """A real server for the scale-out tests; missing ones skip, or fail under .ci/run."""
    from .services import Postgres, Redis, postgres_bin, redis_bin

    have = postgres_bin() if kind == "postgres" else redis_bin()
    if have is None:
        if os.environ.get("ARCHIVER_REQUIRE_SERVICES"):
            pytest.fail(f"{kind} is not installed (.ci/run installs it from Debian)")
        pytest.skip(f"needs {kind} (apt-get install {'postgresql' if kind == 'postgres' else 'redis-server'})")
    return Postgres() if kind == "postgres" else Redis()


@pytest.fixture(scope="session")
def postgres():
    with _service("postgres") as pg:
        yield pg


@pytest.fixture(scope="session")
def redis_server():
    with _service("redis") as r:
        yield r


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on loopback, with its credentials in this process's environment."""
    from .services import S3Server

    with S3Server() as s3:
        saved = {k: os.environ.get(k) for k in s3.env}
        os.environ.update(s3.env)
        try:
            yield s3
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
