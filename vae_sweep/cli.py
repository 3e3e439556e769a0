"""What every command line shares: one parser class and one set of value parsers.

`Parser` reports a malformed argument the way every other user error is reported
(vae_sweep.errors: one line naming the flag, exit code 2) instead of argparse's
usage block, and its --help shows each option's default and keeps the description's
own line breaks (example commands stay readable).
"""

from __future__ import annotations

import argparse
import math
import re

from vae_sweep.errors import fail

_ARGUMENT = re.compile(r"^argument (\S+?)(/\S+)?: ")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends "(default: X)" to every option's help unless the help already says
    what the default is, or there is none to show (None, False, an empty list)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or "default" in text
                or default is argparse.SUPPRESS or default is None or default is False
                or (isinstance(default, (list, tuple)) and not default)):  # fmt: skip
            return text
        if isinstance(default, (list, tuple)):
            default = ",".join(map(str, default))
        return f"{text} (default: {str(default).replace('%', '%%')})"


class Parser(argparse.ArgumentParser):
    def __init__(self, prog: str, description: str, epilog: str | None = None):
        super().__init__(prog=prog, description=description, epilog=epilog,
                         formatter_class=HelpFormatter)  # fmt: skip

    def error(self, message: str):
        # argparse says "argument --x/-x: invalid int value: 'a'"; ours start with
        # the flag, like every other error of every command
        message = _ARGUMENT.sub(r"\1: ", message)
        fail(f"{message} (see {self.prog} --help)")


def int_list(text: str) -> list[int]:
    """'1,2,3' -> [1, 2, 3]; at least one integer (their range is each command's
    check, so the error can name the flag)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 2,4,8, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one integer, got {text!r}")
    return values


def float_list(text: str) -> list[float]:
    """'2,3.5' -> [2.0, 3.5]; at least one finite number."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers like 2,3,4, got {text!r}"
        ) from None
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(
            f"expected at least one finite number, got {text!r}"
        )
    return values


def name_list(text: str) -> list[str]:
    """'a, b' -> ['a', 'b']: the names are checked by the command that knows them."""
    return [v.strip() for v in text.split(",") if v.strip()]


def finite_float(text: str) -> float:
    """A float that is a number: 'nan' and 'inf' are refused here, once, for every
    option (a NaN slips through every `<` check after it)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


CLUSTER_MAX = 100_000  # GPUs or CPUs: a bound far above any real cluster


def positive_number(text: str) -> float:
    """A finite number above 0 and at most CLUSTER_MAX (cluster sizes)."""
    value = finite_float(text)
    if not 0 < value <= CLUSTER_MAX:
        raise argparse.ArgumentTypeError(
            f"expected a number above 0 and at most {CLUSTER_MAX:,}, got {text!r}"
        )
    return value


SEED_MAX = 2**32 - 1  # numpy's and torch's seeds: 0 .. 2^32 - 1


def seed(text: str) -> int:
    """A random seed: an integer from 0 to 2^32 - 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(
            f"expected an integer from 0 to {SEED_MAX}, got {text!r}"
        )
    return value


def text(value: str) -> str:
    """A path or name that is not empty (an empty one would quietly mean the
    current folder or the default)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("expected a value, got an empty string")
    return value
