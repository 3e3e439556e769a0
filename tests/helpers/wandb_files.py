"""Reading Weights & Biases' offline run files (`run-<id>.wandb`) back, as W&B itself
would on `wandb sync`: a LevelDB-style log (7-byte file header `:W&B`, 32 KiB blocks,
records of a 7-byte header and a payload, split FIRST/MIDDLE/LAST across blocks) of
`wandb_internal_pb2.Record` messages. wandb 0.31 reads them in Go only, so the tests
read them here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

BLOCK = 32768
HEADER = 7  # checksum (4), length (2, little-endian), type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def payloads(path: Path):
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a W&B run file"
    pos, parts = 7, []
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # a block's tail too short for a header is padding
            pos += left
            continue
        length = int.from_bytes(data[pos + 4:pos + 6], "little")
        kind = data[pos + 6]
        if kind == 0:  # zero padding to the block's end
            pos += left
            continue
        payload = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == FULL:
            yield payload
        elif kind == FIRST:
            parts = [payload]
        elif kind == MIDDLE:
            parts.append(payload)
        elif kind == LAST:
            yield b"".join([*parts, payload])


@dataclass
class OfflineRun:
    run_id: str = ""
    name: str = ""
    group: str = ""
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)  # one dict per logged step
    artifacts: list[list[str]] = field(default_factory=list)  # each one's file paths
    exit_code: int | None = None


def read_run(path: Path) -> OfflineRun:
    from wandb.proto import wandb_internal_pb2 as pb

    run = OfflineRun()
    for payload in payloads(path):
        record = pb.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run_id, run.name = record.run.run_id, record.run.display_name
            run.group = record.run.run_group
            for item in record.run.config.update:
                run.config[item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                run.config[item.key] = json.loads(item.value_json)
        elif kind == "history":
            run.history.append({item.key or "/".join(item.nested_key):
                                json.loads(item.value_json)
                                for item in record.history.item})  # fmt: skip
        elif kind == "artifact":
            run.artifacts.append([e.path for e in record.artifact.manifest.contents])
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run


def offline_runs(folder: Path) -> list[OfflineRun]:
    """Every offline run folder's run under `folder` (W&B's `dir`), oldest first."""
    return [read_run(path) for path in
            sorted(Path(folder).glob("wandb/offline-run-*/run-*.wandb"))]  # fmt: skip
