"""Config dataclasses as command-line flags and YAML files: the docstring under each field is its
--help text; `resolve_config` merges a YAML file and the flags given (flags win)."""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from dataclasses import fields
from functools import cache
from pathlib import Path

from reftune.errors import ReftuneError


@cache
def field_docs(cls) -> dict[str, str]:
    """The docstring under each field, read from the source of `cls` and its bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)):
                docs[node.target.id] = " ".join(str(after.value.value).split())
    return docs


@cache
def type_hints(cls) -> dict:
    """typing.get_type_hints evaluates every annotation of the class: once per class, not per field."""
    return typing.get_type_hints(cls)


def _scalar_type(cls, name: str):
    hint = type_hints(cls)[name]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint


def add_config_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """One --flag per field; defaults stay out of the namespace so a flag given can win over YAML."""
    parser.add_argument("--config", help="a YAML file of options (field names as keys); flags override it")
    for field in fields(cls):
        kind = _scalar_type(cls, field.name)
        default = field.default if field.default is not dataclasses.MISSING else None
        help_text = f"{field_docs(cls).get(field.name, '')} (default: {default})".replace("%", "%%")  # argparse formats it
        flag = "--" + field.name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=help_text)
        else:
            parser.add_argument(flag, type=kind, default=argparse.SUPPRESS, help=help_text,
                                metavar=field.name.upper())


def read_yaml_options(path: str | Path, cls) -> dict:
    import yaml

    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ReftuneError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ReftuneError(f"config file {path} is not valid YAML: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ReftuneError(f"config file {path} must hold a mapping of option: value")
    options = {str(key).replace("-", "_"): value for key, value in loaded.items()}
    names = {field.name for field in fields(cls)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ReftuneError(f"config file {path}: unknown options {unknown} for this command; "
                           f"known: {sorted(names)}")
    return {name: coerce(value, _scalar_type(cls, name), f"config file {path}: {name}")
            for name, value in options.items()}


def coerce(value, kind, where: str):
    """`value` as `kind`, accepting every spelling people write: YAML 1.1 reads 1e-3 as a string,
    a quoted "8" is a string too.

    >>> coerce("1e-3", float, "lr"), coerce(3, float, "lr"), coerce("8", int, "n"), coerce("yes", bool, "b")
    (0.001, 3.0, 8, True)
    """
    if value is None or (isinstance(value, kind) and not (kind is int and isinstance(value, bool))):
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and kind in (int, float):
        try:
            number = float(value.replace("_", ""))
        except ValueError:
            number = None
        if number is not None and (kind is float or number.is_integer()):
            return kind(number)
    if isinstance(value, str) and kind is bool and value.strip().lower() in BOOLEAN_WORDS:
        return BOOLEAN_WORDS[value.strip().lower()]
    raise ReftuneError(f"{where} should be {kind.__name__}, got {value!r}")


BOOLEAN_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def resolve_config(cls, args: argparse.Namespace):
    """YAML options (if --config), then the flags given; validated by the dataclass."""
    options = read_yaml_options(args.config, cls) if getattr(args, "config", None) else {}
    names = {field.name for field in fields(cls)}
    options.update({name: value for name, value in vars(args).items() if name in names})
    return cls(**options)


def config_to_yaml(config) -> str:
    import yaml

    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)


def config_from_yaml_text(text: str) -> dict:
    """A saved config.yaml back as a dict (the inverse of config_to_yaml)."""
    import yaml

    return yaml.safe_load(text) or {}
