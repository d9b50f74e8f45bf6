FAMILIES = {m: spec.get("family", m) for m, spec in config["models"].items()}


rule figures:
    """CPU job: the paper's figures 2, 3, 4a, 4b and the summary tables into reports/."""
    input:
        summary="results/summary/synchrony.parquet",
        tables=expand(
            "results/r2/{pair}/{condition}/{direction}.parquet",
            pair=PAIRS, condition=CONDITIONS, direction=DIRECTIONS,
        ),
    output:
        report(
            directory("reports/figures"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
        ),
        tables=directory("reports/tables"),
    params:
        families=json.dumps(FAMILIES),
    resources:
        **cpu_resources(),
    log:
        "logs/figures.log",
    shell:
        "{PY} figures --summary {input.summary} --tables {input.tables} --families {params.families:q} "
        "--figures-dir {output[0]} --tables-dir {output.tables} 2> {log}"
