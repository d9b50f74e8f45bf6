# Robustness (README, "Robustness"): sensitivity analyses, nonlinear maps, the surrogate null.
# Each runs alone through its target, e.g. snakemake -c 2 results/sensitivity/sample_size.parquet
rule sensitivity_analysis:
    """CPU job: one sensitivity analysis (top_k, no_clip, sample_size, persona_split) of every pair."""
    input:
        unpack(lambda wc: PLAN.sensitivity_inputs(wc.analysis)),
    output:
        table="results/sensitivity/{analysis}.parquet",
    log:
        "logs/sensitivity/{analysis}.log",
    wildcard_constraints:
        analysis="top_k|no_clip|sample_size|persona_split",
    conda:
        env("sensitivity_analysis")
    resources:
        **placement("sensitivity_analysis"),
    params:
        settings=settings("sensitivity_analysis"),
    shell:
        cli("sensitivity")


rule sensitivity:
    """CPU job: the sensitivity table of every configured analysis, Figures 7-9 and Table 2."""
    input:
        parts=expand(
            "results/sensitivity/{a}.parquet", a=ANALYSIS["sensitivity"]["analyses"]
        ),
    output:
        sensitivity="results/summary/sensitivity.parquet",
        figures=figure_files(
            PLAN.sensitivity_outputs["figures"], "sensitivity", "Robustness"
        ),
        tables=table_files(PLAN.sensitivity_outputs["tables"]),
    log:
        "logs/sensitivity/all.log",
    conda:
        env("sensitivity")
    resources:
        **placement("sensitivity"),
    params:
        settings=settings("sensitivity"),
    shell:
        cli("sensitivity-figures")


rule mlp_table:
    """GPU job (CPU with analysis.nonlinear.device cpu): the MLP-map R2 table of one pair and direction."""
    input:
        genuine=shards("genuine"),
    output:
        table="results/r2_mlp/{pair}/experimental/{direction}.parquet",
    log:
        "logs/mlp_table/{pair}/{direction}.log",
    conda:
        env("mlp_table")
    resources:
        **placement("mlp_table"),
    params:
        settings=settings("mlp_table"),
    shell:
        cli("r2", inputs=["genuine"])


rule nonlinear:
    """CPU job: SyncR2 of the MLP maps (results/summary/nonlinear.parquet) and Table 5."""
    input:
        affine="results/summary/synchrony_experimental.parquet",
        tables=PLAN.r2_tables("r2_mlp", pairs=PLAN.mlp_pairs),
    output:
        summary="results/summary/nonlinear.parquet",
        tables=table_files(["table5_nonlinear"]),
    log:
        "logs/nonlinear.log",
    conda:
        env("nonlinear")
    resources:
        **placement("nonlinear"),
    params:
        settings=settings("nonlinear"),
    shell:
        cli("nonlinear-summary")


rule surrogate_draws:
    """CPU job: R null SyncR2 draws per surrogate mode for one (pair, condition, direction)."""
    input:
        genuine=shards("genuine"),
        passive=shards("passive"),
    output:
        draws="results/surrogate/{pair}/{condition}/{direction}.parquet",
    log:
        "logs/surrogate/{pair}/{condition}/{direction}.log",
    conda:
        env("surrogate_draws")
    resources:
        **placement("surrogate_draws"),
    params:
        settings=settings("surrogate_draws"),
    shell:
        cli("surrogate")


rule surrogate:
    """CPU job: real SyncR2 against its nulls (results/summary/surrogate.parquet) and the figure."""
    input:
        draws=PLAN.r2_tables(
            "surrogate", PLAN.surrogate_conditions, PLAN.surrogate_pairs
        ),
    output:
        summary="results/summary/surrogate.parquet",
        figures=figure_files(["surrogate_null"], "surrogate", "Robustness"),
    log:
        "logs/surrogate/all.log",
    conda:
        env("surrogate")
    resources:
        **placement("surrogate"),
    params:
        settings=settings("surrogate"),
    shell:
        cli("surrogate-summary")
