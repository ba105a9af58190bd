"""config/example.yaml documents every key the config knows, with its default (the README says
so): a key added to a settings model and not to the example fails here."""

from __future__ import annotations

import typing
from pathlib import Path

import yaml
from pydantic import BaseModel

from archiver.config import load_config
from archiver.settings import DEFAULT_STORAGE_ROOT, Config

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "example.yaml"


def _model(annotation: object) -> tuple[type[BaseModel] | None, bool]:
    """The settings model a field holds, and whether it holds a list of them."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg, typing.get_origin(annotation) is list
    return None, False


def known_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every key path a config may have: storage.warc.prefix, outlets[].schedule.every ..."""
    out = set()
    for name, field in model.model_fields.items():
        path = prefix + (field.alias or name)  # the key as written ("from", not from_)
        out.add(path)
        sub, listed = _model(field.annotation)
        if sub is not None:
            out |= known_keys(sub, path + ("[]." if listed else "."))
    return out


def written_keys(data: object, prefix: str = "") -> set[str]:
    """Every key path the YAML has; a list's items together under NAME[]."""
    out: set[str] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            out.add(prefix + str(key))
            out |= written_keys(value, f"{prefix}{key}.")
    elif isinstance(data, list):
        for item in data:
            out |= written_keys(item, prefix[:-1] + "[].")
    return out


def test_the_example_names_every_key_of_every_settings_model():
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    missing = sorted(known_keys(Config) - written_keys(data))
    assert not missing, f"config/example.yaml does not document: {', '.join(missing)}"


def test_the_example_gives_every_section_its_default():
    example = load_config(EXAMPLE)
    # written relative to the file: ../storage, the repository's storage/
    assert example.storage_root == EXAMPLE.resolve().parent.parent / DEFAULT_STORAGE_ROOT
    defaults = Config(topics=example.config.topics, outlets=example.config.outlets)
    for section in Config.model_fields:
        if section in ("topics", "outlets", "alerts"):  # lists: the example's own, no defaults
            continue
        got, want = getattr(example.config, section).model_dump(), getattr(defaults, section).model_dump()
        if section == "storage":
            got.pop("root"), want.pop("root")
        assert got == want, f"{section}: the example's values differ from the defaults"
