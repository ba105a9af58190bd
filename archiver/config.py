"""Load and validate the YAML config.

Every problem is reported as ``FILE:LINE: key.path: what is wrong (got VALUE)``; all problems
are collected, not just the first, so a user fixes a config in one round. Unknown keys are
errors: a typo silently ignored would quietly change what gets archived.

The sections' models are in settings.py, the size and duration values in units.py, and how a
validation error becomes a problem with its line in config_problems.py, the outlets of the
OPML and CSV files of `outlets_from` in outlet_files.py; here the file is read, checked
across sections (the topics an outlet names, the browser a capture mode needs) and given its
environment overrides.
"""

from __future__ import annotations

import gc
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .config_problems import loc_path, node_line, validation_problems, value_at
from .errors import ConfigError, ConfigProblem
from .outlet_files import FileOutlets, read_outlet_files, undefined_topic
from .settings import BROWSER_MODES, SECRET_KEYS, Config, Outlet, Topic

# libyaml's parser where PyYAML was built with it: the pure-Python one takes 6 s for 5,000 outlets
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class LoadedConfig(BaseModel):
    """A validated config plus where it came from; `sha256` goes into every WARC's warcinfo."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    path: Path
    config: Config
    sha256: str
    storage_root: Path
    # (file, outlets read from it) for each file of outlets_from
    outlet_files: tuple[tuple[str, int], ...] = ()

    def capture_mode(self, outlet: Outlet) -> str:
        return outlet.capture_mode or self.config.capture.mode

    def topics_for(self, outlet: Outlet) -> list[Topic]:
        if not outlet.topics:
            return list(self.config.topics)
        return [t for t in self.config.topics if t.name in outlet.topics]


def _missing_browser(cfg: Config, file: str, root: yaml.Node | None, data: Any,
                     files: FileOutlets | None = None) -> list[ConfigProblem]:
    """Capture modes browser and auto need the browser: without it every page would fail."""
    own = cfg.outlets[:files.n_yaml] if files else cfg.outlets
    users = [("capture", "mode")] if cfg.capture.mode in BROWSER_MODES else []
    users += [("outlets", i, "capture_mode") for i, o in enumerate(own) if o.capture_mode in BROWSER_MODES]
    if files and files.defaults.capture_mode in BROWSER_MODES:
        users.append(("outlet_defaults", "capture_mode"))
    row = files.browser_user(BROWSER_MODES) if files else None
    exe = cfg.capture.browser.executable
    if not (users or row) or (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        return []
    written = value_at(data, ("capture", "browser", "executable")) is not None
    mode = value_at(data, users[0]) if users else row[3]  # type: ignore[index]
    if written or users:
        loc = ("capture", "browser", "executable") if written else users[0]
        where: tuple[str, int, str] = (file, node_line(root, loc), loc_path(data, loc))
    else:  # only a row of an outlet file asks for it
        where = row[:3]  # type: ignore[index]
    return [ConfigProblem(*where, f"capture mode {mode} renders pages in a browser, and {exe} is not there or not "
                          "executable (apt-get install chromium, or set capture.browser.executable)", exe)]


def _undefined_topics(cfg: Config, file: str, root: yaml.Node | None, data: Any,
                      files: FileOutlets | None = None) -> list[ConfigProblem]:
    """An outlet (or alert) naming a topic that is not defined would keep (or send) nothing, silently."""
    defined = [t.name for t in cfg.topics]
    problems = []
    named = [("outlets", i, o.topics) for i, o in enumerate(cfg.outlets[:files.n_yaml] if files else cfg.outlets)]
    named += [("alerts", i, a.topics) for i, a in enumerate(cfg.alerts)]
    for section, i, topics in named:
        for j, name in enumerate(topics):
            if name not in defined:
                loc = (section, i, "topics", j)
                problems.append(ConfigProblem(file, node_line(root, loc), loc_path(data, loc),
                                              undefined_topic(name, defined), name))
    return problems + (files.topic_problems(defined) if files else [])


def _compose(text: str) -> tuple[yaml.Node | None, Any]:
    """The node tree (for line numbers) and the data built from it: the text parsed once."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        return root, (loader.construct_document(root) if root is not None else None)
    finally:
        loader.dispose()


def parse_config_text(text: str, file: str, base: Path | None = None) -> Config:
    """Validate YAML text; raises ConfigError listing every problem. The files of outlets_from
    are found relative to `base` (default: the folder of `file`)."""
    return _parse(text, file, base)[0]


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector held off while a config is built: the node tree, data and
    models are tens of thousands of objects that all stay alive, and each full collection on
    the way walks them all again (half the load time of 5,000 outlets)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _parse(text: str, file: str, base: Path | None) -> tuple[Config, FileOutlets | None]:
    with _collector_paused():
        return _parse_text(text, file, base)


def _parse_text(text: str, file: str, base: Path | None) -> tuple[Config, FileOutlets | None]:
    try:
        root, data = _compose(text)
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
    files = read_outlet_files(data, root, file, Path(file).parent if base is None else base)
    problems = list(files.problems) if files else []
    merged = files.merged() if files else data
    try:
        cfg = Config.model_validate(merged)
    except ValidationError as e:
        own = [p for p in validation_problems(file, root, merged, e) if not (files and files.covers(p))]
        raise ConfigError(_in_order(own + problems, file)) from None
    problems += _undefined_topics(cfg, file, root, data, files) + _missing_browser(cfg, file, root, data, files)
    if problems:
        raise ConfigError(_in_order(problems, file))
    return cfg, files


def _in_order(problems: list[ConfigProblem], file: str) -> list[ConfigProblem]:
    """The config's own problems by line, then each outlet file's, in the order they are listed."""
    files = list(dict.fromkeys([file] + [p.file for p in problems]))
    return sorted(problems, key=lambda p: (files.index(p.file), p.line))


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
    cfg, files = _parse(text, str(p), p.resolve().parent)
    cfg = _environment_overrides(cfg, str(p))
    root = Path(cfg.storage.root).expanduser()
    if not root.is_absolute():
        root = (p.resolve().parent / root).resolve()
    # the outlet files are part of the config: a changed one starts a new WARC, like a changed YAML
    digest = hashlib.sha256(raw)
    for f in files.files if files else []:
        digest.update(f.raw)
    return LoadedConfig(path=p.resolve(), config=cfg, sha256=digest.hexdigest(), storage_root=root,
                        outlet_files=files.counts() if files else ())


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
    given = {var: os.environ.get(var) for var in ENV_OVERRIDES}
    if not any(given.values()):
        return cfg  # before the dump: a config of 5,000 outlets takes 0.1 s to dump
    data = cfg.model_dump()
    for var, (section, key) in ENV_OVERRIDES.items():
        if given[var]:
            data[section][key] = given[var]
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
