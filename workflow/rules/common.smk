# Parse-time helpers: the model pairs, the task blocks, the config checks, resources.
import re

from syncr2.cli import shell_command as cli
from syncr2.core.config import (
    check_config,
    n_blocks,
    ordered_pairs,
    pair_key,
    robustness_pairs,
)
from syncr2.core.settings import Study, step_json
from syncr2.report.figure_plan import planned_figures, planned_sensitivity
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
# Robustness (workflow/rules/robustness.smk): which analyses, pairs and outputs the config asks for.
SENSITIVITY_OUTPUTS = planned_sensitivity(config["analysis"]["sensitivity"]["analyses"])
MLP_PAIRS = robustness_pairs(config, "nonlinear")
SURROGATE_PAIRS = robustness_pairs(config, "surrogate")
SURROGATE_CONDITIONS = [
    c for c in config["analysis"]["surrogate"]["conditions"] if c in CONDITIONS
]


wildcard_constraints:
    pair="[^/]+__[^/]+",
    model="[^/_][^/]*",
    seed=r"\d+",
    block=r"\d+",
    agent="[12]",
    condition="experimental|passive|lag[1-9][0-9]*",
    direction="AtoB|BtoA",
    # the main R2 tables, and those of the sample-size and persona-disjoint sensitivity analyses
    r2dir=r"r2|r2_size/\d+|r2_persona",


RES = config.get("resources", {})
# Sizes (mem_mb, runtime, cpus_per_task) are per rule in workflow/profiles/default
# (or workflow/profiles/paper); a rule declares only where it runs (placement).


def placement(rule):
    """A job's resources by STUDY.placement: one GPU on the GPU partition, or the CPU
    partition; and its run options (device, batches), a JSON that is never a rerun trigger.
    """
    res = (
        dict(gpu=1, slurm_partition=RES["gpu_partition"])
        if STUDY.placement(rule).gpu
        else dict(slurm_partition=RES["cpu_partition"])
    )
    return {
        **res,
        "run_options": lambda wc: step_json(STUDY.placement(rule, wc).run_options),
    }


def env(rule):
    """A job's conda environment, by the same placement as its resources."""
    return "../../envs/gpu.yaml" if STUDY.placement(rule).gpu else "../../envs/cpu.yaml"


def settings(rule):
    """A rule's only param: the canonical JSON of what its step uses (STUDY.settings)."""
    return lambda wc: step_json(STUDY.settings(rule, wc))


def made_here(model):
    """Whether the workflow makes the model's checkpoint (built tiny or converted from GGUF)."""
    return "build" in config["models"][model] or "gguf" in config["models"][model]


def models_made_by(source):
    """A wildcard regex matching exactly the model keys whose entry has ``source`` (build or gguf)."""
    keys = [m for m, spec in config["models"].items() if source in spec]
    return "|".join(re.escape(m) for m in keys) or "(?!)"  # (?!) matches nothing


def model_dir(model):
    """Where a model is loaded from: its built or converted directory, or its configured path/hub id."""
    if made_here(model):
        return f"results/models/{model}"
    return config["models"][model]["path"]


def model_inputs(wildcards):
    """The built or converted model directories a pair needs as inputs (hub models are not files)."""
    return [f"results/models/{m}" for m in PAIRS[wildcards.pair] if made_here(m)]


STUDY = Study.from_config(
    config,
    templates=PRESET.config_section(),
    model_dirs={m: model_dir(m) for m in config["models"]},
    n_tasks=N_TASKS,
)


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


def r2_dir(size):
    """The R2 table folder of a dataset size: the main tables at r2.size, else results/r2_size/{size}."""
    return "r2" if int(size) == int(config["r2"]["size"]) else f"r2_size/{size}"


def sensitivity_inputs(wildcards):
    """The files one sensitivity analysis reads (every name of the step; [] where unused)."""
    main = expand(
        "results/r2/{pair}/experimental/{direction}.parquet",
        pair=PAIRS,
        direction=DIRECTIONS,
    )
    files = dict(tables=[], disjoint=[], summary=[], performance=[])
    perf = "results/summary/performance.parquet"
    if wildcards.analysis == "top_k":
        return {**files, "tables": main, "performance": perf}
    if wildcards.analysis == "no_clip":
        return {**files, "summary": "results/summary/synchrony_experimental.parquet"}
    if wildcards.analysis == "sample_size":
        sized = [
            f"results/{r2_dir(size)}/{pair}/experimental/{d}.parquet"
            for size in config["analysis"]["sensitivity"]["sizes"]
            for pair in PAIRS
            for d in DIRECTIONS
        ]
        return {**files, "tables": sized, "performance": perf}
    disjoint = expand(
        "results/r2_persona/{pair}/experimental/{direction}.parquet",
        pair=PAIRS,
        direction=DIRECTIONS,
    )
    return {**files, "tables": main, "disjoint": disjoint}
