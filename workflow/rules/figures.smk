FAMILIES = {m: spec.get("family", m) for m, spec in config["models"].items()}


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
