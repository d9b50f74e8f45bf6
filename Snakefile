# syncr2: neural synchrony between socially interacting language models.
#
#   snakemake -c 2                      # the default demo (config/config.yaml)
#   snakemake --profile slurm           # the same DAG on a Slurm cluster
#   snakemake -c 2 --configfile config/paper.yaml   # the paper's study
#
# Every rule calls one `python -m syncr2 ...` entry point; no science lives here.
# GPU rules: simulate, read_passive. CPU rules: everything else.

from snakemake.utils import min_version, validate

min_version("9.0")

# `--configfile other.yaml` replaces the demo config instead of being merged into it.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/tasks.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/synchrony.smk"
include: "workflow/rules/figures.smk"


rule all:
    input:
        rules.figures.output,
        "results/summary/synchrony.parquet",
    default_target: True
