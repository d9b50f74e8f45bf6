rule tasks:
    """Sotopia tasks (or the demo set) -> the normalized task table with rendered intros."""
    output:
        "results/tasks.parquet",
    log:
        "logs/tasks.log",
    conda:
        "../../envs/cpu.yaml"
    resources:
        **cpu_resources(),
    params:
        source=TASKS["source"],
        path=f"--path {TASKS['path']}" if TASKS.get("path") else "",
        ids=("--ids " + " ".join(map(str, TASKS["ids"]))) if TASKS.get("ids") else "",
        limit=f"--limit {TASKS['limit']}" if TASKS.get("limit") else "",
        templates=canon(PRESET.config_section()),
        reader_seed=TASKS.get("reader_seed", 0),
    shell:
        "python -m syncr2 tasks --source {params.source} {params.path} {params.ids} {params.limit} "
        "--templates {params.templates:q} --reader-seed {params.reader_seed} --out {output} 2> {log}"
