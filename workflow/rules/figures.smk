# Figures and tables go to reports/figures and reports/tables; every file a rule writes is declared.


rule figures:
    """CPU job: the paper's figures 2, 3, 4a, 4b and the SyncR2 tables into reports/."""
    input:
        summary="results/summary/synchrony.parquet",
        tables=PLAN.r2_tables(conditions=CONDITIONS),
    output:
        # Every file is declared: a study of one condition rewrites only its own figures.
        figures=figure_files(PLAN.figures, "figures", "Figures"),
        html=shown("reports/tables/synchrony.html", "synchrony_table", "Tables"),
        tables=table_files(["synchrony"]),
    log:
        "logs/figures.log",
    conda:
        env("figures")
    resources:
        **placement("figures"),
    params:
        settings=settings("figures"),
    shell:
        cli("figures")


rule social_figures:
    """CPU job: Figures 5 and 6, Table 1 and the performance tables into reports/."""
    input:
        scores="results/summary/pair_scores.parquet",
        correlation="results/summary/correlation.parquet",
        partial="results/summary/partial_correlation.parquet",
        performance="results/summary/performance.parquet",
        relationships="results/summary/relationships.parquet",
    output:
        figures=figure_files(
            ["fig6_correlation", "fig5_relationships"], "social", "Social performance"
        ),
        html=shown("reports/tables/social.html", "social_tables", "Tables"),
        tables=table_files(["table1_partial_correlation", "performance", "correlation"]),
    log:
        "logs/social_figures.log",
    conda:
        env("social_figures")
    resources:
        **placement("social_figures"),
    params:
        settings=settings("social_figures"),
    shell:
        cli("social-figures")
