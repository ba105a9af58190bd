"""Bad configs give FILE:LINE: key.path: message (got VALUE), through the CLI as a user runs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from archiver.config import check_config, load_config

from .conftest import invoke

GOOD = """\
topics:
  - name: t
    any: [Blinken]
outlets:
  - name: o
    feeds: ["https://example.org/rss"]
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_example_config_is_valid():
    root = Path(__file__).resolve().parent.parent
    proc = invoke("check-config", str(root / "config" / "example.yaml"))
    assert proc.returncode == 0 and proc.stdout.strip() == "ok"
    cfg = load_config(root / "config" / "example.yaml")
    assert cfg.storage_root == root / "storage"
    assert len(cfg.config.outlets) >= 3 and cfg.config.fetch.respect_robots


def test_defaults_and_relative_storage_root(tmp_path: Path):
    cfg = load_config(write(tmp_path, GOOD + "storage:\n  root: arch\n"))
    assert cfg.storage_root == tmp_path / "arch"
    f = cfg.config.fetch
    assert f.respect_robots is True and f.allow_private_networks is False
    assert cfg.config.storage.warc.rotate_size == 1_000_000_000
    assert cfg.config.outlets[0].schedule.every == 1800


def test_every_problem_is_reported_with_file_line_and_key(tmp_path: Path):
    p = write(tmp_path, """\
storage:
  root: ./st
  colour: blue
fetch:
  concurrency: -3
  timeout: soon
  max_body_bytes: 12 parsecs
topics:
  - name: t1
    any: [Blinken]
  - name: t2
outlets:
  - name: o1
    feeds: [ftp://example.org/x]
    schedule: {every: 30m}
  - name: o2
    schedule: {every: 30m, cron: "* * * * *"}
    feeds: ["https://e.org/rss"]
""")
    proc = invoke("check-config", str(p))
    assert proc.returncode == 2
    lines = proc.stdout.splitlines()
    assert any(line.startswith(f"{p}:3: storage.colour: unknown key (known keys: root,") for line in lines)
    assert any(line.startswith(f"{p}:5: fetch.concurrency: ") and line.endswith("(got -3)") for line in lines)
    assert f"{p}:6: fetch.timeout: expected a duration such as 30, '45s', '30m' or '2h' (got 'soon')" in lines
    assert any(line.startswith(f"{p}:7: fetch.max_body_bytes: ") and "12 parsecs" in line for line in lines)
    assert f"{p}:11: topics[t2]: a topic needs at least one term in 'any' or 'all'" in lines
    assert f"{p}:14: outlets[o1].feeds: not an http(s) URL: 'ftp://example.org/x'" in lines
    assert any(line.startswith(f"{p}:17: outlets[o2].schedule: give exactly one of") for line in lines)
    assert len(lines) == 7


def test_yaml_syntax_error_names_the_line(tmp_path: Path):
    p = write(tmp_path, GOOD + "fetch:\n  timeout: 5\n   user_agent: x\n")
    problems = check_config(p)
    assert len(problems) == 1 and problems[0].line == 9 and "not valid YAML" in problems[0].message


def test_missing_sections_and_wrong_types(tmp_path: Path):
    p = write(tmp_path, "fetch:\n  respect_robots: maybe\n")
    text = "\n".join(map(str, check_config(p)))
    assert f"{p}:1: topics: required key is missing" in text
    assert f"{p}:1: outlets: required key is missing" in text
    assert f"{p}:2: fetch.respect_robots: " in text and "(got 'maybe')" in text


def test_missing_file_is_a_clear_error(tmp_path: Path):
    proc = invoke("check-config", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2 and "cannot read config" in proc.stdout


@pytest.mark.parametrize("cmd", ["crawl", "captures"])
def test_commands_exit_2_on_a_bad_config(tmp_path: Path, cmd: str):
    p = write(tmp_path, "topics: []\noutlets: []\nfetch: {timeout: 0}\n")
    proc = invoke(cmd, "--config", str(p))
    assert proc.returncode == 2
    assert f"{p}:1: topics: " in proc.stderr and f"{p}:3: fetch.timeout: " in proc.stderr


def test_environment_overrides_storage_listen_and_log_format(tmp_path: Path, monkeypatch):
    p = write(tmp_path, GOOD)
    monkeypatch.setenv("ARCHIVER_STORAGE_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("ARCHIVER_LISTEN", "0.0.0.0:9000")
    monkeypatch.setenv("ARCHIVER_LOG_FORMAT", "json")
    cfg = load_config(p)
    assert cfg.storage_root == tmp_path / "data"
    assert cfg.config.daemon.host_port == ("0.0.0.0", 9000) and cfg.config.daemon.log_format == "json"
    monkeypatch.setenv("ARCHIVER_LISTEN", "nowhere")
    problems = check_config(p)
    assert len(problems) == 1 and "ARCHIVER_LISTEN" in str(problems[0]) and "nowhere" in str(problems[0])


def test_shared_store_settings_are_checked_and_may_come_from_the_environment(tmp_path: Path, monkeypatch):
    p = write(tmp_path, "storage:\n  ship_to: /mnt/archive\n  s3_endpoint: minio:9000\n" + GOOD)
    lines = [str(x) for x in check_config(p)]
    assert f"{p}:2: storage.ship_to: must be file:///PATH or s3://BUCKET/PREFIX (got '/mnt/archive')" in lines
    assert f"{p}:3: storage.s3_endpoint: must be http(s)://HOST[:PORT] (got 'minio:9000')" in lines
    p = write(tmp_path, GOOD)
    monkeypatch.setenv("ARCHIVER_SHIP_TO", "s3://archive/warc")
    monkeypatch.setenv("ARCHIVER_S3_ENDPOINT", "http://127.0.0.1:9000")
    storage = load_config(p).config.storage
    assert (storage.ship_to, storage.s3_endpoint) == ("s3://archive/warc", "http://127.0.0.1:9000")


def test_unknown_keys_get_a_did_you_mean(tmp_path: Path):
    p = write(tmp_path, GOOD.replace("outlets:", "fetch:\n  user-agent: bot\n  timout: 5\noutlets:")
              + "    sitemap: [auto]\n")
    proc = invoke("check-config", str(p))
    assert proc.returncode == 2
    lines = proc.stdout.splitlines()
    assert f"{p}:5: fetch.user-agent: unknown key (did you mean 'user_agent'?)" in lines
    assert f"{p}:6: fetch.timout: unknown key (did you mean 'timeout'?)" in lines
    assert f"{p}:10: outlets[o].sitemap: unknown key (did you mean 'sitemaps'?)" in lines


def test_an_outlet_naming_an_undefined_topic_is_refused(tmp_path: Path):
    p = write(tmp_path, GOOD.replace("  - name: t\n", "  - name: blinken\n") + "    topics: [blinkn]\n")
    proc = invoke("check-config", str(p))
    assert proc.returncode == 2
    assert proc.stdout.splitlines() == [f"{p}:7: outlets[o].topics[0]: names no defined topic "
                                        "(did you mean 'blinken'? defined: blinken) (got 'blinkn')"]


def test_the_default_storage_root_is_beside_the_config_file(tmp_path: Path):
    """Never the package's folder (inside site-packages after a plain pip install)."""
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.storage_root == tmp_path / "storage"
