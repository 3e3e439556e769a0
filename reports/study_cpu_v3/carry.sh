#!/usr/bin/env bash
# Carry the study's unfinished sweeps from one machine to the next through the
# repository (a session's machine and its files outside the checkout may not come back).
#     bash reports/study_cpu_v3/carry.sh save RUN       after stopping run_study.sh
#     bash reports/study_cpu_v3/carry.sh restore RUN    before starting it again
# RUN: the checkout the sweeps run in (its results/ folder is the grid's storage, kept
# at the same absolute path on both machines; its .cache/ the cache run_study.sh
# uses). `save` packs every sweep folder in RUN/results (Tune's experiment state, the
# trials' checkpoints and tables, the reference VAEs, the log) and the criterion scores
# (RUN/.cache/scores, a few hundred KB) into reports/study_cpu_v3/carry/results.tar.gz;
# `restore` unpacks them back. The FID network's features of x_test and of the pool
# are not carried (about 200 MB): the next run computes them again (about 30 minutes).
# A trial that ended in the last ~10 s before the stop may not be in Tune's saved
# state yet and runs again from its last checkpoint: stop when none just ended.
set -euo pipefail
what=${1:?usage: carry.sh save|restore RUN}
run=$(cd "${2:?usage: carry.sh save|restore RUN}" && pwd)
carry=$(cd "$(dirname "$0")" && pwd)/carry
case $what in
save)
    if pgrep -f "sweep.run grids/study_cpu_v3" >/dev/null; then
        echo "carry.sh: a sweep is still running; stop it first (kill -TERM its driver)" >&2
        exit 2
    fi
    mkdir -p "$carry"
    tar -C "$run" -czf "$carry/results.tar.gz.tmp" results .cache/scores
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
