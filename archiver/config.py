"""Load and validate the YAML config.

Every problem is reported as ``FILE:LINE: key.path: what is wrong (got VALUE)``; all problems
are collected, not just the first, so a user fixes a config in one round. Unknown keys are
errors: a typo silently ignored would quietly change what gets archived.

The sections' models are in settings.py, the size and duration values in units.py, and how a
validation error becomes a problem with its line in config_problems.py; here the file is
read, checked across sections (the topics an outlet names, the browser a capture mode
needs) and given its environment overrides.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .config_problems import loc_path, node_line, validation_problems, value_at
from .errors import ConfigError, ConfigProblem
from .settings import BROWSER_MODES, SECRET_KEYS, Config, Outlet, Topic


class LoadedConfig(BaseModel):
    """A validated config plus where it came from; `sha256` goes into every WARC's warcinfo."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    path: Path
    config: Config
    sha256: str
    storage_root: Path

    def capture_mode(self, outlet: Outlet) -> str:
        return outlet.capture_mode or self.config.capture.mode

    def topics_for(self, outlet: Outlet) -> list[Topic]:
        if not outlet.topics:
            return list(self.config.topics)
        return [t for t in self.config.topics if t.name in outlet.topics]


def _missing_browser(cfg: Config, file: str, root: yaml.Node | None, data: Any) -> list[ConfigProblem]:
    """Capture modes browser and auto need the browser: without it every page would fail."""
    users = [("capture", "mode")] if cfg.capture.mode in BROWSER_MODES else []
    users += [("outlets", i, "capture_mode") for i, o in enumerate(cfg.outlets) if o.capture_mode in BROWSER_MODES]
    exe = cfg.capture.browser.executable
    if not users or (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        return []
    written = value_at(data, ("capture", "browser", "executable")) is not None
    loc = ("capture", "browser", "executable") if written else users[0]
    mode = value_at(data, users[0])
    return [ConfigProblem(file, node_line(root, loc), loc_path(data, loc),
                          f"capture mode {mode} renders pages in a browser, and {exe} is not there or not "
                          "executable (apt-get install chromium, or set capture.browser.executable)", exe)]


def _undefined_topics(cfg: Config, file: str, root: yaml.Node | None, data: Any) -> list[ConfigProblem]:
    """An outlet (or alert) naming a topic that is not defined would keep (or send) nothing, silently."""
    defined = [t.name for t in cfg.topics]
    problems = []
    named = [("outlets", i, o.topics) for i, o in enumerate(cfg.outlets)]
    named += [("alerts", i, a.topics) for i, a in enumerate(cfg.alerts)]
    for section, i, topics in named:
        for j, name in enumerate(topics):
            if name not in defined:
                loc = (section, i, "topics", j)
                close = difflib.get_close_matches(name, defined, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                problems.append(ConfigProblem(file, node_line(root, loc), loc_path(data, loc),
                                              f"names no defined topic ({hint}defined: {', '.join(defined)})",
                                              name))
    return problems


def parse_config_text(text: str, file: str) -> Config:
    """Validate YAML text; raises ConfigError listing every problem."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError([ConfigProblem(file, line, "(yaml)", f"not valid YAML: {problem}")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem(file, 1, "(top level)", "expected a mapping of settings",
                                         type(data).__name__)])
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(validation_problems(file, root, data, e)) from None
    problems = _undefined_topics(cfg, file, root, data) + _missing_browser(cfg, file, root, data)
    if problems:
        raise ConfigError(problems)
    return cfg


def load_config(path: str | Path) -> LoadedConfig:
    """Read, validate and resolve a config file. Relative storage roots resolve against its folder."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError([ConfigProblem(str(p), 0, "(file)", f"cannot read config: {e.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError([ConfigProblem(str(p), line, "(file)", "config is not UTF-8")]) from None
    cfg = _environment_overrides(parse_config_text(text, str(p)), str(p))
    root = Path(cfg.storage.root).expanduser()
    if not root.is_absolute():
        root = (p.resolve().parent / root).resolve()
    return LoadedConfig(path=p.resolve(), config=cfg, sha256=hashlib.sha256(raw).hexdigest(), storage_root=root)


# Deployment settings a container or service manager may set without editing the YAML.
ENV_OVERRIDES = {
    "ARCHIVER_STORAGE_ROOT": ("storage", "root"),
    "ARCHIVER_INDEX_URL": ("index", "url"),
    "ARCHIVER_BROKER_URL": ("scale", "broker"),
    "ARCHIVER_SHIP_TO": ("storage", "ship_to"),
    "ARCHIVER_S3_ENDPOINT": ("storage", "s3_endpoint"),
    "ARCHIVER_LISTEN": ("daemon", "listen"),
    "ARCHIVER_LOG_FORMAT": ("daemon", "log_format"),
}


def _environment_overrides(cfg: Config, file: str) -> Config:
    data = cfg.model_dump()
    changed = False
    for var, (section, key) in ENV_OVERRIDES.items():
        value = os.environ.get(var)
        if value:
            data[section][key] = value
            changed = True
    if not changed:
        return cfg
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        env_of = {f"{s}.{k}": v for v, (s, k) in ENV_OVERRIDES.items()}
        raise ConfigError([ConfigProblem(file, 0, f"{'.'.join(map(str, err['loc']))} (from "
                                                  f"{env_of.get('.'.join(map(str, err['loc'])), 'environment')})",
                                         err["msg"].removeprefix("Value error, "),
                                         None if any(p in SECRET_KEYS for p in err["loc"]) else err.get("input"))
                           for err in e.errors()]) from None


def check_config(path: str | Path) -> list[ConfigProblem]:
    """Every problem in a config file; an empty list means it is usable."""
    try:
        load_config(path)
    except ConfigError as e:
        return e.problems
    return []
