# syncr2: neural synchrony between socially interacting language models.
#
#   snakemake -c 2                                    # the default demo (config/config.yaml)
#   snakemake --profile slurm                         # the same DAG on a Slurm cluster
#   snakemake --profile slurm --configfile config/paper.yaml \
#       --workflow-profile workflow/profiles/paper \
#       --config 'tasks={"source": "sotopia_exports", "path": "sotopia_data"}'
#   (the paper; sotopia_data: your directory of Sotopia's JSON exports)
#
# Every rule calls one `python -m syncr2 ...` entry point; no science lives here.
# GPU rules: simulate (or read_transcript), read_passive, simulate_tom, and judge with a local judge.
# CPU rules: everything else.


from snakemake.utils import min_version, validate
from syncr2.core.config import normalize_cli_config

min_version("9.0")


# `--configfile other.yaml` replaces the demo config instead of being merged into it.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# Nested `--config` values arrive as strings (seeds=[0] gives ["0"]): type them by the schema.
normalize_cli_config(config, "workflow/schemas/config.schema.yaml")


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/tasks.smk"


# A known-answer study (config/synthetic.yaml) plants what the LLM runs and the judge would give.
if PLAN.synthetic:

    include: "workflow/rules/synthetic.smk"

else:

    include: "workflow/rules/models.smk"
    include: "workflow/rules/simulate.smk"
    include: "workflow/rules/social.smk"
    include: "workflow/rules/tom.smk"


include: "workflow/rules/synchrony.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/robustness.smk"


# Figure 6 and Table 1 correlate the experimental condition's SyncR2 with performance
# (a study of recorded transcripts has no judge, so no performance).
if "experimental" not in CONDITIONS or PLAN.transcripts:
    SOCIAL_OUTPUTS = []
elif PLAN.synthetic:  # no Sotopia relationships to plot: the correlations and the truth
    SOCIAL_OUTPUTS = rules.correlate.output + rules.planted_performance.output
else:
    SOCIAL_OUTPUTS = rules.social_figures.output

# Sensitivity (Figures 7-9, Table 2) and nonlinear maps (Table 5) read the experimental condition;
# the surrogate null tests the configured conditions the study has.
EXPERIMENTAL = "experimental" in CONDITIONS
ROBUSTNESS_OUTPUTS = (
    (
        rules.sensitivity.output
        if EXPERIMENTAL and PLAN.sensitivity_outputs["tables"]
        else []
    )
    + (rules.nonlinear.output if EXPERIMENTAL and PLAN.mlp_pairs else [])
    + (
        rules.surrogate.output
        if PLAN.surrogate_pairs and PLAN.surrogate_conditions
        else []
    )
)
# Beyond SyncR2: the other similarity measures and the lag profile, for the pairs their sections name.
BEYOND_OUTPUTS = (rules.measures.output if PLAN.measure_pairs else []) + (
    rules.lag_profiles.output if PLAN.lag_pairs else []
)
# The ToM condition (Figure 11) runs for the pairs of tom.pairs ([]: none).
TOM_OUTPUTS = rules.tom.output if PLAN.tom_pairs and not PLAN.synthetic else []


rule all:
    default_target: True
    input:
        rules.figures.output,
        SOCIAL_OUTPUTS,
        ROBUSTNESS_OUTPUTS,
        BEYOND_OUTPUTS,
        TOM_OUTPUTS,
        "results/summary/synchrony.parquet",
