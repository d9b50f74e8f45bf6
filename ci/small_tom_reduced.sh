#!/usr/bin/env bash
# The reduced ToM run of config/small.yaml whose numbers are in README ("Theory of Mind decoding"):
# 30 Sotopia tasks, SmolLM2 and Gemma-3 each with itself, constrained, one seed, 12 turns, 32 new
# tokens; only the ToM targets (the main study's sizes are scaled down so the config check passes).
# From an activated venv: SOTOPIA=/path/to/sotopia bash ci/small_tom_reduced.sh
set -euo pipefail
cd "$(dirname "$0")/.."
sotopia="${SOTOPIA:-../shared/sotopia}"
exec snakemake -c 2 --configfile config/small.yaml --config \
    "tasks={\"source\": \"sotopia_exports\", \"path\": \"$sotopia\", \"limit\": 30, \"block_size\": 30}" \
    'generation={"max_turns": 12, "max_new_tokens": 32}' \
    'r2={"size": 40}' \
    'analysis={"sensitivity": {"sizes": [20, 40]}, "relationships": {"size": 20}}' \
    "$@" -- results/summary/tom.parquet
