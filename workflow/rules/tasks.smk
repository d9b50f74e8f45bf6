rule tasks:
    """Sotopia tasks (or the demo set) -> the normalized task table with rendered intros."""
    output:
        tasks="results/tasks.parquet",
    log:
        "logs/tasks.log",
    conda:
        env("tasks")
    resources:
        **placement("tasks"),
    params:
        settings=settings("tasks"),
    shell:
        cli("tasks")
