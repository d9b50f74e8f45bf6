#!/usr/bin/env bash
# The reduced small-model study whose numbers are in README ("A real small-model study"):
# 150 Sotopia tasks, the SmolLM2 pair, 12 turns, 32 new tokens, r2.size 400, no judge.
# From an activated venv: SOTOPIA=/path/to/sotopia bash ci/small_study_reduced.sh
# (35.8 min on this project's 2-core CPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
sotopia="${SOTOPIA:-../shared/sotopia}"
out=results/r2_size
exec snakemake -c 2 --configfile config/small.yaml --config \
    "tasks={\"source\": \"sotopia_exports\", \"path\": \"$sotopia\", \"limit\": 150, \"block_size\": 50}" \
    'pairs=[["smollm2","smollm2"]]' \
    'generation={"max_turns": 12, "max_new_tokens": 32}' \
    'r2={"size": 400}' \
    'analysis={"sensitivity": {"sizes": [100, 200, 400]}, "nonlinear": {"pairs": ["smollm2__smollm2"]}}' \
    "$@" -- results/summary/synchrony.parquet results/summary/surrogate.parquet \
    $out/100/smollm2__smollm2/experimental/AtoB.parquet $out/100/smollm2__smollm2/experimental/BtoA.parquet \
    $out/200/smollm2__smollm2/experimental/AtoB.parquet $out/200/smollm2__smollm2/experimental/BtoA.parquet
