"""The check every config runs before any other: each field holds what its annotation says (a whole
number, a finite number, true or false, a string; None only where the annotation allows it). The CLI
and YAML already convert their text (reftune.config.options.coerce); this catches the Python API's values,
and infinities or NaN from anywhere, in one line naming the field, before any folder is written."""
from __future__ import annotations

import math
import numbers
import os
import types
import typing
from dataclasses import fields
from functools import cache

from reftune.errors import ReftuneError

ACCEPTS = {bool: "true or false", int: "a whole number", float: "a finite number", str: "a string"}


@cache
def field_kinds(cls) -> dict[str, tuple[type, bool]]:
    """name -> (the field's scalar type, whether None is allowed), from the dataclass annotations.

    >>> from reftune.config import SFTConfig
    >>> kinds = field_kinds(SFTConfig)
    >>> kinds["learning_rate"], kinds["max_steps"], kinds["output"]
    ((<class 'float'>, False), (<class 'int'>, True), (<class 'str'>, True))
    """
    hints = typing.get_type_hints(cls)
    kinds = {}
    for field in fields(cls):
        hint = hints[field.name]
        union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
        args = typing.get_args(hint) if union else (hint,)
        [kind] = [arg for arg in args if arg is not type(None)]
        kinds[field.name] = (kind, type(None) in args)
    return kinds


def as_kind(value, kind: type):
    """`value` as the plain `kind` it stands for, or None when it is not one: numpy and other
    numbers.Real scalars count as numbers (bools do not), 2.0 as a whole number, a path as a string.

    >>> as_kind(3, float), as_kind(2.0, int), as_kind(1.5, int), as_kind(float("inf"), float), as_kind(1, bool)
    (3.0, 2, None, None, None)
    """
    if kind is bool:
        return value if isinstance(value, bool) else None
    if kind is str:
        path = os.fspath(value) if isinstance(value, os.PathLike) else value
        return path if isinstance(path, str) else None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        return None
    if kind is int:
        return int(value) if float(value).is_integer() else None
    return float(value)


def check_fields(config) -> None:
    """Refuse the first field whose value is not of its annotated kind; store plain Python values (a
    numpy float would not save to config.yaml)."""
    for name, (kind, optional) in field_kinds(type(config)).items():
        value = getattr(config, name)
        if value is None and optional:
            continue
        converted = as_kind(value, kind)
        if converted is None:
            raise ReftuneError(f"{name} must be {ACCEPTS[kind]}{' (or None)' if optional else ''}, got {value!r}")
        setattr(config, name, converted)
