"""Which of a trial's checkpoints a resume can start from.

Tune restores a trial from the checkpoint its experiment state names, and in cloud
storage that state lags the trials' own checkpoints by seconds; Tune keeps only the
newest few checkpoints of a trial (`CheckpointConfig.num_to_keep`), so the one the
state names may be gone. A checkpoint folder can also exist without its state file:
Tune creates the folder before it copies the file in (on S3 an empty "folder/"
object), and deletes a folder file by file, so a driver killed in between leaves a
folder a restore would fail on. `repair_checkpoint` points a restored trial at its
newest checkpoint whose state file is there; the trial's own state inside it makes
the restore exact.
"""

from __future__ import annotations

import logging

from pyarrow import fs

from sweep.folder import STATE_FILE

logger = logging.getLogger(__name__)


def is_complete(storage: fs.FileSystem, folder: str) -> bool:
    """Whether a checkpoint folder holds the trial's state file."""
    return storage.get_file_info(f"{folder}/{STATE_FILE}").type == fs.FileType.File


def repair_checkpoint(trial) -> str | None:
    """If the checkpoint a restored trial would start from is gone or incomplete,
    point the trial at the newest complete one (or at none); returns what it now
    names."""
    from ray.train import Checkpoint
    from ray.train._internal.session import _TrainingResult  # Ray 2.60's own type

    result = getattr(trial, "latest_checkpoint_result", None)
    checkpoint = getattr(result, "checkpoint", None)
    if checkpoint is None:
        return None
    storage = checkpoint.filesystem
    if is_complete(storage, checkpoint.path):
        return checkpoint.path
    selector = fs.FileSelector(trial.storage.trial_fs_path, allow_not_found=True)
    kept = sorted(
        info.path
        for info in storage.get_file_info(selector)
        if info.type == fs.FileType.Directory
        and info.path.rsplit("/", 1)[-1].startswith("checkpoint_")
        and is_complete(storage, info.path)
    )
    manager = trial.run_metadata.checkpoint_manager
    fixed = (
        _TrainingResult(Checkpoint(kept[-1], filesystem=storage), result.metrics)
        if kept
        else None
    )
    manager._latest_checkpoint_result = fixed
    manager._checkpoint_results = [fixed] if fixed else []
    now = fixed.checkpoint.path if fixed else None
    logger.warning("%s: %s is gone or incomplete; restoring from %s", trial,
                   checkpoint.path, now or "the start")  # fmt: skip
    return now
