#!/usr/bin/env bash
# Carry the study's unfinished sweeps from one machine to the next through the
# repository (a session's machine and its files outside the checkout may not come back).
# From the repository root, with its .venv active:
#     bash reports/study_cpu_v3/carry.sh save RUN       after stopping run_study.sh
#     bash reports/study_cpu_v3/carry.sh restore RUN    before starting it again
# RUN: the checkout the sweeps run in (its results/ folder is the grid's storage, kept
# at the same absolute path on both machines; its .cache/ the cache run_study.sh
# uses). `save` packs into reports/study_cpu_v3/carry/results.tar.gz what a --resume
# needs and the report reads: each sweep folder in RUN/results (Tune's experiment
# state, the trials' results, sample grids, the tables, the log) with the newest
# checkpoint of each unfinished trial only (a finished trial is never restored; its
# checkpoints, ~3 MB each, and its stage-2 state stay behind; a resume starts a trial
# from its newest complete checkpoint, sweep/checkpoints.py), and the criterion scores
# (RUN/.cache/scores, a few hundred KB; the reference VAEs that made the recon scores,
# results/*/prerequisites, stay behind: with the scores cached no run reads them).
# The FID network's features of x_test and of the pool are not carried (about
# 200 MB): the next run computes them again (about 30 minutes).
# A trial that ended in the last ~10 s before the stop may not be in Tune's saved
# state yet and runs again from its last checkpoint: stop when none just ended.
set -euo pipefail
what=${1:?usage: carry.sh save|restore RUN}
run=$(cd "${2:?usage: carry.sh save|restore RUN}" && pwd)
carry=$(cd "$(dirname "$0")" && pwd)/carry
case $what in
save)
    if pgrep -f "sweep.run grids/study_cpu_v3" >/dev/null || pgrep -x raylet >/dev/null
    then
        echo "carry.sh: a sweep or its Ray is still running; stop it first" \
            "(kill -TERM its driver) and wait for Ray to end" >&2
        exit 2
    fi
    mkdir -p "$carry"
    left_behind=$(mktemp)
    # the finished trials' checkpoints and stage-2 states, by Tune's own record
    python - "$run/results" >"$left_behind" <<'PY'
import logging
import sys
from pathlib import Path

from ray import tune

logging.getLogger("ray.tune").setLevel(logging.ERROR)  # unstarted trials: no metrics
for sweep in sorted(Path(sys.argv[1]).iterdir()):
    if not (sweep / "tuner.pkl").is_file():
        continue
    for trial in tune.ExperimentAnalysis(str(sweep)).trials:
        folder = f"results/{sweep.name}/trial_{trial.trial_id}"
        if trial.status == "TERMINATED":
            print(f"{folder}/checkpoint_*")
            print(f"results/{sweep.name}/stage2/{trial.trial_id}.pt")
        else:  # the newest checkpoint is the one a resume starts from
            older = sorted(sweep.glob(f"trial_{trial.trial_id}/checkpoint_*"))[:-1]
            for path in older:
                print(f"{folder}/{path.name}")
PY
    echo "results/*/prerequisites/*.pt" >>"$left_behind"
    echo "carry.sh: leaving behind $(grep -c "/checkpoint_\*$" "$left_behind") finished" \
        "trials' checkpoints"
    members=(results)
    [ -d "$run/.cache/scores" ] && members+=(.cache/scores)
    tar -C "$run" -czf "$carry/results.tar.gz.tmp" --exclude-from="$left_behind" \
        "${members[@]}"
    rm -f "$left_behind"
    mv "$carry/results.tar.gz.tmp" "$carry/results.tar.gz"
    ls -la "$carry/results.tar.gz"
    ;;
restore)
    if [ -e "$run/results" ] && [ -n "$(ls -A "$run/results")" ]; then
        echo "carry.sh: $run/results is not empty; restore into a fresh checkout" >&2
        exit 2
    fi
    tar -C "$run" -xzf "$carry/results.tar.gz"
    ls "$run/results"
    ;;
*)
    echo "carry.sh: the first argument is save or restore, not $what" >&2
    exit 2
    ;;
esac
