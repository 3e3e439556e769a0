"""The Weights & Biases backend of sweep/tracking.py: a run per trial, grouped by sweep.

Each trial's run id is its key (the sweep's folder hashed, then the trial id), so a
resumed sweep resumes the same run (`resume="allow"`) rather than starting another:
online, W&B keeps one run; offline, the resumed part is a second run folder with the
same id, which `wandb sync` merges into that run. Several runs are open at once in
the driver (`reinit="create_new"`).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from sweep.config import WandbSection
from vae_sweep.checks import writable_folder
from vae_sweep.errors import InputError

DEFAULT_SERVER = "https://api.wandb.ai"
TIMEOUT_S = 5.0


def server() -> str:
    return os.environ.get("WANDB_BASE_URL", DEFAULT_SERVER)


def check_wandb(section: WandbSection) -> None:
    """Online mode needs its server (a TCP connection within 5 s); InputError if not.
    Offline mode needs nothing but a writable folder."""
    if section.dir is not None:  # where its run files go, online or offline
        writable_folder(section.dir, f"tracking.wandb.dir = {section.dir!r}")
    if section.mode == "offline":
        return
    url = urlparse(server())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=TIMEOUT_S).close()
    except OSError as error:
        raise InputError(
            f"tracking.wandb.mode = online: the W&B server {server()} cannot be "
            f"reached ({error.strerror or error}); mode: offline logs to files that "
            f"`wandb sync` uploads later"
        ) from None


class WandbTracker:
    def __init__(self, section: WandbSection, grid_name: str, sweep: str):
        self.section, self.group = section, f"{grid_name}-{sweep}"
        self.project = section.project or grid_name
        if section.dir is not None:
            Path(section.dir).expanduser().mkdir(parents=True, exist_ok=True)
        self.runs: dict = {}

    def open(self, key: str, name: str, params: dict[str, str]) -> int:
        import wandb

        run = wandb.init(
            project=self.project,
            entity=self.section.entity,
            mode=self.section.mode,
            dir=self.section.dir,
            id=key,
            name=name,
            group=self.group,
            config=params,
            resume="allow",
            reinit="create_new",
            settings=wandb.Settings(silent=True, console="off"),
        )
        self.runs[key] = run
        # online, a resumed run knows its last step; offline, nothing is read back
        return run.step - 1 if run.resumed else -1

    def log(self, key: str, metrics: dict[str, float], step: int) -> None:
        run = self.runs[key]
        if step < run.step:  # W&B refuses a step below one it has logged
            step = run.step
        run.log(metrics, step=step)

    def finish(self, key: str, files: list[Path], failed: bool) -> None:
        import wandb

        run = self.runs.pop(key)
        artifact = wandb.Artifact(f"trial-{key}", type="trial")
        for path in files:
            artifact.add_file(str(path))
        run.log_artifact(artifact)
        images = {f"samples/{p.stem}": wandb.Image(str(p)) for p in files
                  if p.suffix == ".png"}  # fmt: skip
        if images:  # shown in the run's page, at its last step
            run.log(images, step=run.step)
        run.finish(exit_code=1 if failed else 0)

    def close(self, interrupted: bool = False) -> None:  # a group has no status
        for run in self.runs.values():
            run.finish(exit_code=1)
        self.runs.clear()
