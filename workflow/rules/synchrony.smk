R2 = config["r2"]


rule check_sizes:
    """CPU job, before any R2 job of a condition: do the simulated episodes fill r2.size?"""
    input:
        episodes=lambda wc: expand(
            "results/episodes/{pair}/seed{seed}/block{block}.parquet",
            pair=PAIRS,
            seed=PASSIVE_SEEDS if wc.condition == "passive" else SEEDS,
            block=BLOCKS,
        ),
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
    """CPU job: test-set R2 of every layer pair of one (pair, condition, direction).

    results/r2/: the main tables; results/r2_size/{size}/ and results/r2_persona/: the same
    job at another size or with persona-pair groups (the sensitivity analyses).
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
        genuine=lambda wc: rep_shards(wc.pair, "genuine"),
        passive=lambda wc: (
            rep_shards(wc.pair, "passive") if wc.condition == "passive" else []
        ),
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
        tables=expand(
            "results/r2/{pair}/{{condition}}/{direction}.parquet",
            pair=PAIRS,
            direction=DIRECTIONS,
        ),
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
        tables=expand(
            "results/summary/synchrony_{condition}.parquet", condition=CONDITIONS
        ),
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
