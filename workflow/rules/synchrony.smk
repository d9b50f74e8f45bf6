rule check_sizes:
    """CPU job, before any R2 job of a condition: do the simulated episodes fill r2.size?"""
    input:
        episodes=lambda wc: PLAN.condition_episodes(wc.condition),
        tasks=[],
    output:
        sizes="results/checks/sample_sizes_{condition}.parquet",
    log:
        "logs/check_sizes/{condition}.log",
    conda:
        env("check_sizes")
    resources:
        **placement("check_sizes"),
    params:
        settings=settings("check_sizes"),
    shell:
        cli("check-sizes")


rule r2_table:
    """CPU job: test-set R2 of every layer pair of one (pair, condition, direction); under
    r2_size/{size}/ and r2_persona/, at another size or by persona pairs (sensitivity).
    """
    input:
        # the main tables wait for the size check; ancient: its rewrite after another pair's rerun reruns nothing.
        # A sensitivity table records a size its data cannot fill instead (insufficient).
        sizes=lambda wc: (
            ancient(f"results/checks/sample_sizes_{wc.condition}.parquet")
            if wc.r2dir == "r2"
            else []
        ),
        tasks=lambda wc: "results/tasks.parquet" if wc.r2dir == "r2_persona" else [],
        genuine=shards("genuine"),
        passive=shards("passive"),
    output:
        table="results/{r2dir}/{pair}/{condition}/{direction}.parquet",
    log:
        "logs/r2_table/{r2dir}/{pair}/{condition}/{direction}.log",
    conda:
        env("r2_table")
    resources:
        **placement("r2_table"),
    params:
        settings=settings("r2_table"),
    shell:
        cli("r2")


rule synchrony_condition:
    """CPU job: SyncR2 of every pair for one condition (rerun one condition through this target)."""
    input:
        tables=lambda wc: PLAN.r2_tables(conditions=[wc.condition]),
    output:
        summary="results/summary/synchrony_{condition}.parquet",
    log:
        "logs/synchrony/{condition}.log",
    conda:
        env("synchrony_condition")
    resources:
        **placement("synchrony_condition"),
    params:
        settings=settings("synchrony_condition"),
    shell:
        cli("sync")


rule synchrony:
    """CPU job: the SyncR2 summary of every configured condition."""
    input:
        tables=expand("results/summary/synchrony_{c}.parquet", c=CONDITIONS),
    output:
        table="results/summary/synchrony.parquet",
    log:
        "logs/synchrony/all.log",
    conda:
        env("synchrony")
    resources:
        **placement("synchrony"),
    params:
        settings=settings("synchrony"),
    shell:
        cli("concat")
