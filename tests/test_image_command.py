"""The command the Docker image runs, run the same way outside a container.

A fresh virtual environment installed only from constraints.txt (as docker/Dockerfile does),
the Dockerfile's ENV, ENTRYPOINT and CMD, a config at <tmp>/config/archiver.yaml and the
archive at <tmp>/data (standing in for /config and /data), against the sample outlet on
127.0.0.1: the HEALTHCHECK command must pass and a capture must land.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archiver.demo.site import SampleSite

ROOT = Path(__file__).resolve().parent.parent


def dockerfile_final_stage() -> dict:
    """ENV, ENTRYPOINT, CMD and HEALTHCHECK of the image a build without --target makes: the
    last stage, with what it inherits from the stages of the file it is built FROM."""
    text = (ROOT / "docker" / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    stages: dict[str, tuple[str, str]] = {}  # name -> (what it is FROM, its lines)
    base, body = "", ""
    for part in text.split("\nFROM ")[1:]:
        head, _, body = part.partition("\n")
        base, *alias = head.split()
        if len(alias) == 2 and alias[0].upper() == "AS":
            stages[alias[1]] = (base, body)
    chain = [body]
    while base in stages:
        base, body = stages[base]
        chain.insert(0, body)
    out: dict = {"env": {}}
    for line in "\n".join(chain).splitlines():
        ins, _, rest = line.strip().partition(" ")
        if ins == "ENV":
            for k, v in re.findall(r"(\w+)=(\S+)", rest):
                out["env"][k] = v
        elif ins in ("ENTRYPOINT", "CMD"):
            out[ins] = json.loads(rest)
        elif ins == "HEALTHCHECK":
            out[ins] = json.loads(rest[rest.index("CMD ") + 4:])
    return out


@pytest.mark.slow
def test_image_command_turns_healthy_and_archives(tmp_path: Path):
    stage = dockerfile_final_stage()
    assert stage["ENTRYPOINT"] == ["archiver"] and stage["CMD"] == ["run", "--config", "/config/archiver.yaml"]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # as the Dockerfile does: an older pip cannot resolve lxml's extra asked for in two spellings
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", "--upgrade",
                    "pip>=24.1"], check=True, capture_output=True, timeout=300)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                          "--constraint", str(ROOT / "constraints.txt"), str(ROOT)],
                         capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stdout[-2000:] + pip.stderr[-2000:]
    config_dir, data_dir = tmp_path / "config", tmp_path / "data"
    config_dir.mkdir()
    data_dir.mkdir()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()

    def local(arg: str) -> str:
        return arg.replace("/config", str(config_dir)).replace("/data", str(data_dir))

    with SampleSite(crawl_delay=0.05) as site:
        (config_dir / "archiver.yaml").write_text(site.config_yaml("/nowhere/overridden/by/env"))
        env = dict(os.environ, PATH=f"{venv / 'bin'}:{os.environ['PATH']}", VIRTUAL_ENV=str(venv),
                   ARCHIVER_LISTEN=f"127.0.0.1:{port}")
        env.update({k: local(v.replace("$PATH", os.environ["PATH"])) for k, v in stage["env"].items()
                    if k != "PATH"})
        argv = [str(venv / "bin" / stage["ENTRYPOINT"][0])] + [local(a) for a in stage["CMD"]]
        log = open(tmp_path / "app.log", "w")
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=data_dir)
        health = [str(venv / "bin" / "python") if a == "python" else a.replace("8771", str(port))
                  for a in stage["HEALTHCHECK"]]
        try:
            deadline = time.monotonic() + 60
            healthy = False
            while time.monotonic() < deadline and not healthy:
                healthy = subprocess.run(health, capture_output=True, timeout=10).returncode == 0
                time.sleep(0.5)
            assert healthy, (tmp_path / "app.log").read_text()[-2000:]
            captures = 0
            while time.monotonic() < deadline and not captures:
                if (data_dir / "index.sqlite3").exists():
                    conn = sqlite3.connect(f"file:{data_dir / 'index.sqlite3'}?mode=ro", uri=True, timeout=5)
                    try:
                        captures = conn.execute("SELECT COUNT(*) FROM captures WHERE kind = 'article' "
                                                "AND state = 'archived'").fetchone()[0]
                    except sqlite3.OperationalError:
                        pass
                    conn.close()
                time.sleep(0.5)
            assert captures > 0
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(30)
    assert code == 0
    assert list((data_dir / "warc").glob("*.warc.gz")) and not list((data_dir / "warc").glob("*.open"))
    assert json.loads((tmp_path / "app.log").read_text().splitlines()[0])["level"] == "info"  # JSON logs
