"""Atomic writes and the on-disk cache location shared by every cache in the project."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from vae_sweep import PROJECT

CACHE_ENV = "VAE_SWEEP_CACHE"


def default_cache_dir() -> Path:
    """`$VAE_SWEEP_CACHE`, else `$XDG_CACHE_HOME/vae-sweep`, else ~/.cache/vae-sweep."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / PROJECT


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: set it back at once
    os.umask(mask)
    return mask


# mkstemp and mkdtemp make private (0600 / 0700) entries; what is published in their
# place gets the modes an ordinary create would (group-readable on shared storage)
FILE_MODE = 0o666 & ~_umask()
DIR_MODE = 0o777 & ~_umask()


def staged_dir(target: Path) -> Path:
    """A fresh folder beside `target` with the user's modes, to build it in."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    os.chmod(tmp, DIR_MODE)
    return tmp


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` on success.

    Readers see either the old file or the whole new one, never a partial write; on an
    exception the temporary file is removed and `target` is untouched. `suffix` ends the
    temporary name, for writers that append a missing extension (np.save adds `.npy`).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp" + suffix, dir=target.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def replaced_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a folder to build beside `target`; on success it takes `target`'s place
    (an old one is removed), so readers never see a half-written folder."""
    target = Path(target).resolve()
    tmp = staged_dir(target)
    try:
        yield tmp
        old = target.with_name(f".{target.name}.old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside `target`, renamed onto it on success.

    If another process created `target` meanwhile, its copy wins and ours is dropped:
    both were built from the same inputs.
    """
    target = Path(target)
    tmp = staged_dir(target)
    try:
        yield tmp
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def content_key(**parts) -> str:
    """A short stable hash of JSON-able parts, for cache keys that name their inputs."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
