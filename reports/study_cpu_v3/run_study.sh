#!/usr/bin/env bash
# The study's four sweeps in order, each continued with --resume once it has begun, so
# the same command carries the study across stops (SIGTERM stops it cleanly). From the
# repository root, in the background:
#     nohup bash reports/study_cpu_v3/run_study.sh >> results/study_cpu_v3.log 2>&1 &
# A sweep with failed trials (exit 1) stops the study: look at the errors, then run it
# again with RETRY_ERRORED=1 to retry them.
set -u
cd "$(dirname "$0")/../.."  # the repository root: the grid's storage is ./results
if [ ! -e .venv/bin/activate ]; then
    echo "run_study.sh: no .venv here; first: python3 -m venv .venv &&" \
        ".venv/bin/pip install -e '.[dev]'" >&2
    exit 2
fi
. .venv/bin/activate
export VAE_SWEEP_DATA=${VAE_SWEEP_DATA:-$(cd .. && pwd)/shared/data/cifar10-jpeg}
export VAE_SWEEP_CACHE=$PWD/.cache  # carry.sh carries its criterion scores
G=grids/study_cpu_v3.yaml
run() {  # the sweep's name, then its --set options
    local name=$1
    shift
    local resume=()
    # begun: the driver writes grid.yaml first (Tune's tuner.pkl comes only after the
    # x_test statistics); --resume without Tune's state starts the sweep afresh
    [ -e "results/$name/grid.yaml" ] && resume=(--resume)
    [ -n "${RETRY_ERRORED:-}" ] && resume+=(--retry-errored)
    echo "=== $(date -u +%FT%TZ) $name ${resume[*]}"
    python -m sweep.run $G --set name="$name" "$@" "${resume[@]}"
    local code=$?
    if [ $code -ne 0 ]; then
        echo "=== $(date -u +%FT%TZ) $name stopped (exit $code)"
        exit $code
    fi
}
run study_cpu_v3
run study_cpu_v3_quarter --set "grid.n_train=[0.25]" \
    --set "grid.criterion=[random, class_density]"
run study_cpu_v3_ceiling --set "grid.seed=[0]" --set "priors=[recon]"
# half the pool by random and class_density, and the whole pool (n_train null): 15
run study_cpu_v3_double --set stage1.steps=8000 --set stage1.lr_step=2000 \
    --set "grid.criterion=[random, class_density]" --set eval.every=2000
echo "=== $(date -u +%FT%TZ) all four sweeps done"
