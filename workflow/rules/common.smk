# Parse-time helpers: the model pairs, the task blocks, the config checks, resources.
import json
import sys

from syncr2.core.config import check_config, n_blocks, ordered_pairs, pair_key
from syncr2.simulation.tasks import count_selected_tasks

TASKS = config["tasks"]
N_TASKS = count_selected_tasks(TASKS["source"], TASKS.get("path"), TASKS.get("ids"), TASKS.get("limit"))
check_config(config, N_TASKS)

PAIRS = {pair_key(m1, m2): (m1, m2) for m1, m2 in ordered_pairs(config)}
SEEDS = [int(s) for s in config["seeds"]]
BLOCKS = list(range(n_blocks(N_TASKS, int(TASKS.get("block_size", 16)))))
CONDITIONS = list(config["conditions"])
DIRECTIONS = list(config["directions"])
PY = f"{sys.executable} -m syncr2"  # the interpreter running Snakemake, in every job too

wildcard_constraints:
    pair="[^/]+__[^/]+",
    model="[^/_][^/]*",
    seed=r"\d+",
    block=r"\d+",
    agent="[12]",
    condition="experimental|passive|lag[1-9][0-9]*",
    direction="AtoB|BtoA",

RES = config.get("resources", {})
GPU_PARTITION = RES.get("gpu_partition", "gpu")
CPU_PARTITION = RES.get("cpu_partition", "cpu")
# Sizes (mem_mb, runtime, cpus_per_task) are per rule in workflow/profiles/default
# (or workflow/profiles/paper); the rules declare only the kind of job.


def gpu_resources():
    """A GPU job: one GPU (Slurm: --gpus=1) on the GPU partition."""
    return dict(gpu=1, slurm_partition=GPU_PARTITION)


def cpu_resources():
    """A CPU job on the CPU partition."""
    return dict(slurm_partition=CPU_PARTITION)


def model_dir(model):
    """Where a model is loaded from: its built directory, or its configured path/hub id."""
    spec = config["models"][model]
    return f"results/models/{model}" if "build" in spec else spec["path"]


def model_inputs(wildcards):
    """The built model directories a pair needs as inputs (hub models are not files)."""
    return [f"results/models/{m}" for m in PAIRS[wildcards.pair] if "build" in config["models"][m]]


def lm_options(model):
    """JSON of the model's loading options for the package's LMConfig."""
    spec = config["models"][model]
    opts = {k: spec[k] for k in ("revision", "dtype", "device", "batch_size", "chat_template") if k in spec}
    return json.dumps(opts)


def rep_shards(pair, kind):
    """All representation shards of a pair's genuine or passive runs, both agents."""
    return expand(
        "results/reps/{pair}/seed{seed}/{kind}/block{block}_agent{agent}.parquet",
        pair=pair, seed=SEEDS, kind=kind, block=BLOCKS, agent=[1, 2],
    )
