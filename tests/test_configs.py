"""vae_sweep.configs.from_fields: a dataclass from the entries that name its fields."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from vae_sweep.configs import from_fields


@dataclass(frozen=True)
class Example:
    width: int = 3
    channels: tuple[int, ...] = (1, 2)
    name: str = "x"
    derived: int = field(default=0, init=False)


def test_named_entries_are_taken_the_rest_keep_their_defaults():
    made = from_fields(Example, {"width": 5, "other": 1, "derived": 9})
    assert made == Example(width=5)  # `other` is no field; `derived` is not an init


def test_a_prefix_selects_the_entries_lists_become_tuples_overrides_win():
    values = {"gmm_width": 7, "gmm_channels": [4, 5], "width": 1, "gmm_name": "a"}
    made = from_fields(Example, values, prefix="gmm_", name="b")
    assert made == Example(width=7, channels=(4, 5), name="b")
    assert isinstance(made.channels, tuple)


def test_an_override_that_names_no_field_is_refused():
    with pytest.raises(TypeError, match="no field widht"):
        from_fields(Example, {}, widht=2)
