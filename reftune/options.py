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


def _scalar_type(cls, name: str):
    hint = typing.get_type_hints(cls)[name]
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
    for name, value in options.items():
        kind = _scalar_type(cls, name)
        if value is not None and not isinstance(value, kind) and not (kind is float and isinstance(value, int)):
            raise ReftuneError(f"config file {path}: {name} should be {kind.__name__}, got {value!r}")
    return options


def resolve_config(cls, args: argparse.Namespace):
    """YAML options (if --config), then the flags given; validated by the dataclass."""
    options = read_yaml_options(args.config, cls) if getattr(args, "config", None) else {}
    names = {field.name for field in fields(cls)}
    options.update({name: value for name, value in vars(args).items() if name in names})
    return cls(**options)


def config_to_yaml(config) -> str:
    import yaml

    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)
