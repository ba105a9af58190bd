"""Pydantic's validation errors turned into ConfigProblems a user can act on: the line of the
YAML file each is on (from the composed node tree), the key path with list items named by
their `name`, the offending value unless it is a secret, and a did-you-mean for unknown keys.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .errors import ConfigProblem
from .settings import SECRET_KEYS, Config


def node_line(root: yaml.Node | None, loc: tuple[Any, ...]) -> int:
    """Line (1-based) of the deepest YAML node along `loc`; for a missing key, its parent's."""
    node = root
    line = (root.start_mark.line + 1) if root is not None else 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == part:
                    line, node = k.start_mark.line + 1, v  # a key is shown where it is written
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def value_at(data: Any, loc: tuple[Any, ...]) -> Any:
    """The value at `loc` in the YAML as loaded; None when there is none."""
    cur = data
    for part in loc:
        try:
            cur = cur[part]
        except (KeyError, IndexError, TypeError):
            return None
    return cur


def loc_path(data: Any, loc: tuple[Any, ...]) -> str:
    """Dotted key path; list items are named by their `name` when they have one."""
    out: list[str] = []
    cur = data
    for part in loc:
        if isinstance(part, int):
            item = cur[part] if isinstance(cur, list) and part < len(cur) else None
            label = item.get("name") if isinstance(item, dict) else None
            out[-1:] = [f"{out[-1] if out else ''}[{label if isinstance(label, str) else part}]"]
        else:
            out.append(str(part))
        cur = value_at(cur, (part,))
    return ".".join(out) or "(top level)"


def validation_problems(file: str, root: yaml.Node | None, data: Any, err: ValidationError,
                        model: type[BaseModel] = Config) -> list[ConfigProblem]:
    """`model` is what was validated against `data` (for the did-you-mean of unknown keys)."""
    problems = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = e["msg"].removeprefix("Value error, ")
        value: Any = None
        if e["type"] == "extra_forbidden":
            msg = "unknown key" + _did_you_mean(loc, model)
            value = None
        elif e["type"] == "missing":
            msg = "required key is missing"
        else:
            value = value_at(data, loc)
            if isinstance(value, (dict, list)):
                value = None
        if any(part in SECRET_KEYS for part in loc if isinstance(part, str)):
            value = None
            msg = re.sub(r"\(got .*\)$", "", msg)
        problems.append(ConfigProblem(file, node_line(root, loc), loc_path(data, loc), msg, value))
    problems.sort(key=lambda p: p.line)
    return problems


def _model_at(loc: tuple[Any, ...], top: type[BaseModel] = Config) -> type[BaseModel] | None:
    """The settings model that holds the last key of `loc` (list indexes skipped)."""
    model: Any = top
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return None
        model = _inner_model(field.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    """The model inside list[M], Optional[M], M | None."""
    for arg in getattr(annotation, "__args__", ()) or ():
        inner = _inner_model(arg)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return annotation


def _did_you_mean(loc: tuple[Any, ...], top: type[BaseModel] = Config) -> str:
    if not loc or not isinstance(loc[-1], str):
        return ""
    model = _model_at(loc, top)
    if model is None:
        return ""
    names = list(model.model_fields)
    key = loc[-1].strip().lower().replace("-", "_").replace(" ", "_")
    close = [n for n in names if n == key] or difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(names)})"
