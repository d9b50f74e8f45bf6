# Parse-time names: the plan of the study (syncr2.workflow_plan), and how a rule runs.
from syncr2.cli import shell_command as cli
from syncr2.core.settings import step_json
from syncr2.workflow_plan import WorkflowPlan

PLAN = WorkflowPlan.from_config(config)  # checks the config against the data first
STUDY = PLAN.study
PAIRS, SEEDS, BLOCKS = PLAN.pairs, PLAN.seeds, PLAN.blocks
CONDITIONS, DIRECTIONS = PLAN.conditions, PLAN.directions
ANALYSIS = config["analysis"]


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


# Sizes (mem_mb, runtime, cpus_per_task) are per rule in workflow/profiles/default
# (or workflow/profiles/paper); a rule declares only where it runs (STUDY.placement).


def placement(rule):
    """A job's Slurm resources, and its run options (device, batches): a JSON, never a rerun trigger."""
    options = lambda wc: step_json(STUDY.placement(rule, wc).run_options)
    return STUDY.placement(rule).slurm(config["resources"]) | {"run_options": options}


def env(rule):
    """A job's conda environment, by the same placement as its resources."""
    return f"../../envs/{STUDY.placement(rule).conda_env}"


def settings(rule):
    """A rule's only param: the canonical JSON of what its step uses (STUDY.settings)."""
    return lambda wc: step_json(STUDY.settings(rule, wc))


def shards(kind):
    """An input function: the pair's genuine or passive shards its condition reads."""
    return lambda wc: PLAN.condition_shards(wc.pair, kind, wc.get("condition", ""))


def shown(path, caption, category):
    """An output shown by `snakemake --report` under category, with workflow/report/{caption}.rst."""
    return report(path, caption=f"../report/{caption}.rst", category=category)


def figure_files(stems, caption, category):
    """Each figure's PNG (shown in the report) and PDF."""
    png = [shown(f"reports/figures/{s}.png", caption, category) for s in stems]
    return png + [f"reports/figures/{s}.pdf" for s in stems]


def table_files(stems):
    """Each table's CSV and Markdown file."""
    return [f"reports/tables/{s}.{ext}" for s in stems for ext in ("csv", "md")]
