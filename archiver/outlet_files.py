"""Outlets listed in files the config names (`outlets_from:`): OPML, as feed readers export
their subscriptions, and CSV, as a spreadsheet saves a table. Thousands of outlets are easier
to keep there than in YAML.

Every outline with an `xmlUrl`, at any depth, is one outlet (`feeds: [xmlUrl]`, `home:
htmlUrl`); every CSV row after the header is one outlet. `outlet_defaults:` gives the file
outlets their topics, schedule and capture mode where the file does not. A problem in a file
is reported as `FILE:LINE: COLUMN` (CSV: the row's line and the column; OPML: the outline's
line and the attribute), beside the YAML's problems.

Two outlets with the same name are an error naming both places, never renamed: the name is
the outlet's identity in the archive (its passes, captures and text folders), and a suffix
chosen by order would move an outlet's history to another feed when the file is re-exported.
"""

from __future__ import annotations

import csv
import difflib
import io
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit
from xml.etree.ElementTree import ParseError

import yaml
from defusedxml import DefusedXmlException, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import DefusedXMLParser
from pydantic import ValidationError, field_validator

from .config_problems import loc_path, node_line, validation_problems
from .errors import ConfigProblem, XmlTooBig
from .settings import Outlet, Schedule
from .settings.base import _Model
from .settings.capture import _capture_mode
from .xmlsafe import MAX_DEPTH, MAX_ELEMENTS, detect_encoding, utf8_stream

OUTLET_FILE_KEYS = ("outlets_from", "outlet_defaults")
OPML_SUFFIXES = (".opml", ".xml")
CSV_SUFFIXES = (".csv",)
CSV_COLUMNS = ("name", "home", "feeds", "sitemaps", "pages", "search", "topics", "capture_mode", "every")
_LIST_COLUMNS = frozenset({"feeds", "sitemaps", "pages", "search", "topics"})
MAX_NAME = 100  # an outlet name made from an outline's text; it becomes a folder name
_CHUNK = 65536


class OutletDefaults(_Model):
    """What an outlet from a file gets when its row or outline does not say."""

    topics: list[str] = []
    schedule: Optional[Schedule] = None  # None: the outlet's own default
    capture_mode: Optional[str] = None

    @field_validator("capture_mode")
    @classmethod
    def _mode(cls, v: Optional[str]) -> Optional[str]:
        return None if v is None else _capture_mode(v)


