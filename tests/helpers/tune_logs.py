"""What a killed and resumed trial's own Tune log (result.json) must show."""

from __future__ import annotations

import json


def assert_resumed_log(text: str, last_epoch: int, final_may_be_lost=False) -> None:
    """At most the epoch in flight at the kill ran twice (its checkpoint may be
    missing), never epoch 1, epochs in order up to `last_epoch`, one final report (or
    the same one twice: see below).
    Completeness is not asked: the lines Tune had not written (or, on S3, not yet
    copied) when the driver died are lost, as in [1, 2, 5, 6]; on S3 the final report
    too (`final_may_be_lost`, see tests/test_storage_s3.py)."""
    records = [json.loads(line) for line in text.splitlines()]
    epochs = [r["epoch"] for r in records if r.get("phase") == "stage1"]
    repeated = {e for e in epochs if epochs.count(e) > 1}
    assert len(repeated) <= 1 and 1 not in repeated, epochs
    assert epochs == sorted(epochs) and epochs[-1] == last_epoch, epochs
    # a trial killed after its final report but before Tune's experiment state (which
    # lags the trials) recorded it as ended is run again from its checkpoint on resume,
    # and reports its end twice: seeded and resumed exactly, with the same numbers (the
    # results table keeps one). Seen in a clean-clone run under load.
    finals = [r for r in records if r.get("phase") == "final"]
    assert (0 if final_may_be_lost else 1) <= len(finals) <= 2, len(finals)
    if not finals:
        return
    numbers = [{k: v for k, v in r.items()
                if k.startswith("fid_") and k != "fid_busy_seconds"} for r in finals]
    assert numbers[0] and all(n == numbers[0] for n in numbers), numbers
