"""Typed stage configs read from params.yaml, with profile and command-line overrides.

Each stage declares one dataclass. `load_stage_config` reads `params.yaml`, takes the
stage's section, merges the active profile's overrides (`profiles.<profile>.<stage>`), then
command-line overrides (`key=value` or `a.b=value`, values parsed as YAML), and builds the
dataclass. Unknown keys and wrong types fail loudly with the offending key named: a typo in
params.yaml must not silently fall back to a default.

Top-level sections shared by many stages are read the same way, with their own prefix on the
command line: `llm.key=value` for the `llm:` section, `engine.key=value` for `engine:` (how the
data stages run their shards: tasks/common/engine.py).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml

T = TypeVar("T")
PARAMS_FILE = "params.yaml"


class ConfigError(ValueError):
    pass


def project_root() -> Path:
    """The project root: MEDX_PROJECT_ROOT, else the directory holding params.yaml above CWD."""
    env = os.environ.get("MEDX_PROJECT_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / PARAMS_FILE).exists():
            return d
    return here


def load_params(path: str | os.PathLike | None = None) -> dict:
    path = Path(path) if path else project_root() / PARAMS_FILE
    with open(path, encoding="utf-8") as f:
        params = yaml.safe_load(f) or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return params


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_overrides(argv: list[str]) -> dict:
    """['a.b=1', 'c=x'] -> {'a': {'b': 1}, 'c': 'x'} (values parsed as YAML scalars)."""
    out: dict = {}
    for item in argv:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(raw) if raw else ""
    return out


def build(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass `cls` from a mapping, checking keys and types recursively."""
    return _coerce(cls, data, where)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
        kwargs = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in value.items()}
        try:
            return tp(**kwargs)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: {e}") from None
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError("; ".join(errors))
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        kt, vt = typing.get_args(tp) or (Any, Any)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return {k: _coerce(vt, v, f"{where}.{k}") for k, v in value.items()}
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {typing.get_args(tp)}")
        return value
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{where}: expected {tp.__name__}, got bool")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {type(value).__name__} ({value!r})")
    return value


def stage_section(stage: str, params: dict, overrides: dict | None = None) -> tuple[dict, str]:
    """The stage's merged section and the active profile name."""
    profile = (overrides or {}).get("profile") or params.get("profile", "default")
    profiles = params.get("profiles") or {}
    if profile != "default" and profile not in profiles:
        raise ConfigError(f"unknown profile {profile!r}; known: {['default', *sorted(profiles)]}")
    section = params.get(stage) or {}
    section = deep_merge(section, (profiles.get(profile) or {}).get(stage) or {})
    section = deep_merge(section, {k: v for k, v in (overrides or {}).items() if k != "profile"})
    return section, profile


def load_stage_config(stage: str, cls: type[T], argv: list[str] | None = None,
                      params_path: str | os.PathLike | None = None) -> tuple[T, str]:
    """(config, profile) for `stage` from params.yaml + profile + `argv` overrides."""
    params = load_params(params_path)
    overrides = parse_overrides(argv or [])
    section, profile = stage_section(stage, params, overrides)
    # Shared top-level keys (e.g. data_root) flow into every stage that declares them.
    for key in ("data_root", "seed"):
        if key in params and key not in section and key in {f.name for f in dataclasses.fields(cls)}:
            section[key] = params[key]
    return build(cls, section, stage), profile


def resolve(path: str) -> Path:
    """A config path, relative paths taken from the project root."""
    p = Path(path)
    return p if p.is_absolute() else project_root() / p


def split_section_overrides(argv: Sequence[str], section: str) -> tuple[list[str], list[str]]:
    """Split `key=value` overrides into (the rest, `<section>.*` overrides without the prefix).

    `profile=...` goes to both so the section gets the same profile as the stage.
    """
    prefix = f"{section}."
    rest, own = [], []
    for item in argv:
        if item.startswith(prefix):
            own.append(item[len(prefix):])
        else:
            rest.append(item)
            if item.startswith("profile="):
                own.append(item)
    return rest, own


def split_llm_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split `key=value` overrides into (stage overrides, llm overrides without the `llm.` prefix).

    `profile=...` goes to both so the llm section gets the same profile as the stage.
    """
    return split_section_overrides(argv, "llm")
