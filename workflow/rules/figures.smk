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
        "../../envs/cpu.yaml"
    resources:
        **cpu_resources(),
    params:
        families=canon(FAMILIES),
    shell:
        "python -m syncr2 figures --summary {input.summary} --tables {input.tables} "
        "--families {params.families:q} --figures-dir reports/figures --tables-dir reports/tables 2> {log}"


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
        "../../envs/cpu.yaml"
    resources:
        **cpu_resources(),
    params:
        score=config["analysis"]["syncr2"],
        abbreviations=canon(
            {m: spec.get("abbreviation", m) for m, spec in config["models"].items()}
        ),
    shell:
        "python -m syncr2 social-figures --summary-dir results/summary --abbreviations {params.abbreviations:q} "
        "--syncr2 {params.score} "
        "--figures-dir reports/figures --tables-dir reports/tables 2> {log}"
