#!/usr/bin/env bash
# After the four sweeps of run_study.sh: their tables into reports/study_cpu_v3/, then
# every analysis the README lists. Run from the repository root:
#     bash reports/study_cpu_v3/finish_study.sh RESULTS     (RESULTS: the sweeps' storage)
set -euo pipefail
results=${1:?usage: finish_study.sh RESULTS (the folder holding the four sweeps)}
R=reports/study_cpu_v3
for pair in study_cpu_v3:sweep study_cpu_v3_quarter:quarter \
            study_cpu_v3_ceiling:ceiling study_cpu_v3_double:double; do
    src=$results/${pair%%:*}
    dst=$R/${pair##*:}
    mkdir -p "$dst"
    cp "$src"/{grid.yaml,results.parquet,history.parquet,timings.json} "$dst"/
    rm -rf "$dst/samples" && cp -r "$src/samples" "$dst/samples"
done
python -m experiments.analysis $R/sweep $R/quarter --metric kid --out $R/analysis
python -m experiments.analysis $R/ceiling --metric kid --out $R/ceiling_analysis
python -m experiments.analysis $R/double --metric kid --out $R/double_analysis
python -m experiments.agreement $R/analysis $R/double_analysis \
    --labels "4000 steps,8000 steps" --out $R/agreement
# the thesis's equal-epoch comparison: the whole pool at 8,000 steps (80 epochs)
# against each half at 4,000 (80 epochs), paired by seed
python -m experiments.cross_sweep $R/double $R/sweep --arm criterion=all \
    --against n_train=5000 --labels "all at 8000 steps,halves at 4000 steps" \
    --metric kid --out $R/equal_epochs
# retention at equal steps: a quarter of the pool (160 epochs) against each half (80
# epochs), for random and class_density, paired by seed
for c in random class_density; do
    python -m experiments.cross_sweep $R/quarter $R/sweep --arm criterion=$c \
        --against n_train=5000 --labels "quarter $c,halves" --metric kid \
        --out $R/retention_$c
done
# every arm's KID against its stage-1 steps: the main and quarter sweeps at 4,000,
# the double sweep at 8,000
python -m experiments.budget_curves $R/sweep $R/quarter $R/double --metric kid \
    --out $R/budget_curves
python -m experiments.early_stopping $R/sweep --replay --prior gaussian --metric kid \
    --grace 1000,2000 --reduction 2,3,4 --out $R/early_stopping
# the sample grids: only the trials the reports show (best and worst by KID), so a
# rebuild draws the same figures; the rest (about 25 MB for the main sweep) stay in
# the run's storage
keep=$(grep -ho 'trial: `[0-9a-f]*`' $R/*/report.md | sed 's/.*`\([0-9a-f]*\)`/\1/' | sort -u)
for folder in $R/{sweep,quarter,ceiling,double}/samples/*/; do
    echo "$keep" | grep -qx "$(basename "$folder")" || rm -rf "$folder"
done
echo "sample grids kept: $(echo $keep)"
