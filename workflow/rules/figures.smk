# Figures and tables go to reports/figures and reports/tables; every file a rule writes is declared.
REPORT_DIRS = "--out figures reports/figures --out tables reports/tables"


rule figures:
    """CPU job: the paper's figures 2, 3, 4a, 4b and the SyncR2 tables into reports/."""
    input:
        summary="results/summary/synchrony.parquet",
        tables=expand(
            "results/r2/{pair}/{condition}/{direction}.parquet",
            pair=PAIRS,
            condition=CONDITIONS,
            direction=DIRECTIONS,
        ),
    output:
        # Every file is declared: a study of one condition rewrites only its own figures.
        png=[
            report(
                f"reports/figures/{stem}.png",
                caption="../report/figures.rst",
                category="Figures",
            )
            for stem in FIGURES
        ],
        pdf=[f"reports/figures/{stem}.pdf" for stem in FIGURES],
        html=report(
            "reports/tables/synchrony.html",
            caption="../report/synchrony_table.rst",
            category="Tables",
        ),
        csv="reports/tables/synchrony.csv",
        md="reports/tables/synchrony.md",
    log:
        "logs/figures.log",
    conda:
        env("figures")
    resources:
        **placement("figures"),
    params:
        settings=settings("figures"),
    shell:
        cli("figures", outputs=[], extra=REPORT_DIRS)


rule social_figures:
    """CPU job: Figures 5 and 6, Table 1 and the performance tables into reports/."""
    input:
        scores="results/summary/pair_scores.parquet",
        correlation="results/summary/correlation.parquet",
        partial="results/summary/partial_correlation.parquet",
        performance="results/summary/performance.parquet",
        relationships="results/summary/relationships.parquet",
    output:
        fig6=report(
            "reports/figures/fig6_correlation.png",
            caption="../report/social.rst",
            category="Social performance",
        ),
        fig5=report(
            "reports/figures/fig5_relationships.png",
            caption="../report/social.rst",
            category="Social performance",
        ),
        pdf=expand(
            "reports/figures/{name}.pdf",
            name=["fig6_correlation", "fig5_relationships"],
        ),
        html=report(
            "reports/tables/social.html",
            caption="../report/social_tables.rst",
            category="Tables",
        ),
        tables=expand(
            "reports/tables/{name}.{ext}",
            name=["table1_partial_correlation", "performance", "correlation"],
            ext=["csv", "md"],
        ),
    log:
        "logs/social_figures.log",
    conda:
        env("social_figures")
    resources:
        **placement("social_figures"),
    params:
        settings=settings("social_figures"),
    shell:
        cli(
            "social-figures",
            inputs=[],
            outputs=[],
            extra=f"--in summaries results/summary {REPORT_DIRS}",
        )
