#!/usr/bin/env bash
# Does a refactor change any result? Run the smoke config (two of its pairs, every analysis)
# and the known-answer config at two commits, then compare every result file to 1e-12 and
# every job of the two configs' graphs (ci/dag_snapshot.py: files, resources, commands).
#
#   bash ci/refactor_check.sh BEFORE_REV [AFTER_REV]     # AFTER_REV: default HEAD
#
# Each commit is cloned into a temporary folder and run with this checkout's installed
# packages (its own src/ first on PYTHONPATH); ci/compare_results.py compares the runs.
# About 10 minutes per commit on 2 cores. Exit status: compare_results.py's.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
BEFORE=${1:?usage: ci/refactor_check.sh BEFORE_REV [AFTER_REV]}
AFTER=${2:-HEAD}
WORK=$(mktemp -d /tmp/syncr2-refactor.XXXXXX)
SMOKE_PAIRS='pairs=[["tiny-llama","tiny-mistral"],["tiny-llama","tiny-llama"]]'

run_commit() {  # run_commit REV NAME: both configs at REV, kept as $WORK/NAME-{smoke,synthetic}
    local rev=$1 name=$2 dir=$WORK/$2-checkout
    git clone -q "$REPO" "$dir" && git -C "$dir" checkout -q "$rev"
    for cfg in smoke synthetic; do
        echo "[refactor check] $name ($rev): config/$cfg.yaml"
        (cd "$dir" && PYTHONPATH="$dir/src" python "$REPO/ci/dag_snapshot.py" --configfile "config/$cfg.yaml" \
            >"$WORK/$name-$cfg.dag") || { echo "dry run failed at $rev"; exit 1; }
        (cd "$dir" && rm -rf results logs .snakemake reports/figures reports/tables &&
            if [ "$cfg" = smoke ]; then extra=(--config "$SMOKE_PAIRS"); else extra=(); fi &&
            PYTHONPATH="$dir/src" snakemake -c 2 --quiet rules --configfile "config/$cfg.yaml" "${extra[@]}" \
                >"$WORK/$name-$cfg.log" 2>&1) || { echo "snakemake failed: $WORK/$name-$cfg.log"; exit 1; }
        mkdir -p "$WORK/$name-$cfg" && mv "$dir/results" "$WORK/$name-$cfg/" && cp -r "$dir/reports" "$WORK/$name-$cfg/"
    done
}

run_commit "$BEFORE" before
run_commit "$AFTER" after
status=0
for cfg in smoke synthetic; do
    echo "[refactor check] config/$cfg.yaml: $BEFORE against $AFTER"
    python "$REPO/ci/compare_results.py" "$WORK/before-$cfg" "$WORK/after-$cfg" || status=1
    if diff -q "$WORK/before-$cfg.dag" "$WORK/after-$cfg.dag" >/dev/null; then
        echo "[refactor check] config/$cfg.yaml: every job's files, resources and command unchanged"
    else
        echo "[refactor check] config/$cfg.yaml: the job graphs differ: diff $WORK/before-$cfg.dag $WORK/after-$cfg.dag"
        status=1
    fi
done
echo "[refactor check] runs kept in $WORK"
exit $status
