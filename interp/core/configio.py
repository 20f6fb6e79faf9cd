"""Config dataclasses <-> YAML/dicts, validated, with errors that name the offending key.

Configs across the project are plain dataclasses whose fields carry ``metadata={"help": ...}``
(the TRL style), so docs, CLI flags and YAML files come from one source.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from interp.core.artifacts import InputError, atomic_write_text, read_text, to_jsonable

T = TypeVar("T")


class ConfigError(InputError):
    """A config key is unknown, missing or of the wrong type; the message names the key."""


def check_range(key: str, value: Any, *, ge: float | None = None, gt: float | None = None,
                le: float | None = None, allow_none: bool = False) -> None:
    """Raise :class:`ConfigError` naming ``key`` unless ``value`` lies in the given bounds."""
    if value is None:
        if allow_none:
            return
        raise ConfigError(f"{key}: must be set, got null")
    bad = ((ge is not None and value < ge) or (gt is not None and value <= gt)
           or (le is not None and value > le))
    if bad:
        parts = [f">= {ge:g}" if ge is not None else "", f"> {gt:g}" if gt is not None else "",
                 f"<= {le:g}" if le is not None else ""]
        raise ConfigError(f"{key}: must be {' and '.join(p for p in parts if p)}, got {value!r}"
                          + ("; use null for all" if allow_none else ""))


def split_assignments(items: list[str] | None, *, flag: str = "--set") -> dict[str, str]:
    """Return ``{key: raw value}`` for ``KEY=VALUE`` command-line items (values parsed later, per key)."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"{flag} expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v
    return out


def parse_value(key: str, text: str) -> Any:
    """Return a ``--set KEY=VALUE`` value parsed as YAML, with an error naming the key."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {key}={text}: the value is not valid YAML ({getattr(e, 'problem', e)}); "
                          "quote strings and close brackets, e.g. --set evaluation.k=5 or "
                          "--set retrieval.layer_range=[1,4]") from None


_GIVEN = "_config_flags_given"  # namespace attribute: the dests of the field flags on the command line


class _FieldFlag(argparse.Action):
    """Store a field flag's value and remember that it was given, so a preset keeps every other field."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        setattr(namespace, _GIVEN, {*getattr(namespace, _GIVEN, ()), self.dest})


