"""Files in the sweep's storage: a local/NFS folder (atomic rename) or a URI such as
s3://bucket/prefix (through pyarrow's file systems, where one object put is atomic)."""

from __future__ import annotations

from pathlib import Path

from pyarrow import fs

from selection.files import atomic_path


def is_uri(path: str) -> bool:
    return "://" in path


def join(root: str, *parts: str) -> str:
    if is_uri(root):
        return "/".join([root.rstrip("/"), *parts])
    return str(Path(root).expanduser().resolve().joinpath(*parts))


def write_bytes(path: str, data: bytes) -> None:
    if is_uri(path):
        filesystem, inner = fs.FileSystem.from_uri(path)
        with filesystem.open_output_stream(inner) as stream:
            stream.write(data)
        return
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def read_text(path: str) -> str | None:
    """The file's text, or None when it does not exist."""
    if is_uri(path):
        filesystem, inner = fs.FileSystem.from_uri(path)
        if filesystem.get_file_info(inner).type == fs.FileType.NotFound:
            return None
        with filesystem.open_input_stream(inner) as stream:
            return stream.read().decode()
    file = Path(path)
    return file.read_text() if file.is_file() else None
