#!/usr/bin/env bash
# End-to-end test of `snakemake --profile slurm` on a real single-node Slurm cluster on localhost.
#
#   ci/slurm_e2e.sh [snakemake args...]        # e.g. ci/slurm_e2e.sh --config seeds=[0]
#
# It runs the smoke config (config/smoke.yaml: tiny random models, minutes on a CPU), not the
# embedded default; the args come after its --configfile, so a --configfile among them wins.
#
# 1. starts Slurm (munge, MariaDB + slurmdbd, slurmctld, slurmd; partitions cpu and gpu, fake
#    GPUs) with the shared ../shared/tools/slurm-local/up.sh, which apt-installs the packages
#    if they are missing (needs root);
# 2. runs `snakemake --profile slurm --configfile config/smoke.yaml "$@"` from the repository root;
# 3. checks in sacct that every job COMPLETED, that GPU rules got partition gpu + gres/gpu=1
#    and all other rules partition cpu without a GPU (ci/check_slurm_accounting.py);
# 4. always stops the cluster again (down.sh), also on failure or Ctrl-C.
#
# Environment:
#   SLURM_LOCAL_DIR  where up.sh/down.sh are      (default: <repo>/../shared/tools/slurm-local)
#   SLURM_CI_NGPU, SLURM_CI_CPUS                  (default: 2 and 8, passed to up.sh)
#   SBATCH_ACCOUNT   account for the jobs          (default: $SLURM_CI_ACCOUNT or ci, made by up.sh)
#   GPU_RULES        rules that must get a GPU     (default: those Study.placement puts on a GPU for
#                                                   config/smoke.yaml: simulate, read_passive,
#                                                   simulate_tom, judge)
#   SNAKEFILE_DIR    run another workflow: adds `--snakefile DIR/Snakefile --directory DIR`
#                    (the profile is still ./slurm of this repository), e.g. a toy workflow;
#                    its own config then, no --configfile unless SLURM_E2E_CONFIGFILE is set
#   SLURM_E2E_CONFIGFILE  the --configfile to run (default: <repo>/config/smoke.yaml;
#                    set but empty: none, i.e. the workflow's embedded default)
#   VENV             virtualenv to activate if snakemake is not on PATH (default: <repo>/.venv)
#   SLURM_POLL_SECONDS  --slurm-init-seconds-before-status-checks for this test (default 2;
#                    the profile's 10 s makes each wave of jobs wait longer on this tiny cluster)
#   KEEP_SLURM_STATE=1  keep the run's Slurm state directory (logs, database) after success
#
# Every run gets a fresh Slurm state directory (SLURM_CI_BASE=$(mktemp -d)): slurmctld recovers
# the jobs of an old state directory (an interrupted run, a machine image taken mid-run), the node
# then comes up "mix" instead of "idle" and up.sh gives up. A cluster left running by an earlier
# run under the default base is stopped first, since it would hold the ports.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SLURM_LOCAL_DIR=${SLURM_LOCAL_DIR:-$REPO/../shared/tools/slurm-local}
export SLURM_CI_NGPU=${SLURM_CI_NGPU:-2} SLURM_CI_CPUS=${SLURM_CI_CPUS:-8}
export SBATCH_ACCOUNT=${SBATCH_ACCOUNT:-${SLURM_CI_ACCOUNT:-ci}}   # read by the profile
# the GPU rules as the workflow decides them (one decision: Study.placement), not a second list
GPU_RULES=${GPU_RULES:-$(cd "$REPO" && python3 -c 'import yaml; from syncr2.core.settings import RULE_SETTINGS, Study
s = Study.from_config(yaml.safe_load(open("config/smoke.yaml")))
print(",".join(r for r in RULE_SETTINGS if s.placement(r).gpu))')}
echo "GPU rules: $GPU_RULES"
t0=$SECONDS
say() { echo "[slurm_e2e +$((SECONDS - t0))s] $*"; }

[ -x "$SLURM_LOCAL_DIR/up.sh" ] || { echo "slurm_e2e: no up.sh in $SLURM_LOCAL_DIR" >&2; exit 2; }

# The jobs run `python -m syncr2 ...` and the venv's snakemake: they inherit PATH from here
# (the slurm plugin submits with sbatch --export=ALL), so the venv must be active.
VENV=${VENV:-$REPO/.venv}
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f "$VENV/bin/activate" ]; then
  # shellcheck disable=SC1091
  . "$VENV/bin/activate"
fi
command -v snakemake >/dev/null || { echo "slurm_e2e: snakemake not on PATH (no $VENV?)" >&2; exit 2; }

# stop a leftover cluster of an earlier (interrupted) run, then start from a fresh state directory
for old in /tmp/syncr2-slurm "${SLURM_CI_BASE:-}"; do
  [ -n "$old" ] && [ -d "$old" ] && SLURM_CI_BASE=$old bash "$SLURM_LOCAL_DIR/down.sh" >/dev/null 2>&1 || true
done
export SLURM_CI_BASE
SLURM_CI_BASE=$(mktemp -d /tmp/syncr2-slurm-run.XXXXXX)
chmod 755 "$SLURM_CI_BASE"   # MariaDB runs as user mysql and must reach its datadir inside

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  say "stopping the cluster"
  bash "$SLURM_LOCAL_DIR/down.sh" || true
  if [ "$rc" = 0 ] && [ "${KEEP_SLURM_STATE:-0}" != 1 ]; then
    rm -rf "$SLURM_CI_BASE"
  else
    say "Slurm state and logs kept in $SLURM_CI_BASE"
  fi
  say "exit $rc"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "starting Slurm (NGPU=$SLURM_CI_NGPU CPUS=$SLURM_CI_CPUS, state in $SLURM_CI_BASE)"
bash "$SLURM_LOCAL_DIR/up.sh"
say "cluster up"

extra=()
# the smoke config: --configfile takes every word up to the next option, so it goes first
if [ -n "${SNAKEFILE_DIR:-}" ]; then default_configfile=""; else default_configfile=$REPO/config/smoke.yaml; fi
CONFIGFILE=${SLURM_E2E_CONFIGFILE-$default_configfile}
if [ -n "$CONFIGFILE" ]; then extra+=(--configfile "$CONFIGFILE"); fi
extra+=(--slurm-init-seconds-before-status-checks "${SLURM_POLL_SECONDS:-2}")
if [ -n "${SNAKEFILE_DIR:-}" ]; then
  d=$(cd "$SNAKEFILE_DIR" && pwd)
  extra+=(--snakefile "$d/Snakefile" --directory "$d")
fi

cd "$REPO"
start=$(date +%Y-%m-%dT%H:%M:%S)       # sacct --starttime: only this run's jobs
say "snakemake --profile slurm ${extra[*]} $* (account $SBATCH_ACCOUNT, jobs since $start)"
rc=0
snakemake --profile slurm "${extra[@]}" "$@" || rc=$?
say "snakemake finished with exit code $rc"
if [ "$rc" != 0 ]; then
  echo "--- sacct since $start"
  timeout 30 sacct -X --starttime="$start" --format=JobID,JobName%40,Partition,AllocTRES%40,State,ExitCode || true
  exit "$rc"
fi

python3 "$REPO/ci/check_slurm_accounting.py" --gpu-rules "$GPU_RULES" --starttime "$start"
say "accounting check passed"
