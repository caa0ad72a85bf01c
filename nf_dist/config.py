"""Typed, frozen configs and their YAML serialisation.

Every job's settings are a frozen dataclass; YAML (``yaml.safe_load``) is only how they are written
down. Loading rejects unknown keys (naming the key, its place and the known ones), checks types, and
applies ``--set key.sub=value`` overrides before validation.

Example:
    >>> @dataclasses.dataclass(frozen=True)
    ... class Opt:
    ...     lr: float = 0.5
    >>> from_dict(Opt, {"lr": 0.1}).lr
    0.1
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from nf_dist.errors import ConfigError

T = TypeVar("T")
logger = logging.getLogger(__name__)


def _describe(where: str) -> str:
    return where or "<root>"


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a type annotation, converting dicts to nested dataclasses."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(annotation, value, where)
    if origin in (tuple, list, Sequence):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_type = args[0] if args else Any
        items = [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is not list else items
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        value_type = args[1] if len(args) == 2 else Any
        return {k: _coerce(v, value_type, f"{where}.{k}") for k, v in value.items()}
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _moved_keys(cls: type, data: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    """Keys a config class moved (its ``MOVED_KEYS``: old key -> ``section.key``, or a new name)
    put where they now live, with a deprecation warning naming both; kept for one release."""
    moved: Mapping[str, str] = getattr(cls, "MOVED_KEYS", {})
    old = [key for key in data if key in moved]
    if not old:
        return data
    result = {k: v for k, v in data.items() if k not in moved}
    for key in old:
        place = f"{where}.{key}" if where else key
        logger.warning(
            "config key %r is deprecated and will be removed in the next release; write it as %r",
            place,
            f"{where}.{moved[key]}" if where else moved[key],
        )
        section, _, name = moved[key].rpartition(".")
        target = result if not section else dict(_section(result.get(section)))
        if name in target:
            raise ConfigError(f"{place} and {moved[key]} are both set; keep only {moved[key]}")
        target[name] = data[key]
        if section:
            result[section] = target
    return result


def _section(value: Any) -> Mapping[str, Any]:
    """A nested section as a mapping: a dataclass instance as its fields, None as empty."""
    if value is None:
        return {}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return value  # type: ignore[no-any-return]


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{_describe(where)}: expected a mapping, got {type(data).__name__}")
    assert dataclasses.is_dataclass(cls)
    data = _moved_keys(cls, data, where)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), fields, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        place = f"{where}.{key}" if where else str(key)
        raise ConfigError(
            f"unknown config key {place!r}.{hint} Known keys here: {', '.join(sorted(fields))}"
        )
    kwargs = {
        name: _coerce(value, hints[name], f"{where}.{name}" if where else name)
        for name, value in data.items()
    }
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{_describe(where)}: {exc}") from exc


def to_dict(config: Any) -> dict[str, Any]:
    """A plain, YAML-safe dict of a (nested) dataclass; tuples become lists."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    result = plain(config)
    assert isinstance(result, dict)
    return result


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=[1, 2]"]`` into a nested dict; values are parsed as YAML scalars."""
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key=value (e.g. lr=0.1)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {exc}") from exc
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier override")
        node[parts[-1]] = value
    return nested


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge ``update`` into a copy of ``base``."""
    result = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merge(result[key], value)
        else:
            result[key] = value
    return result


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with ``safe_load``; a missing or malformed file is a ConfigError."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    base: Mapping[str, Any] | None = None,
) -> T:
    """Defaults of ``cls``, then ``base``, then the YAML file, then ``--set`` overrides (moved
    keys are put in place within each layer, so a later layer wins as usual)."""
    data: dict[str, Any] = dict(_moved_keys(cls, base or {}, ""))
    if path is not None:
        data = merge(data, _moved_keys(cls, read_yaml(path), ""))
    data = merge(data, _moved_keys(cls, parse_overrides(overrides), ""))
    where = str(path) if path is not None else ""
    try:
        return from_dict(cls, data)
    except ConfigError as exc:
        raise ConfigError(f"{where + ': ' if where else ''}{exc}") from exc


def dump_yaml(config: Any) -> str:
    """Serialise a config dataclass as YAML that :func:`load_config` reads back unchanged."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)
