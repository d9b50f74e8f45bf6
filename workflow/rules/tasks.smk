rule tasks:
    """Sotopia tasks (the demo set, or a transcript's conversations) -> the task table with rendered intros."""
    input:
        PLAN.task_files(),
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