class _From(_Model):
    outlets_from: list[str] = []

    @field_validator("outlets_from", mode="before")
    @classmethod
    def _one_or_more(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v  # one file written without brackets

    @field_validator("outlets_from")
    @classmethod
    def _not_empty(cls, v: list[str]) -> list[str]:
        if any(not p.strip() for p in v):
            raise ValueError("an empty file name")
        return v


class _Defaults(_Model):
    outlet_defaults: OutletDefaults = OutletDefaults()


@dataclass(frozen=True)
class Origin:
    """Where one file outlet was written: its line, and the column or attribute of each key."""

    file: str
    line: int
    names: Mapping[str, str]  # outlet key ("" for the row or outline itself) -> as written in the file
    topics_given: bool = False
    mode_given: bool = False

    def where(self, key: str) -> str:
        return self.names.get(key, key)


@dataclass
class OutletFile:
    display: str  # the path problems name: beside the config as the user wrote it
    raw: bytes
    outlets: list[Outlet] = field(default_factory=list)
    origins: list[Origin] = field(default_factory=list)


@dataclass
class FileOutlets:
    """The outlets of every file in outlets_from, their origins and the problems found."""

    config_file: str
    root: yaml.Node | None
    data: dict[str, Any]
    defaults: OutletDefaults
    files: list[OutletFile] = field(default_factory=list)
    problems: list[ConfigProblem] = field(default_factory=list)

    @property
    def outlets(self) -> list[Outlet]:
        return [o for f in self.files for o in f.outlets]

    @property
    def n_yaml(self) -> int:
        outlets = self.data.get("outlets")
        return len(outlets) if isinstance(outlets, list) else 0

    def merged(self) -> dict[str, Any]:
        """The config's data with the outlets of the files after its own, for Config."""
        out = {k: v for k, v in self.data.items() if k not in OUTLET_FILE_KEYS}
        own = self.data.get("outlets")
        if (own is None and self.outlets) or isinstance(own, list):
            # already validated: pydantic takes Outlet instances as they are
            out["outlets"] = list(own or []) + self.outlets
        return out

    def covers(self, problem: ConfigProblem) -> bool:
        """A missing outlets list is no news when the files meant to give it have problems."""
        return bool(self.problems) and problem.path == "outlets"

    def counts(self) -> tuple[tuple[str, int], ...]:
        return tuple((f.display, len(f.outlets)) for f in self.files)

    def topic_problems(self, defined: list[str]) -> list[ConfigProblem]:
        """Topics named by outlet_defaults (once, at its YAML line) or by a file's rows."""
        problems = []
        for j, name in enumerate(self.defaults.topics):
            if name not in defined:
                loc = ("outlet_defaults", "topics", j)
                problems.append(ConfigProblem(self.config_file, node_line(self.root, loc), loc_path(self.data, loc),
                                              undefined_topic(name, defined), name))
        for f in self.files:
            for outlet, origin in zip(f.outlets, f.origins):
                if origin.topics_given:
                    problems += [ConfigProblem(origin.file, origin.line, origin.where("topics"),
                                               undefined_topic(name, defined), name)
                                 for name in outlet.topics if name not in defined]
        return problems

    def browser_user(self, modes: tuple[str, ...]) -> tuple[str, int, str, str] | None:
        """(file, line, column, mode) of the first file row asking for a browser capture mode."""
        for f in self.files:
            for outlet, origin in zip(f.outlets, f.origins):
                if origin.mode_given and outlet.capture_mode in modes:
                    return origin.file, origin.line, origin.where("capture_mode"), outlet.capture_mode
        return None


def undefined_topic(name: str, defined: list[str]) -> str:
    close = difflib.get_close_matches(name, defined, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"names no defined topic ({hint}defined: {', '.join(defined)})"


def read_outlet_files(data: dict[str, Any], root: yaml.Node | None, file: str, base: Path) -> FileOutlets | None:
    """The outlets of the files `data` names, relative paths against `base` (the config's
    folder); None when the config names none. Problems are collected, never raised."""
    if not any(k in data for k in OUTLET_FILE_KEYS):
        return None
    problems: list[ConfigProblem] = []
    paths: list[str] = []
    defaults = OutletDefaults()
    try:
        paths = _From.model_validate({k: data[k] for k in ("outlets_from",) if k in data}).outlets_from
    except ValidationError as e:
        problems += validation_problems(file, root, data, e, model=_From)
    try:
        defaults = _Defaults.model_validate({k: data[k] for k in ("outlet_defaults",) if k in data}).outlet_defaults
    except ValidationError as e:
        problems += validation_problems(file, root, data, e, model=_Defaults)
    result = FileOutlets(file, root, data, defaults, problems=problems)
    seen = _yaml_names(data, root, file)
    listed: dict[Path, str] = {}
    for i, written in enumerate(paths):
        loc = ("outlets_from", i)
        line, key = node_line(root, loc), loc_path(data, loc)
        p = Path(written.strip()).expanduser()
        full = p if p.is_absolute() else base / p
        display = str(p if p.is_absolute() else Path(file).parent / p)
        suffix = p.suffix.lower()
        if suffix not in OPML_SUFFIXES + CSV_SUFFIXES:
            result.problems.append(ConfigProblem(file, line, key, "an outlet file is OPML (.opml, .xml) or CSV "
                                                 "(.csv)", written))
            continue
        if full.resolve() in listed:
            result.problems.append(ConfigProblem(file, line, key, f"listed twice (also {listed[full.resolve()]})",
                                                 written))
            continue
        listed[full.resolve()] = key
        try:
            raw = full.read_bytes()
        except OSError as e:
            result.problems.append(ConfigProblem(file, line, key, f"cannot read {display}: {e.strerror}", written))
            continue
        rows, file_problems = (_opml_rows if suffix in OPML_SUFFIXES else _csv_rows)(raw, display)
        read = OutletFile(display, raw)
        result.files.append(read)
        result.problems += file_problems
        if not rows and not file_problems:
            what = "no outline has an xmlUrl" if suffix in OPML_SUFFIXES else "no row below the header"
            result.problems.append(ConfigProblem(file, line, key, f"{display} lists no outlets ({what})", written))
        for values, cells, origin in rows:
            outlet, bad = _outlet(values, cells, origin, defaults)
            result.problems += bad
            if outlet is None:
                continue
            if outlet.name in seen:
                result.problems.append(ConfigProblem(origin.file, origin.line, origin.where("name"),
                                                     f"gives the outlet name {outlet.name!r}, as does "
                                                     f"{seen[outlet.name]}; outlet names must be unique",
                                                     cells.get("name")))
                continue
            seen[outlet.name] = f"{origin.file}:{origin.line}"
            read.outlets.append(outlet)
            read.origins.append(origin)
    return result


def _yaml_names(data: dict[str, Any], root: yaml.Node | None, file: str) -> dict[str, str]:
    """The YAML's own outlet names -> where each is written."""
    out: dict[str, str] = {}
    outlets = data.get("outlets")
    for i, item in enumerate(outlets if isinstance(outlets, list) else []):
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str) and name not in out:
            out[name] = f"{file}:{node_line(root, ('outlets', i, 'name'))} (outlets[{name}])"
    return out


def _outlet(values: dict[str, Any], cells: dict[str, str], origin: Origin,
            defaults: OutletDefaults) -> tuple[Outlet | None, list[ConfigProblem]]:
    if "topics" not in values and defaults.topics:
        values["topics"] = defaults.topics
    if "capture_mode" not in values and defaults.capture_mode is not None:
        values["capture_mode"] = defaults.capture_mode
    if "schedule" not in values and defaults.schedule is not None:
        values["schedule"] = defaults.schedule
    try:
        return Outlet.model_validate(values), []
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = next((p for p in err["loc"] if isinstance(p, str) and not p.startswith("function-")), "")
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(ConfigProblem(origin.file, origin.line, origin.where(key), msg,
                                          None if key in _LIST_COLUMNS else cells.get(key)))
        return None, problems


# ---------------------------------------------------------------------------------- OPML

def fit_name(text: str) -> str:
    """An outline's text made an outlet name (`^[\\w][\\w .-]*$`): apostrophes dropped, other
    signs and runs of spaces made one space, at most MAX_NAME characters."""
    s = unicodedata.normalize("NFKC", text)
    s = re.sub(r"['\u2018\u2019`]", "", s)
    s = re.sub(r"[^\w.-]+", " ", s)
    s = re.sub(r"^[\s.-]+", "", s)
    return s[:MAX_NAME].rstrip()


class _Outlines:
    """The parser's target: the outlines with an xmlUrl and the line each starts on; no tree
    is built, so memory is what is kept."""

    def __init__(self) -> None:
        self.parser: Any = None
        self.depth = self.count = self.line = 0
        self.root: tuple[str, int] | None = None
        self.found: list[tuple[int, dict[str, tuple[str, str]]]] = []

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        self.line = self.parser.parser.CurrentLineNumber
        self.depth += 1
        self.count += 1
        if self.depth > MAX_DEPTH:
            raise XmlTooBig(f"elements nested more than {MAX_DEPTH} deep")
        if self.count > MAX_ELEMENTS:
            raise XmlTooBig(f"more than {MAX_ELEMENTS:,} elements")
        local = tag.rpartition("}")[2]
        if self.root is None:
            self.root = (local, self.line)
        if local.lower() == "outline":
            # exports differ in case (xmlurl, XMLURL); namespaced attributes are someone else's
            attrs = {k.lower(): (k, v) for k, v in attrib.items() if "}" not in k}
            if "xmlurl" in attrs:
                self.found.append((self.line, attrs))

    def end(self, tag: str) -> None:
        self.depth -= 1

    def data(self, text: str) -> None:
        pass

    def close(self) -> None:
        return None


def _xml_problem(display: str, target: _Outlines, parser: Any, e: Exception) -> ConfigProblem:
    if isinstance(e, ParseError):
        return ConfigProblem(display, e.position[0], "(xml)",
                             "not well-formed XML: " + re.sub(r": line \d+, column \d+$", "", str(e)))
    expat = getattr(parser, "parser", None)
    line = getattr(expat, "CurrentLineNumber", None) or target.line or 1
    if isinstance(e, EntitiesForbidden):
        return ConfigProblem(display, line, "(xml)", f"declares the entity {e.name!r}: entities are not read "
                                                     "(they are how XML bombs work)")
    if isinstance(e, ExternalReferenceForbidden):
        return ConfigProblem(display, line, "(xml)", "refers to an external resource, which is not read")
    return ConfigProblem(display, line, "(xml)", f"refused: {e}")


def _opml_rows(raw: bytes, display: str) -> tuple[list[tuple[dict, dict, Origin]], list[ConfigProblem]]:
    target = _Outlines()
    parser = DefusedXMLParser(target=target, encoding="utf-8", forbid_dtd=False, forbid_entities=True,
                              forbid_external=True)
    target.parser = parser
    stream = utf8_stream(raw, detect_encoding(raw))
    try:
        while chunk := stream.read(_CHUNK):
            parser.feed(chunk)
        parser.close()
    except (ParseError, DefusedXmlException, XmlTooBig) as e:
        return [], [_xml_problem(display, target, parser, e)]
    if target.root is not None and target.root[0].lower() != "opml":
        return [], [ConfigProblem(display, target.root[1], "(xml)",
                                  f"not an OPML document: its root element is <{target.root[0]}>, not <opml>")]
    rows, problems = [], []
    for line, attrs in target.found:
        xml_attr, xml_url = attrs["xmlurl"][0], attrs["xmlurl"][1].strip()
        kind = attrs.get("type")
        if kind is not None and kind[1].strip().lower() not in ("rss", "atom"):
            problems.append(ConfigProblem(display, line, kind[0], "an outline with an xmlUrl is read as a feed "
                                          "when its type is rss or atom, or not given", kind[1]))
            continue
        if not xml_url:
            problems.append(ConfigProblem(display, line, xml_attr, "is empty: give the feed's URL"))
            continue
        name, name_attr = "", "text"
        for attr in ("text", "title"):
            if attr in attrs and (name := fit_name(attrs[attr][1])):
                name_attr = attrs[attr][0]
                break
        else:  # no text to name it by: the feed's host
            name, name_attr = fit_name(urlsplit(xml_url).hostname or ""), xml_attr
        if not name:
            problems.append(ConfigProblem(display, line, "text", "gives no outlet name: give the outline a text"))
            continue
        values: dict[str, Any] = {"name": name, "feeds": [xml_url]}
        names = {"": "outline", "name": name_attr, "feeds": xml_attr}
        cells = {"name": attrs[name_attr.lower()][1] if name_attr.lower() in attrs else name}
        html = attrs.get("htmlurl")
        if html is not None and html[1].strip():  # exports write htmlUrl="" for feeds without a site
            values["home"] = cells["home"] = html[1].strip()
            names["home"] = html[0]
        rows.append((values, cells, Origin(display, line, names)))
    return rows, problems


# ----------------------------------------------------------------------------------- CSV

def _cell_values(cell: str) -> list[str]:
    """Several values in one cell: split on '|' when it has one (a topic name may hold spaces),
    else on whitespace."""
    parts = cell.split("|") if "|" in cell else cell.split()
    return [p.strip() for p in parts if p.strip()]


def _column_key(header: str) -> str:
    return re.sub(r"[\s-]+", "_", header.strip().lower())


def _delimiter(text: str) -> str:
    """',' unless the header line uses ';' or tabs (spreadsheets in some locales save so)."""
    head = next((ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")
    counts = {d: head.count(d) for d in ",;\t"}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _csv_rows(raw: bytes, display: str) -> tuple[list[tuple[dict, dict, Origin]], list[ConfigProblem]]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        return [], [ConfigProblem(display, line, "(file)", "not UTF-8 (save the sheet as CSV UTF-8)")]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    header: list[str] | None = None
    keys: list[str] = []
    rows, problems = [], []
    end = 0
    try:
        for cells in reader:
            line, end = end + 1, reader.line_num
            if not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
                continue  # blank lines and comments
            if header is None:
                header, keys = cells, [_column_key(c) for c in cells]
                problems += _header_problems(header, keys, display, line)
                if problems:
                    return [], problems
                continue
            row = _csv_row(cells, header, keys, display, line)
            if isinstance(row, ConfigProblem):
                problems.append(row)
            else:
                rows.append(row)
    except csv.Error as e:
        problems.append(ConfigProblem(display, reader.line_num, "(csv)", f"not readable as CSV: {e}"))
    return rows, problems


def _header_problems(header: list[str], keys: list[str], display: str, line: int) -> list[ConfigProblem]:
    problems = []
    seen: set[str] = set()
    for written, key in zip(header, keys):
        if not key:
            continue
        if key not in CSV_COLUMNS:
            close = difflib.get_close_matches(key, CSV_COLUMNS, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"known columns: {', '.join(CSV_COLUMNS)}"
            problems.append(ConfigProblem(display, line, written.strip(), f"unknown column ({hint})"))
        elif key in seen:
            problems.append(ConfigProblem(display, line, written.strip(), "column given twice"))
        seen.add(key)
    if "name" not in keys:
        problems.append(ConfigProblem(display, line, "name", "the header row has no name column (the first row "
                                      "that is not blank or a # comment is the header)"))
    return problems


def _csv_row(cells: list[str], header: list[str], keys: list[str], display: str,
             line: int) -> tuple[dict, dict, Origin] | ConfigProblem:
    extra = [c for c in cells[len(keys):] if c.strip()]
    if extra:
        return ConfigProblem(display, line, "(row)", f"has {len(cells)} cells, the header names {len(keys)} "
                             "columns", extra[0])
    values: dict[str, Any] = {}
    given: dict[str, str] = {}
    names: dict[str, str] = {"": "(row)"}
    for column, (written, key, cell) in enumerate(zip(header, keys, cells), 1):
        cell = cell.strip()
        if not cell:
            continue
        if not key:
            return ConfigProblem(display, line, f"(column {column})", "a value under a column without a name", cell)
        if key == "home" and len(cell.split()) > 1:
            return ConfigProblem(display, line, written.strip(), "one URL: the outlet's front page", cell)
        given[key] = cell
        target = "schedule" if key == "every" else key
        names[target] = written.strip()
        if key in _LIST_COLUMNS:
            values[key] = _cell_values(cell)
        elif key == "every":
            values["schedule"] = {"every": cell}
        else:
            values[key] = cell
    if "name" not in values:
        return ConfigProblem(display, line, names.get("name", "name"), "every row names its outlet")
    cells_by_key = {("schedule" if k == "every" else k): v for k, v in given.items()}
    names.setdefault("name", "name")
    return values, cells_by_key, Origin(display, line, names, topics_given="topics" in values,
                                        mode_given="capture_mode" in values)

