rule tasks:
    """Sotopia tasks (or the demo set) -> the normalized task table with rendered intros."""
    output:
        tasks="results/tasks.parquet",
    log:
        "logs/tasks.log",
    conda:
        env(False)
    resources:
        **placement(False),
    params:
        settings=settings("tasks"),
    shell:
        cli("tasks")
