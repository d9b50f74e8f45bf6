R2 = config["r2"]


rule check_sizes:
    """CPU job, before any R2 job of a condition: do the simulated episodes fill r2.size?"""
    input:
        lambda wc: expand(
            "results/episodes/{pair}/seed{seed}/block{block}.parquet",
            pair=PAIRS,
            seed=PASSIVE_SEEDS if wc.condition == "passive" else SEEDS,
            block=BLOCKS,
        ),
    output:
        "results/checks/sample_sizes_{condition}.parquet",
    log:
        "logs/check_sizes/{condition}.log",
    conda:
        "../../envs/cpu.yaml"
    resources:
        **cpu_resources(),
    params:
        directions=" ".join(DIRECTIONS),
        size=R2["size"],
        test_fraction=R2["test_fraction"],
        split_seeds=" ".join(map(str, R2["split_seeds"])),
    shell:
        "python -m syncr2 check-sizes --episodes {input} --conditions {wildcards.condition} "
        "--directions {params.directions} --size {params.size} --test-fraction {params.test_fraction} "
        "--split-seeds {params.split_seeds} --out {output} 2> {log}"


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
        "results/{r2dir}/{pair}/{condition}/{direction}.parquet",
    log:
        "logs/r2_table/{r2dir}/{pair}/{condition}/{direction}.log",
    conda:
        "../../envs/cpu.yaml"
    resources:
        **cpu_resources(),
        device=R2["device"],
    params:
        size=r2_size_of,
        variant=r2_variant,
        test_fraction=R2["test_fraction"],
        split_seeds=" ".join(map(str, R2["split_seeds"])),
        alpha=R2["alpha"],
        passive=lambda wc, input: (
            f"--passive {' '.join(input.passive)}" if input.passive else ""
        ),
    shell:
        "python -m syncr2 r2 --genuine {input.genuine} {params.passive} --condition {wildcards.condition} "
        "--direction {wildcards.direction} --size {params.size} --test-fraction {params.test_fraction} "
        "--split-seeds {params.split_seeds} --alpha {params.alpha} {params.variant} --device {resources.device} "
        "--pair {wildcards.pair} --no-progress --out {output} 2> {log}"


rule synchrony_condition:
    """CPU job: SyncR2 of every pair for one condition (rerun one condition through this target)."""
    input:
        expand(
            "results/r2/{pair}/{{condition}}/{direction}.parquet",
            pair=PAIRS,
            direction=DIRECTIONS,
        ),
    output:
        "results/summary/synchrony_{condition}.parquet",
    log:
        "logs/synchrony/{condition}.log",
    conda:
        "../../envs/cpu.yaml"
    resources:
        **cpu_resources(),
    params:
        top_k=config["sync"]["top_k"],
        clip="" if config["sync"]["clip"] else "--no-clip",
    shell:
        "python -m syncr2 sync --tables {input} --top-k {params.top_k} {params.clip} --out {output} 2> {log}"


rule synchrony:
    """CPU job: the SyncR2 summary of every configured condition."""
    input:
        expand("results/summary/synchrony_{condition}.parquet", condition=CONDITIONS),
    output:
        "results/summary/synchrony.parquet",
    log:
        "logs/synchrony/all.log",
    conda:
        "../../envs/cpu.yaml"
    resources:
        **cpu_resources(),
    params:
        # the combined summary holds exactly the configured conditions
        conditions=" ".join(CONDITIONS),
    shell:
        "python -m syncr2 concat --inputs {input} --out {output} 2> {log}"
