rule tasks:
    """Sotopia tasks (or the demo set) -> the normalized task table with rendered intros."""
    output:
        "results/tasks.parquet",
    params:
        source=TASKS["source"],
        path=f"--path {TASKS['path']}" if TASKS.get("path") else "",
        ids=("--ids " + " ".join(map(str, TASKS["ids"]))) if TASKS.get("ids") else "",
        limit=f"--limit {TASKS['limit']}" if TASKS.get("limit") else "",
        templates=json.dumps(config.get("prompts", {})),
        reader_seed=TASKS.get("reader_seed", 0),
    resources:
        **cpu_resources(),
    log:
        "logs/tasks.log",
    shell:
        "{PY} tasks --source {params.source} {params.path} {params.ids} {params.limit} "
        "--templates {params.templates:q} --reader-seed {params.reader_seed} --out {output} 2> {log}"
