# Parse-time helpers: the model pairs, the task blocks, the config checks, resources.
import re

from syncr2.core.config import (
    canonical_json,
    check_config,
    judge_settings,
    lm_result_options,
    lm_runtime_options,
    n_blocks,
    ordered_pairs,
    pair_key,
    robustness_pairs,
)
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
FAMILIES = {m: spec.get("family", m) for m, spec in config["models"].items()}
# Names unordered pairs a__b (a first) and picks Table 1's order of a same-family pair:
# a list in the config, else the sorted keys (never the mapping's order, which is no meaning).
MODEL_ORDER = config["analysis"].get("model_order") or sorted(config["models"])
ABBREVIATIONS = {m: spec.get("abbreviation", m) for m, spec in config["models"].items()}
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


def r2_dir(size):
    """The R2 table folder of a dataset size: the main tables at r2.size, else results/r2_size/{size}."""
    return "r2" if int(size) == int(config["r2"]["size"]) else f"r2_size/{size}"


def r2_variant(wildcards):
    """What a sensitivity R2 table changes (its size comes from r2_size_of); "" for the main tables."""
    if wildcards.r2dir == "r2":
        return ""
    if wildcards.r2dir == "r2_persona":
        return "--groups persona --tasks results/tasks.parquet --insufficient-ok"
    return "--insufficient-ok"


def r2_size_of(wildcards):
    """The dataset size of an R2 table folder (r2_size/{size}), else r2.size."""
    head, _, size = wildcards.r2dir.partition("/")
    return int(size) if head == "r2_size" else int(config["r2"]["size"])


def sensitivity_inputs(wildcards):
    """The files one sensitivity analysis reads."""
    main = expand(
        "results/r2/{pair}/experimental/{direction}.parquet",
        pair=PAIRS,
        direction=DIRECTIONS,
    )
    perf = "results/summary/performance.parquet"
    if wildcards.analysis == "top_k":
        return {"tables": main, "performance": perf}
    if wildcards.analysis == "no_clip":
        return {"summary": "results/summary/synchrony_experimental.parquet"}
    if wildcards.analysis == "sample_size":
        sized = [
            f"results/{r2_dir(size)}/{pair}/experimental/{d}.parquet"
            for size in config["analysis"]["sensitivity"]["sizes"]
            for pair in PAIRS
            for d in DIRECTIONS
        ]
        return {"tables": sized, "performance": perf}
    disjoint = expand(
        "results/r2_persona/{pair}/experimental/{direction}.parquet",
        pair=PAIRS,
        direction=DIRECTIONS,
    )
    return {"tables": main, "disjoint": disjoint}


def sensitivity_args(wildcards, input):
    """The input files as CLI options of `syncr2 sensitivity`."""
    files = {name: input[name] for name in input.keys()}
    return " ".join(
        f"--{name} {f if isinstance(f, str) else ' '.join(f)}"
        for name, f in files.items()
    )
