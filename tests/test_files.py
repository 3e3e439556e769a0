"""Atomic writes (vae_sweep.files): whole or nothing, with the modes an ordinary
create would give under the user's umask (group-readable on shared storage)."""

from __future__ import annotations

import os
import stat

import pytest

from vae_sweep.files import DIR_MODE, FILE_MODE, atomic_dir, atomic_path, staged_dir


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _ordinary_modes(tmp_path) -> tuple[int, int]:
    """What open() and mkdir() give here, the reference the atomic writers match."""
    (tmp_path / "plain.txt").write_text("x")
    (tmp_path / "plain").mkdir()
    return _mode(tmp_path / "plain.txt"), _mode(tmp_path / "plain")


def test_atomic_file_gets_the_umask_modes_not_mkstemps_private_ones(tmp_path):
    with atomic_path(tmp_path / "out" / "table.csv") as tmp:
        assert _mode(tmp) == 0o600  # mkstemp's, while it is being written
        tmp.write_text("a,b\n")
    file_mode, _ = _ordinary_modes(tmp_path)
    assert _mode(tmp_path / "out" / "table.csv") == file_mode == FILE_MODE


def test_atomic_folders_get_the_umask_modes(tmp_path):
    with atomic_dir(tmp_path / "cache") as tmp:
        (tmp / "a.npy").write_bytes(b"x")
    staged = staged_dir(tmp_path / "report")
    _, dir_mode = _ordinary_modes(tmp_path)
    assert _mode(tmp_path / "cache") == _mode(staged) == dir_mode == DIR_MODE


def test_a_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]
