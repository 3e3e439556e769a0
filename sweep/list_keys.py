"""`python -m sweep.run --list-keys`: every grid key with its type, default and the
values it allows, read from the schema itself (sweep/config.py)."""

from __future__ import annotations

import json
from types import UnionType
from typing import Annotated, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from sweep.config import GridConfig


def _type_name(annotation) -> str:
    """A readable type: `int | None`, `list of int`, `choice`."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type_name(args[0])
    if origin is Literal:
        return "choice"
    if origin in (Union, UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is tuple:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return "mapping"
    return (
        "null"
        if annotation is type(None)
        else getattr(annotation, "__name__", str(annotation))
    )


def _bounds(metadata) -> list[str]:
    words = []
    for item in metadata:
        for attribute, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="),
                                ("pattern", "matching")):  # fmt: skip
            value = getattr(item, attribute, None)
            if value is not None:
                words.append(f"{sign} {value}")
    return words


def _allowed(field) -> str:
    """The values a field accepts, from its Literal or its bounds."""

    def walk(annotation) -> list[str]:
        origin, args = get_origin(annotation), get_args(annotation)
        if origin is Literal:
            return [", ".join(map(str, args))]
        if origin is Annotated:
            return walk(args[0]) + _bounds(args[1:])
        return [w for a in args for w in walk(a)]

    return "; ".join(walk(field.annotation) + _bounds(field.metadata))


def _optional_section(annotation) -> type[BaseModel] | None:
    """`Section | None`: the section's model, else None."""
    if get_origin(annotation) not in (Union, UnionType):
        return None
    models = [a for a in get_args(annotation)
              if isinstance(a, type) and issubclass(a, BaseModel)]  # fmt: skip
    return models[0] if len(models) == 1 else None


def schema_lines(model: type[BaseModel] = None, prefix: str = "") -> list[str]:
    """Every grid key with its type, default and allowed values (`--list-keys`)."""
    model = model or GridConfig
    lines = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines += schema_lines(annotation, f"{key}.")
            continue
        section = _optional_section(annotation)
        if section is not None:  # a section that is off unless given (tracking.*)
            lines.append(f"{key}: section | null = null  (give it to turn it on)")
            lines += schema_lines(section, f"{key}.")
            continue
        default = (field.default_factory() if field.default_factory
                   else field.default)  # fmt: skip
        shown = "required" if default is PydanticUndefined else json.dumps(
            default, default=str)  # fmt: skip
        allowed = _allowed(field)
        lines.append(f"{key}: {_type_name(annotation)} = {shown}"
                     + (f"  ({allowed})" if allowed else ""))  # fmt: skip
    return lines
