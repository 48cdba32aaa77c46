"""Typed configuration: dataclasses whose fields carry their own help text, built from nested dicts
(YAML files) and ``key.sub=value`` overrides, the one override syntax of every ``entropic`` command.

- ``option(default, "help")`` declares a field with its help text; ``--help``, the TRL config and the
  verl config all read it from there.
- ``build(cls, data)`` validates every value against the field's type and the class's
  ``__post_init__``; an error names the field (``rollout.group_size``).
- A section whose class depends on a value (the ``method`` section's fields depend on
  ``method.name``) declares ``option(..., select=fn)``: ``fn(name)`` returns the class (``name``
  None when the section does not give one).
- ``section=value`` for a section with a ``name`` field means ``section.name=value``
  (``method=grpo``, as Hydra users write it).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, Field
from pathlib import Path

import yaml


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field (and the file it came from)."""


def option(default=MISSING, help: str = "", *, factory=MISSING, select: Callable[[str], type] | None = None) -> Field:
    """A dataclass field with its help text; ``factory`` for mutable defaults; ``select`` for a
    section whose class is chosen by its ``name`` value."""
    metadata = {"help": help} | ({"select": select} if select else {})
    return dataclasses.field(default=default, default_factory=factory, metadata=metadata)


def help_of(field: Field) -> str:
    return field.metadata.get("help", "")


def read_yaml(path: str | Path) -> dict:
    """A YAML file's top-level mapping (``yaml.safe_load``); errors name the file."""
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(loaded).__name__}")
    return loaded


def parse_overrides(cls: type, items: list[str] | tuple[str, ...]) -> dict:
    """``["key.sub=value", ...]`` to a nested dict for ``build(cls, ...)``; values are read as YAML
    (``3e-4``, ``true``, ``null``, ``[a, b]``). Unknown keys are refused with the fields there are."""
    data: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{item!r}: expected key=value, e.g. method.name=grpo")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        keys, hint = _resolve_keys(cls, key.split("."), value, item)
        if hint is not None and _raw_text_wanted(hint, value):  # template={prompt}: text, not a YAML mapping
            value = raw
        node = data
        for part in keys[:-1]:
            node = node.setdefault(part, {})
        node[keys[-1]] = value
    return data


def merge(base: dict, overlay: dict) -> dict:
    """``overlay`` on top of ``base``, section by section. A section whose ``name`` changes is
    replaced, not merged: the fields of one method do not carry over to another."""
    out = dict(base)
    for key, value in overlay.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict) and value.get("name", old.get("name")) == old.get("name"):
            out[key] = merge(old, value)
        else:
            out[key] = value
    return out


def build(cls: type, data, prefix: str = ""):
    """An instance of the dataclass ``cls`` from a nested dict, every value checked."""
    section = prefix.rstrip(".") or "config"
    if not isinstance(data, dict):
        raise ConfigError(f"{section}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(data) - set(names), key=str)
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown field; {section} has {', '.join(names)}")
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name not in data:
            continue
        value, name = data[field.name], f"{prefix}{field.name}"
        section_class = _section_class(field, hints[field.name], value, name)
        if section_class is not None:
            kwargs[field.name] = build(section_class, value, f"{name}.")
        else:
            kwargs[field.name] = _coerce(value, hints[field.name], name)
    try:
        return cls(**kwargs)
    except ValueError as exc:  # __post_init__ messages start with the field name
        raise ConfigError(f"{prefix}{exc}") from None


def describe(cls: type, prefix: str = "", instance=None) -> list[str]:
    """One line per field, ``prefix.name = default  help``, sections expanded (for ``--help``)."""
    instance = instance if instance is not None else cls()
    hints = typing.get_type_hints(cls)
    lines = []
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        value = getattr(instance, field.name)
        if dataclasses.is_dataclass(value):
            lines += describe(type(value), f"{prefix}{field.name}.", value)
            continue
        shown = "null" if value is None else value
        lines.append(f"  {prefix}{field.name} = {shown}  ({_type_name(hints[field.name])}) {help_of(field)}".rstrip())
    return lines


def _raw_text_wanted(hint, value) -> bool:
    """A text field given something YAML reads as another type (``{prompt}`` is a mapping in YAML)."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if str not in options or value is None or isinstance(value, str):
        return False
    return not any(isinstance(value, o) for o in options if isinstance(o, type) and o is not type(None))


def _resolve_keys(cls: type, keys: list[str], value, item: str) -> tuple[list[str], object]:
    """The key path, checked against the classes, and the field's type hint (None where the
    class is chosen later); ``section=value`` becomes ``section.name=value``."""
    path: list[str] = []
    hint = None
    for i, key in enumerate(keys):
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init} if cls is not None else None
        if fields is not None and key not in fields:
            where = ".".join(path) or "the config"
            raise ConfigError(f"{item!r}: {'.'.join([*path, key])} is not a field; {where} has {', '.join(fields)}")
        path.append(key)
        if fields is None:
            continue
        field = fields[key]
        hint = typing.get_type_hints(cls)[key]
        if "select" in field.metadata or dataclasses.is_dataclass(hint):
            if i == len(keys) - 1:  # a whole section given one value
                if isinstance(value, dict):
                    return path, None
                if "select" in field.metadata or "name" in {f.name for f in dataclasses.fields(hint)}:
                    return [*path, "name"], str
                names = ", ".join(f"{key}.{f.name}" for f in dataclasses.fields(hint))
                raise ConfigError(f"{item!r}: {key} is a section; set its fields: {names}")
            cls = None if "select" in field.metadata else hint  # a selected section is checked when built
            hint = None
        else:
            cls = None
            if i < len(keys) - 1:
                raise ConfigError(f"{item!r}: {'.'.join(path)} is a value, not a section")
    return path, hint


def _section_class(field: Field, hint, value, name: str) -> type | None:
    if "select" in field.metadata:
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a mapping, got {value!r}")
        try:
            return field.metadata["select"](value.get("name"))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return hint if dataclasses.is_dataclass(hint) else None


def _coerce(value, hint, name: str):
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{name}: must not be null")
    for option_type in options:
        if option_type is bool and isinstance(value, bool):
            return value
        if option_type is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        # a number, or text that is one (YAML reads 3e-3 as text)
        if (
            option_type is float
            and isinstance(value, (int, float, str))
            and not isinstance(value, bool)
            and _is_float(value)
        ):
            number = float(value)
            if not math.isfinite(number):
                raise ConfigError(f"{name}: expected a finite number, got {value!r}")
            return number
        if option_type is str and isinstance(value, str):
            return value
        if option_type is dict and isinstance(value, dict):
            return value
        if typing.get_origin(option_type) is list:  # a YAML list, or one value (comma-separated for numbers)
            (item_type,) = typing.get_args(option_type)
            items = value if isinstance(value, list) else _split(value, item_type)
            if items is not None:
                return [_coerce(v, item_type, f"{name}[{i}]") for i, v in enumerate(items)]
    raise ConfigError(f"{name}: expected {_type_name(hint)}, got {value!r}")


def _split(value, item_type) -> list | None:
    if isinstance(value, str) and item_type is int:
        try:
            return [int(v) for v in value.split(",")]
        except ValueError:
            return None
    if isinstance(value, item_type) and not isinstance(value, bool):
        return [value]
    return None


def _type_name(hint) -> str:
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    return " or ".join(
        "null" if o is type(None) else (str(o).replace("typing.", "") if typing.get_origin(o) else o.__name__)
        for o in options
    )


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def check_at_least(name: str, value, minimum) -> None:
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
