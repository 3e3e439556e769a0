"""Checks every command runs on its arguments before it loads data or computes
anything, with one vocabulary: each error names the flag the user typed, the value,
and what is allowed (an InputError: one line, exit code 2)."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from vae_sweep.errors import InputError


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def at_least(args: argparse.Namespace, minimum: float, *names: str) -> None:
    """Each named option, when given (not None), is at least `minimum`."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < minimum:
            raise InputError(f"{flag(name)} must be at least {minimum}, got {value}")


def at_most(args: argparse.Namespace, maximum: int, what: str, *names: str) -> None:
    """Each named option, when given, is at most `maximum` (`what` says why: a split's
    size), so a run never loads data only to find it asked for more than there is."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value > maximum:
            raise InputError(f"{flag(name)} must be at most {maximum} ({what}), "
                             f"got {value}")  # fmt: skip


def positive(args: argparse.Namespace, *names: str) -> None:
    """Each named option, when given, is above zero (learning rates, scales)."""
    for name in names:
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise InputError(f"{flag(name)} must be above 0, got {value}")


def positive_list(args: argparse.Namespace, *names: str) -> None:
    """Each named list option, when given, is non-empty with every entry >= 1."""
    for name in names:
        values = getattr(args, name)
        if values is not None and (not values or min(values) < 1):
            shown = ",".join(map(str, values))
            raise InputError(f"{flag(name)} needs positive integers, got {shown!r}")


def distinct(args: argparse.Namespace, *names: str) -> None:
    """Each named list option, when given, holds no value twice (each value is a
    point of the experiment: twice would compute it twice)."""
    for name in names:
        values = getattr(args, name)
        twice = sorted({v for v in values or () if list(values).count(v) > 1})
        if twice:
            raise InputError(f"{flag(name)}: {twice[0]:g} is given twice")


def writable_folder(path: str | os.PathLike, label: str) -> Path:
    """A folder the command may create or fill, checked without leaving anything:
    not an existing file, its nearest existing ancestor a folder this user can write
    into and where the file system lets it create one (not /proc, not read-only).
    `label` starts each error: the flag or key and the value the user gave."""
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{label}: exists and is not a folder")
    existing = folder.resolve()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{label}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{label}: cannot write into {existing}")
    try:  # permissions can say yes where the file system says no
        os.rmdir(tempfile.mkdtemp(prefix=".vae-sweep-probe-", dir=existing))
    except OSError as error:
        raise InputError(f"{label}: cannot create folders in {existing} "
                         f"({error.strerror})") from None  # fmt: skip
    return folder


def two_labels(value: str, reserved=()) -> list[str]:
    """`--labels A,B`: two different names, neither a column the report's table
    already has (`reserved`) nor holding `|` (it would break the table)."""
    labels = [part.strip() for part in value.split(",")]
    if len(labels) != 2 or not all(labels) or labels[0] == labels[1]:
        raise InputError(f"--labels {value!r}: two different names, "
                         "comma-separated")  # fmt: skip
    taken = [name for name in labels if name in reserved or "|" in name]
    if taken:
        raise InputError(f"--labels {value!r}: {taken[0]!r} is a column name "
                         "of the table or holds '|'")  # fmt: skip
    return labels


def report_folder(path: str | os.PathLike, label: str, marker: str,
                  inputs=()) -> Path:  # fmt: skip
    """A folder a report command replaces whole (vae_sweep.files.replaced_dir),
    checked as `writable_folder` and, because the old folder is deleted, refused
    where that would delete anything but an earlier report: an existing folder must
    be empty or hold the command's `marker` file, and must be neither one of the
    `inputs` (the sweeps or reports read) nor a folder holding one. `--out` set to a
    sweep, or to the storage above it, would otherwise remove it."""
    folder = writable_folder(path, label)
    resolved = folder.resolve()
    for given in inputs:
        source = Path(given).expanduser().resolve()
        if resolved == source or resolved in source.parents:
            raise InputError(f"{label}: would replace {given}, which this command "
                             "reads: name a new or empty folder")  # fmt: skip
    if folder.is_dir() and any(folder.iterdir()) and not (folder / marker).is_file():
        raise InputError(f"{label}: a folder holding other files (no {marker}: not "
                         "an earlier report, which this command replaces whole): "
                         "name a new or empty folder")  # fmt: skip
    return folder


def data_folder(args: argparse.Namespace) -> None:
    """--data, when given, exists (or --download may create it)."""
    if args.data is None:
        return
    folder = Path(args.data).expanduser()
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--data {args.data}: not a folder")
    if not folder.exists() and not args.download:
        raise InputError(f"--data {args.data}: no such folder (or add --download)")
    if not folder.exists():
        writable_folder(folder, f"--data {args.data}")
