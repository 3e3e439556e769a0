"""User-input errors and the one way every command-line entry point reports them.

Bad input (a missing path, an undecodable image, a wrong value) is the user's to fix,
so it is reported as one line naming the file or key, with exit code 2 and no
traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

EXIT_USAGE = 2
EXIT_TRIALS_FAILED = 1  # the command ran, but some of its work failed (outputs written)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler, a pod's eviction, `kill`): stopped as Ctrl-C stops."""


class InputError(ValueError):
    """A problem with what the user supplied; its message is the whole report."""


def first_line(error: BaseException) -> str:
    """An error's message cut to one line; its type's name when it has none."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def run_cli(main: Callable[[Sequence[str] | None], object], argv=None) -> None:
    """Run `main(argv)`; an InputError becomes one stderr line and exit code 2."""
    try:
        main(argv)
    except InputError as error:
        fail(str(error))
    except KeyboardInterrupt as interrupt:  # Ctrl-C, SIGTERM: one line, no traceback
        detail = f": {interrupt}" if str(interrupt) else ""
        if sys.stderr.isatty():  # below a progress bar's unfinished line
            print(file=sys.stderr)
        terminated = isinstance(interrupt, Terminated)
        print(f"{'terminated' if terminated else 'interrupted'}{detail}",
              file=sys.stderr)  # fmt: skip
        raise SystemExit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED) from None