class _RenamedFlag(argparse.Action):
    """Refuse a former flag name (exit 2), naming the new one."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        raise argparse.ArgumentError(self, f"was renamed {self.const} (field {self.const[2:].replace('-', '_')})")


def _flag_parser(tp: Any, key: str) -> Any:
    """Return the argparse ``type`` for a field of type ``tp``: text for strings, YAML for the rest."""
    args = get_args(tp) if get_origin(tp) in (Union, types.UnionType) else ()
    optional = type(None) in args
    inner = [a for a in args if a is not type(None)] if args else [tp]
    literal_str = get_origin(inner[0]) is Literal and all(isinstance(v, str) for v in get_args(inner[0]))

    def parse(text: str) -> Any:
        if optional and text in ("null", "None", "~"):
            return None
        if len(inner) == 1 and (inner[0] in (str, Path) or literal_str):
            return text  # an output dir named 2024 stays a string
        return parse_value(key, text)

    return parse


_METAVARS: dict[Any, str] = {int: "N", float: "X", str: "TEXT", int | None: "N|null", float | None: "X|null",
                             str | None: "TEXT|null"}


def flag_name(name: str) -> str:
    """Return the command-line flag of config field ``name`` (``per_device_train_batch_size`` ->
    ``--per-device-train-batch-size``)."""
    return "--" + name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser, cls: type, *, fields: list[str] | None = None,
                     flags: dict[str, str] | None = None) -> None:
    """Add one flag per field of dataclass ``cls``: its help, default and choices come from the field.

    The flag's default is the dataclass default (shown in ``--help``); :func:`given_config_flags`
    returns only the flags actually given, so they override a preset without resetting the rest.
    ``flags`` renames a field's flag and its ``args`` attribute (``{"name": "--model"}``: ``args.model``).
    Former field names (``cls.renamed_fields``) get a hidden flag that stops with the new name.
    """
    hints = get_type_hints(cls)
    chosen = set(fields) if fields is not None else None
    for f in dataclasses.fields(cls):
        if not f.init or (chosen is not None and f.name not in chosen):
            continue
        tp = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        flag = (flags or {}).get(f.name, flag_name(f.name))
        kw: dict[str, Any] = dict(dest=flag[2:].replace("-", "_"), default=default, action=_FieldFlag,
                                  type=_flag_parser(tp, f.name),
                                  help=field_help(cls, f.name).replace("%", "%%") + " (default: %(default)s)")
        if get_origin(tp) is Literal:
            kw["choices"] = list(get_args(tp))
        else:
            kw["metavar"] = _METAVARS.get(tp, "YAML")
        if tp is bool:
            kw.update(nargs="?", const=True, metavar="true|false")
        parser.add_argument(flag, **kw)
    for old, new in getattr(cls, "renamed_fields", {}).items():
        if chosen is None or new in chosen:
            parser.add_argument(flag_name(old), action=_RenamedFlag, const=flag_name(new), nargs="?",
                                help=argparse.SUPPRESS)


def given_config_flags(args: argparse.Namespace) -> dict[str, Any]:
    """Return ``{dest: value}`` for the field flags given on the command line (see :func:`add_config_flags`);
    ``dest`` is the field name unless ``flags`` renamed its flag."""
    return {name: getattr(args, name) for name in sorted(getattr(args, _GIVEN, ()))}


def field_help(cls: type, name: str) -> str:
    """Return the help text of dataclass field ``name``."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return str(f.metadata.get("help", ""))
    raise KeyError(name)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{key}: must be one of {list(get_args(tp))}, got {value!r}")
        return value
    if origin in (list, tuple, typing.Sequence):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        (inner,) = get_args(tp)[:1] or (Any,)
        items = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        kt, vt = get_args(tp) or (Any, Any)
        return {k: _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for {tp.__name__}, got {value!r}")
        return config_from_dict(tp, value, where=key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-5 as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise ConfigError(f"{key}: expected a path, got {value!r}")
    return value


def config_from_dict(cls: type[T], data: dict[str, Any], *, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types by name."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    prefix = f"{where}." if where else ""
    renamed = getattr(cls, "renamed_fields", {})
    old = sorted(set(data) & set(renamed) - set(fields))
    if old:
        new = renamed[old[0]]
        raise ConfigError(f"config key {prefix}{old[0]} was renamed {prefix}{new} ({cls.__name__}); "
                          f"write {prefix}{new} instead")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix}{unknown[0]!s}"
            f"{' (and ' + ', '.join(unknown[1:]) + ')' if unknown[1:] else ''}; "
            f"valid keys for {cls.__name__}: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(value, hints[name], f"{prefix}{name}")
    missing = [n for n, f in fields.items() if n not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"missing required config key {prefix}{missing[0]} ({cls.__name__})")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{where or cls.__name__}: {e}") from e


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Return a config dataclass as plain JSON/YAML types."""
    return to_jsonable(cfg)


def preset_names(folder: str | Path) -> list[str]:
    """Return the names of the presets in ``folder``: its ``NAME.yaml`` files, sorted."""
    return sorted(p.stem for p in Path(folder).glob("*.yaml"))


def preset_file(folder: str | Path, name: str, *, what: str = "preset",
                renamed: dict[str, str] | None = None) -> Path:
    """Return ``folder/NAME.yaml``: presets are named YAML files, one form for every kind of config.

    An unknown name is a :class:`ConfigError` listing the presets (a former name, in ``renamed``,
    names its new one).
    """
    path = Path(folder) / f"{name}.yaml"
    renamed = renamed or {}
    if name in renamed and not path.is_file():
        raise ConfigError(f"{what} {name!r} was renamed {renamed[name]!r}; use {renamed[name]!r}")
    if not name or Path(name).name != name or not path.is_file():
        raise ConfigError(f"unknown {what} {name!r}; choose one of {', '.join(preset_names(folder))}")
    return path


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Return the mapping in YAML file ``path`` (empty file: ``{}``); errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist" + (" (it is a directory)" if path.is_dir() else ""))
    text = read_text(path, what="config file", max_bytes=16 << 20)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "context_mark", None) or getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: invalid YAML ({getattr(e, 'problem', e)})") from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys (e.g. `seed: 0`), not a YAML "
                          f"{type(data).__name__}")
    return data


def load_config(cls: type[T], path: str | Path, overrides: dict[str, Any] | None = None) -> T:
    """Read a YAML config file into ``cls``; errors name the file and the key."""
    data = {**read_config_file(path), **(overrides or {})}
    try:
        return config_from_dict(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write a config dataclass as YAML atomically."""
    return atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True))


def replace(cfg: T, **changes: Any) -> T:
    """Return a copy of ``cfg`` with ``changes`` validated like YAML keys."""
    merged = {**config_to_dict(cfg), **changes}
    return config_from_dict(type(cfg), merged)
