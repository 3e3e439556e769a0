#!/usr/bin/env bash
# Carry the study's unfinished sweeps from one machine to the next through the
# repository (a session's machine and its files outside the checkout may not come back).
# From the repository root, with its .venv active:
#     bash reports/study_cpu_v3/carry.sh save RUN       after stopping run_study.sh
#     bash reports/study_cpu_v3/carry.sh restore RUN    before starting it again
# RUN: the checkout the sweeps run in (its results/ folder is the grid's storage, kept
# at the same absolute path on both machines; its .cache/ the cache run_study.sh
# uses). `save` copies into reports/study_cpu_v3/carry/ what a --resume needs and the
# report reads, as plain files (git keeps a file that did not change between two
# saves once, so a finished trial's sample grids cost the repository once): each sweep folder in RUN/results (Tune's experiment
# state, the trials' results, sample grids, the tables, the log) with the newest
# checkpoint of each unfinished trial only (a finished trial is never restored; its
# checkpoints, ~3 MB each, and its stage-2 state stay behind; a resume starts a trial
# from its newest complete checkpoint, sweep/checkpoints.py), and the criterion scores
# (RUN/.cache/scores, a few hundred KB; the reference VAEs that made the recon scores,
# results/*/prerequisites, stay behind: with the scores cached no run reads them).
# The FID network's features of x_test and of the pool are not carried (about
# 200 MB): the next run computes them again (about 30 minutes).
# Stop the driver with one SIGTERM: it lets Tune save its state before it ends (from
# 4602f08; before, a trial that ended in the last ~10 s ran again from its last
# checkpoint), and Ray ends with it.
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
    rm -rf "$carry.tmp" && mkdir -p "$carry.tmp"
    tar -C "$run" -cf - --exclude-from="$left_behind" results \
        | tar -C "$carry.tmp" -xf -
    # as carry/scores: git ignores every folder named .cache
    if [ -d "$run/.cache/scores" ]; then
        cp -r "$run/.cache/scores" "$carry.tmp/scores"
    fi
    rm -f "$left_behind"
    rm -rf "$carry" && mv "$carry.tmp" "$carry"
    du -sh "$carry"
    ;;
restore)
    if [ -e "$run/results" ] && [ -n "$(ls -A "$run/results")" ]; then
        echo "carry.sh: $run/results is not empty; restore into a fresh checkout" >&2
        exit 2
    fi
    tar -C "$carry" -cf - results | tar -C "$run" -xf -
    if [ -d "$carry/scores" ]; then
        mkdir -p "$run/.cache" && cp -r "$carry/scores" "$run/.cache/scores"
    fi
    ls "$run/results"
    ;;
*)
    echo "carry.sh: the first argument is save or restore, not $what" >&2
    exit 2
    ;;
esac
