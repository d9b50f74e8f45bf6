# Robustness (README, "Robustness"): sensitivity analyses, nonlinear maps, the surrogate null;
# beyond SyncR2 (README, "Beyond SyncR2"): other similarity measures and the lag profile.
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


rule measure_grids:
    """CPU job: CKA, RSA and Procrustes of every layer pair of one (pair, condition), both directions."""
    input:
        genuine=shards("genuine"),
        passive=shards("passive"),
    output:
        grids="results/measures/{pair}/{condition}.parquet",
    log:
        "logs/measures/{pair}/{condition}.log",
    conda:
        env("measure_grids")
    resources:
        **placement("measure_grids"),
    params:
        settings=settings("measure_grids"),
    shell:
        cli("measures")


rule measures:
    """CPU job: the measures table (SyncR2 beside the others) and its figure."""
    input:
        grids=expand(
            "results/measures/{pair}/{c}.parquet",
            pair=PLAN.measure_pairs,
            c=CONDITIONS,
        ),
        synchrony="results/summary/synchrony.parquet",
    output:
        summary="results/summary/measures.parquet",
        figures=figure_files(["measures"], "measures", "Beyond SyncR2"),
    log:
        "logs/measures/all.log",
    conda:
        env("measures")
    resources:
        **placement("measures"),
    params:
        settings=settings("measures"),
    shell:
        cli("measures-summary")


rule lag_profile:
    """CPU job: SyncR2 of one pair at every lag -K..K, with a turn-rotation surrogate band."""
    input:
        genuine=lambda wc: PLAN.rep_shards(wc.pair, "genuine"),
    output:
        profile="results/lag_profile/{pair}.parquet",
    log:
        "logs/lag_profile/{pair}.log",
    conda:
        env("lag_profile")
    resources:
        **placement("lag_profile"),
    params:
        settings=settings("lag_profile"),
    shell:
        cli("lag-profile")


rule lag_profiles:
    """CPU job: every pair's lag profile in one table, and one figure per pair."""
    input:
        profiles=expand("results/lag_profile/{pair}.parquet", pair=PLAN.lag_pairs),
    output:
        summary="results/summary/lag_profile.parquet",
        figures=figure_files(
            [f"lag_profile_{p}" for p in PLAN.lag_pairs],
            "lag_profile",
            "Beyond SyncR2",
        ),
    log:
        "logs/lag_profile/all.log",
    conda:
        env("lag_profiles")
    resources:
        **placement("lag_profiles"),
    params:
        settings=settings("lag_profiles"),
    shell:
        cli("lag-profile-summary")
