R2 = config["r2"]
SYNC = config.get("sync", {})


rule r2_table:
    """CPU job: test-set R2 of every layer pair of one (pair, condition, direction)."""
    input:
        genuine=lambda wc: rep_shards(wc.pair, "genuine"),
        passive=lambda wc: rep_shards(wc.pair, "passive") if wc.condition == "passive" else [],
    output:
        "results/r2/{pair}/{condition}/{direction}.parquet",
    params:
        size=R2["size"],
        test_fraction=R2.get("test_fraction", 0.2),
        split_seeds=" ".join(map(str, R2.get("split_seeds", [0, 1, 2]))),
        alpha=R2.get("alpha", 0.1),
        device=R2.get("device", "cpu"),
        passive=lambda wc, input: f"--passive {' '.join(input.passive)}" if input.passive else "",
    resources:
        **cpu_resources(),
    log:
        "logs/r2_table/{pair}/{condition}/{direction}.log",
    shell:
        "{PY} r2 --genuine {input.genuine} {params.passive} --condition {wildcards.condition} "
        "--direction {wildcards.direction} --size {params.size} --test-fraction {params.test_fraction} "
        "--split-seeds {params.split_seeds} --alpha {params.alpha} --device {params.device} "
        "--pair {wildcards.pair} --no-progress --out {output} 2> {log}"


rule synchrony_condition:
    """CPU job: SyncR2 of every pair for one condition (rerun one condition through this target)."""
    input:
        expand("results/r2/{pair}/{{condition}}/{direction}.parquet", pair=PAIRS, direction=DIRECTIONS),
    output:
        "results/summary/synchrony_{condition}.parquet",
    params:
        top_k=SYNC.get("top_k", 1),
        clip="" if SYNC.get("clip", True) else "--no-clip",
    resources:
        **cpu_resources(),
    log:
        "logs/synchrony/{condition}.log",
    shell:
        "{PY} sync --tables {input} --top-k {params.top_k} {params.clip} --out {output} 2> {log}"


rule synchrony:
    """CPU job: the SyncR2 summary of every configured condition."""
    input:
        expand("results/summary/synchrony_{condition}.parquet", condition=CONDITIONS),
    output:
        "results/summary/synchrony.parquet",
    resources:
        **cpu_resources(),
    log:
        "logs/synchrony/all.log",
    shell:
        "{PY} concat --inputs {input} --out {output} 2> {log}"
