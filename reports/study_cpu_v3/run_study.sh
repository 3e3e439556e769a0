#!/usr/bin/env bash
# The study's four sweeps in order, each continued with --resume once it has begun, so
# the same command carries the study across stops (SIGTERM stops it cleanly). From the
# repository root, in the background:
#     nohup bash reports/study_cpu_v3/run_study.sh >> results/study_cpu_v3.log 2>&1 &
set -u
cd "$(dirname "$0")/../.."  # the repository root: the grid's storage is ./results
[ -e .venv/bin/activate ] && . .venv/bin/activate
export VAE_SWEEP_DATA=${VAE_SWEEP_DATA:-$(cd .. && pwd)/shared/data/cifar10-jpeg}
export VAE_SWEEP_CACHE=${VAE_SWEEP_CACHE:-$PWD/.cache}  # carry.sh carries its scores
G=grids/study_cpu_v3.yaml
run() {  # the sweep's name, then its --set options
    local name=$1
    shift
    local resume=()
    [ -e "results/$name/tuner.pkl" ] && resume=(--resume)
    echo "=== $(date -u +%FT%TZ) $name ${resume[*]}"
    python -m sweep.run $G --set name="$name" "$@" "${resume[@]}" \
        || { echo "=== $name stopped (exit $?)"; exit 1; }
}
run study_cpu_v3
run study_cpu_v3_quarter --set "grid.n_train=[0.25]" \
    --set "grid.criterion=[random, class_density]"
run study_cpu_v3_ceiling --set "grid.seed=[0]" --set "priors=[recon]"
run study_cpu_v3_double --set stage1.steps=8000 --set stage1.lr_step=2000 \
    --set "grid.criterion=[random, class_density, all]" --set eval.every=2000
echo "=== $(date -u +%FT%TZ) all four sweeps done"
