# Parse-time helpers: the model pairs, the task blocks, the config checks, resources.
from syncr2.core.config import (
    canonical_json,
    check_config,
    judge_settings,
    lm_result_options,
    lm_runtime_options,
    n_blocks,
    ordered_pairs,
    pair_key,
)
from syncr2.report.figure_plan import planned_figures
from syncr2.simulation.presets import check_prompt_config
from syncr2.simulation.tasks import count_selected_tasks

TASKS = config["tasks"]
SYNTHETIC = bool(config.get("synthetic"))
N_TASKS = (
    int(config["synthetic"]["n_tasks"])
    if SYNTHETIC
    else count_selected_tasks(
        TASKS["source"], TASKS.get("path"), TASKS.get("ids"), TASKS.get("limit")
    )
)
SEEDS = [int(s) for s in config["seeds"]]
PRESET = check_prompt_config(config)
# The seeds the passive control re-reads (the authors' preset: seeds 0-2 only).
PASSIVE_SEEDS = [s for s in SEEDS if PRESET.reads_seed(s)]
check_config(config, N_TASKS, passive_seeds=len(PASSIVE_SEEDS))

PAIRS = {pair_key(m1, m2): (m1, m2) for m1, m2 in ordered_pairs(config)}
BLOCKS = list(range(n_blocks(N_TASKS, int(TASKS.get("block_size", 16)))))
CONDITIONS = list(config["conditions"])
DIRECTIONS = list(config["directions"])
FIGURES = planned_figures(list(PAIRS), CONDITIONS, DIRECTIONS)
FAMILIES = {m: spec.get("family", m) for m, spec in config["models"].items()}
# Names unordered pairs a__b (a first) and picks Table 1's order of a same-family pair:
# a list in the config, else the sorted keys (never the mapping's order, which is no meaning).
MODEL_ORDER = config["analysis"].get("model_order") or sorted(config["models"])


wildcard_constraints:
    pair="[^/]+__[^/]+",
    model="[^/_][^/]*",
    seed=r"\d+",
    block=r"\d+",
    agent="[12]",
    condition="experimental|passive|lag[1-9][0-9]*",
    direction="AtoB|BtoA",


RES = config.get("resources", {})
# Sizes (mem_mb, runtime, cpus_per_task) are per rule in workflow/profiles/default
# (or workflow/profiles/paper); the rules declare only the kind of job.


def gpu_resources():
    """A GPU job: one GPU (Slurm: --gpus=1) on the GPU partition."""
    return dict(gpu=1, slurm_partition=RES["gpu_partition"])


def cpu_resources():
    """A CPU job on the CPU partition."""
    return dict(slurm_partition=RES["cpu_partition"])


def canon(value):
    """Rule params are rerun triggers: one canonical text per meaning."""
    return canonical_json(value)


def model_dir(model):
    """Where a model is loaded from: its built directory, or its configured path/hub id."""
    spec = config["models"][model]
    return f"results/models/{model}" if "build" in spec else spec["path"]


def model_inputs(wildcards):
    """The built model directories a pair needs as inputs (hub models are not files)."""
    return [
        f"results/models/{m}"
        for m in PAIRS[wildcards.pair]
        if "build" in config["models"][m]
    ]


def model_arg(wildcards, agent):
    """KEY=PATH of agent 1's or 2's model (PATH: built directory or hub id)."""
    model = PAIRS[wildcards.pair][agent - 1]
    return f"{model}={model_dir(model)}"


def lm_params(wildcards, agent):
    """The loading options of agent 1's or 2's model that change its outputs."""
    model = PAIRS[wildcards.pair][agent - 1]
    return canon(lm_result_options(config["models"][model]))


def lm_runtime(wildcards, agent):
    """Where and in what batches agent 1's or 2's model runs: a resource, never a rerun trigger."""
    model = PAIRS[wildcards.pair][agent - 1]
    return canon(lm_runtime_options(config["models"][model]))


def rep_shards(pair, kind):
    """All representation shards of a pair's genuine or passive runs, both agents."""
    return expand(
        "results/reps/{pair}/seed{seed}/{kind}/block{block}_agent{agent}.parquet",
        pair=pair,
        seed=PASSIVE_SEEDS if kind == "passive" else SEEDS,
        kind=kind,
        block=BLOCKS,
        agent=[1, 2],
    )
