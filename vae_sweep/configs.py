"""Typed configs from looser sources: a dataclass built from the entries of a mapping
that name its fields (a grid section's values, a command's parsed arguments), so that
no hand-written list copies one field after another and a new field needs no new line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

Config = TypeVar("Config")


def from_fields(
    cls: type[Config], values: Mapping[str, Any], *, prefix: str = "", **overrides
) -> Config:
    """`cls(...)` from the entries of `values` named `prefix + field` (a field without
    one keeps its default), then `overrides`. Lists become tuples: the configs are
    frozen, compared and hashed."""
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    chosen = {name: values[prefix + name] for name in fields
              if prefix + name in values}  # fmt: skip
    chosen = {k: tuple(v) if isinstance(v, list) else v for k, v in chosen.items()}
    unknown = set(overrides) - fields
    if unknown:
        raise TypeError(f"{cls.__name__} has no field {', '.join(sorted(unknown))}")
    return cls(**{**chosen, **overrides})
