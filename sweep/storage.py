"""Files in the sweep's storage: a local/NFS folder (atomic rename) or a URI such as
s3://bucket/prefix (through pyarrow's file systems: a temporary key, then a move).

On a cluster every node writes here (Tune's trial folders and checkpoints, the
reference VAE's checkpoint), so it must be storage every node sees: a URI, or a path
declared shared (`storage_shared: true`, an NFS mount at the same place everywhere).
S3 credentials come from the standard AWS chain (environment, instance profile); an
S3-compatible endpoint from `storage_endpoint` or $AWS_ENDPOINT_URL, which pyarrow
reads in every process.
"""

from __future__ import annotations

import shutil
import uuid
from contextlib import suppress
from pathlib import Path

from pyarrow import fs

from vae_sweep.checks import writable_folder
from vae_sweep.errors import InputError, first_line
from vae_sweep.files import atomic_path

ENDPOINT_ENV = "AWS_ENDPOINT_URL"


def is_uri(path: str) -> bool:
    return "://" in path


def join(root: str, *parts: str) -> str:
    if is_uri(root):
        return "/".join([root.rstrip("/"), *parts])
    return str(Path(root).expanduser().resolve().joinpath(*parts))


def _resolve(path: str) -> tuple[fs.FileSystem, str]:
    try:
        return fs.FileSystem.from_uri(path)
    except (OSError, ValueError) as error:  # ArrowInvalid is a ValueError
        raise InputError(f"storage {path!r}: {first_line(error)}") from None


def write_bytes(path: str, data: bytes) -> None:
    """The whole of `data` at `path`, or nothing new there. A URI's stream commits
    its object when closed, even by an exception (pyarrow's `with` closes it, and so
    does its destructor), so an interrupted write would publish a cut object: it
    goes to a temporary key, moved into place once whole."""
    if is_uri(path):
        filesystem, inner = _resolve(path)
        tmp = f"{inner}.tmp-{uuid.uuid4().hex}"
        try:
            with filesystem.open_output_stream(tmp) as stream:
                stream.write(data)
            filesystem.move(tmp, inner)
        except BaseException:
            with suppress(Exception):
                filesystem.delete_file(tmp)
            raise
        return
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def read_text(path: str) -> str | None:
    """The file's text, or None when it does not exist."""
    if is_uri(path):
        filesystem, inner = _resolve(path)
        if filesystem.get_file_info(inner).type == fs.FileType.NotFound:
            return None
        with filesystem.open_input_stream(inner) as stream:
            return stream.read().decode()
    file = Path(path)
    return file.read_text() if file.is_file() else None


def fetch(path: str, local: Path) -> bool:
    """Copy the file at `path` (storage) to `local`; False when it does not exist."""
    if not is_uri(path):
        if not Path(path).is_file():
            return False
        with atomic_path(local) as tmp:
            shutil.copyfile(path, tmp)
        return True
    filesystem, inner = _resolve(path)
    if filesystem.get_file_info(inner).type == fs.FileType.NotFound:
        return False
    with atomic_path(local) as tmp:
        fs.copy_files(inner, str(tmp), source_filesystem=filesystem,
                      destination_filesystem=fs.LocalFileSystem())  # fmt: skip
    return True


def publish(local: Path, path: str) -> None:
    """Copy `local` to `path` in storage, atomically for readers."""
    if not is_uri(path):
        with atomic_path(path) as tmp:
            shutil.copyfile(local, tmp)
        return
    filesystem, inner = _resolve(path)
    fs.copy_files(str(local), inner, source_filesystem=fs.LocalFileSystem(),
                  destination_filesystem=filesystem)  # fmt: skip


def check_storage_reachable(root: str) -> None:
    """InputError unless the sweep could write under `root`; writes nothing.

    A local path needs its nearest existing ancestor to be a writable folder; a URI
    needs its file system to answer (credentials, endpoint, bucket).
    """
    if is_uri(root):
        filesystem, inner = _resolve(root)
        bucket = inner.split("/", 1)[0]
        try:
            info = filesystem.get_file_info(bucket)
        except OSError as error:
            raise InputError(f"storage {root!r}: {first_line(error)}") from None
        if info.type == fs.FileType.NotFound:
            raise InputError(f"storage {root!r}: {bucket!r} does not exist")
        return
    writable_folder(root, f"storage {root!r}")
