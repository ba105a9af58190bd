"""The compose files' browse service, as compose would run it: the exact command with its
variables filled in serves the UI and the replay origin on the ports the service publishes
(each the same number inside and out, on the host's loopback), and its health check passes."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from archiver.index import Index

from .conftest import Crawled
from .test_browse import get, stop
from .test_daemon import free_port

DOCKER = Path(__file__).resolve().parent.parent / "docker"


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${NAME} and ${NAME:-default}."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: env.get(m.group(1)) or m.group(2) or "", text)


@pytest.mark.parametrize("compose_file", ["compose.yaml", "compose.scale.yaml"])
def test_the_browse_service_publishes_the_ui_and_the_replay_port_it_serves_on(compose_file: str,
                                                                               crawled: Crawled):
    browse = yaml.safe_load((DOCKER / compose_file).read_text(encoding="utf-8"))["services"]["browse"]
    ui, replay = free_port(), free_port()
    while replay == ui:
        replay = free_port()
    env = {"ARCHIVER_BROWSE_PORT": str(ui), "ARCHIVER_REPLAY_PORT": str(replay)}
    assert sorted(interpolate(p, env) for p in browse["ports"]) == sorted(
        [f"127.0.0.1:{ui}:{ui}", f"127.0.0.1:{replay}:{replay}"]), browse["ports"]

    command = [interpolate(a, env) for a in browse["command"]]
    assert command[:3] == ["serve", "--config", "/config/archiver.yaml"]
    command[2] = str(crawled.config_path)
    command[command.index("--host") + 1] = "127.0.0.1"  # 0.0.0.0 in the container; loopback here
    proc = subprocess.Popen([str(Path(sys.executable).with_name("archiver")), *command],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if all(get(f"http://127.0.0.1:{p}/healthz", timeout=2)[0] == 200 for p in (ui, replay)):
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"the browse service's command did not serve both ports: {proc.communicate()[0]}")
            time.sleep(0.1)
        with Index.open(crawled.root, readonly=True) as idx:
            article = next(idx.captures(kind="article", state="archived")).id
        status, _, body = get(f"http://127.0.0.1:{replay}/replay/{article}")
        assert status == 200 and "Blinken" in body
        check = browse["healthcheck"]["test"]
        assert check[:3] == ["CMD", "python", "-c"]
        assert subprocess.run([sys.executable, "-c", interpolate(check[3], env)], timeout=10).returncode == 0
    finally:
        stop(proc)
