# Robustness (README, "Robustness"): sensitivity analyses, nonlinear maps, the surrogate null.
# The sample-size and persona-disjoint R2 tables come from rule r2_table (results/r2_size/{size}/...,
# results/r2_persona/...); each analysis runs alone through its target, e.g.
#   snakemake -c 2 results/sensitivity/sample_size.parquet
SENS = ANALYSIS["sensitivity"]
MLP = ANALYSIS["nonlinear"]
SUR = ANALYSIS["surrogate"]


rule sensitivity_analysis:
    """CPU job: one sensitivity analysis (top_k, no_clip, sample_size, persona_split) of every pair."""
    input:
        unpack(sensitivity_inputs),
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
            "results/sensitivity/{analysis}.parquet", analysis=SENS["analyses"]
        ),
    output:
        sensitivity="results/summary/sensitivity.parquet",
        png=[
            report(
                f"reports/figures/{stem}.png",
                caption="../report/sensitivity.rst",
                category="Robustness",
            )
            for stem in SENSITIVITY_OUTPUTS["figures"]
        ],
        pdf=expand("reports/figures/{stem}.pdf", stem=SENSITIVITY_OUTPUTS["figures"]),
        tables=expand(
            "reports/tables/{stem}.{ext}",
            stem=SENSITIVITY_OUTPUTS["tables"],
            ext=["csv", "md"],
        ),
    log:
        "logs/sensitivity/all.log",
    conda:
        env("sensitivity")
    resources:
        **placement("sensitivity"),
    params:
        settings=settings("sensitivity"),
    shell:
        cli("sensitivity-figures", outputs=["sensitivity"], extra=REPORT_DIRS)


rule mlp_table:
    """GPU job (CPU with analysis.nonlinear.device cpu): the MLP-map R2 table of one pair and direction."""
    input:
        genuine=lambda wc: rep_shards(wc.pair, "genuine"),
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
        tables=expand(
            "results/r2_mlp/{pair}/experimental/{direction}.parquet",
            pair=MLP_PAIRS,
            direction=DIRECTIONS,
        ),
    output:
        summary="results/summary/nonlinear.parquet",
        tables=expand("reports/tables/table5_nonlinear.{ext}", ext=["csv", "md"]),
    log:
        "logs/nonlinear.log",
    conda:
        env("nonlinear")
    resources:
        **placement("nonlinear"),
    params:
        settings=settings("nonlinear"),
    shell:
        cli(
            "nonlinear-summary",
            outputs=["summary"],
            extra="--out tables reports/tables",
        )


rule surrogate_draws:
    """CPU job: R null SyncR2 draws per surrogate mode for one (pair, condition, direction)."""
    input:
        genuine=lambda wc: rep_shards(wc.pair, "genuine"),
        passive=lambda wc: (
            rep_shards(wc.pair, "passive") if wc.condition == "passive" else []
        ),
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
        draws=expand(
            "results/surrogate/{pair}/{condition}/{direction}.parquet",
            pair=SURROGATE_PAIRS,
            condition=SURROGATE_CONDITIONS,
            direction=DIRECTIONS,
        ),
    output:
        summary="results/summary/surrogate.parquet",
        png=report(
            "reports/figures/surrogate_null.png",
            caption="../report/surrogate.rst",
            category="Robustness",
        ),
        pdf="reports/figures/surrogate_null.pdf",
    log:
        "logs/surrogate/all.log",
    conda:
        env("surrogate")
    resources:
        **placement("surrogate"),
    params:
        settings=settings("surrogate"),
    shell:
        cli(
            "surrogate-summary",
            outputs=["summary"],
            extra="--out figures reports/figures",
        )
