ANALYSIS = config["analysis"]
REL = ANALYSIS["relationships"]


rule correlate:
    """CPU job: pair scores, Figure 6's correlations and Table 1's partial correlations."""
    input:
        summary="results/summary/synchrony.parquet",
        performance="results/summary/performance.parquet",
    output:
        scores="results/summary/pair_scores.parquet",
        correlation="results/summary/correlation.parquet",
        partial="results/summary/partial_correlation.parquet",
    log:
        "logs/correlate.log",
    conda:
        "../../envs/cpu.yaml"
    resources:
        **cpu_resources(),
    params:
        families=canon(FAMILIES),
        model_order=" ".join(MODEL_ORDER),
        abilities=canon(config.get("abilities", {})),
        min_corr=ANALYSIS["min_pairs_correlation"],
        min_partial=ANALYSIS["min_pairs_partial"],
        score=ANALYSIS["syncr2"],
    shell:
        "python -m syncr2 correlate --summary {input.summary} --performance {input.performance} "
        "--families {params.families:q} --model-order {params.model_order} --abilities {params.abilities:q} "
        "--min-pairs-correlation {params.min_corr} --min-pairs-partial {params.min_partial} --syncr2 {params.score} "
        "--out-dir results/summary 2> {log}"


rule check_relationship_sizes:
    """CPU job, before any relationships job: can Figure 5's paper-mode split be filled?"""
    input:
        tasks="results/tasks.parquet",
        episodes=expand(
            "results/episodes/{pair}/seed{seed}/block{block}.parquet",
            pair=PAIRS,
            seed=SEEDS,
            block=BLOCKS,
        ),
    output:
        "results/checks/sample_sizes_relationships.parquet",
    log:
        "logs/check_sizes/relationships.log",
    conda:
        "../../envs/cpu.yaml"
    resources:
        **cpu_resources(),
    params:
        directions=" ".join(DIRECTIONS),
        size=REL["size"] or R2["size"],
        test_fraction=R2["test_fraction"],
        split_seeds=" ".join(map(str, R2["split_seeds"])),
        sources=" ".join(REL["sources"]),
    shell:
        "python -m syncr2 check-sizes --analysis relationships --episodes {input.episodes} --tasks {input.tasks} "
        "--sources {params.sources} --conditions experimental --directions {params.directions} "
        "--size {params.size} --test-fraction {params.test_fraction} --split-seeds {params.split_seeds} "
        "--out {output} 2> {log}"


rule relationships:
    """CPU job: SyncR2 per relationship category of one pair (Figure 5), in every configured mode."""
    input:
        tasks="results/tasks.parquet",
        # crossfit uses every task: only the paper mode's split has a size to fill
        sizes=(
            ancient("results/checks/sample_sizes_relationships.parquet")
            if "paper" in REL["modes"]
            else []
        ),
        genuine=lambda wc: rep_shards(wc.pair, "genuine"),
    output:
        "results/relationships/{pair}.parquet",
    log:
        "logs/relationships/{pair}.log",
    conda:
        "../../envs/cpu.yaml"
    resources:
        **cpu_resources(),
        device=R2["device"],
    params:
        modes=" ".join(REL["modes"]),
        size=REL["size"] or R2["size"],
        test_fraction=R2["test_fraction"],
        split_seeds=" ".join(map(str, R2["split_seeds"])),
        folds=REL["folds"],
        subsample_seeds=REL["subsample_seeds"],
        min_samples=REL["min_samples"],
        sources=" ".join(REL["sources"]),
        alpha=R2["alpha"],
        top_k=config["sync"]["top_k"],
    shell:
        "python -m syncr2 relationships --pair {wildcards.pair} --genuine {input.genuine} --tasks {input.tasks} "
        "--modes {params.modes} --size {params.size} --test-fraction {params.test_fraction} "
        "--split-seeds {params.split_seeds} --folds {params.folds} --subsample-seeds {params.subsample_seeds} "
        "--min-samples {params.min_samples} "
        "--sources {params.sources} --alpha {params.alpha} --top-k {params.top_k} --device {resources.device} "
        "--out {output} 2> {log}"


rule relationships_summary:
    """CPU job: every pair's relationship table in one."""
    input:
        expand("results/relationships/{pair}.parquet", pair=PAIRS),
    output:
        "results/summary/relationships.parquet",
    log:
        "logs/relationships/all.log",
    conda:
        "../../envs/cpu.yaml"
    resources:
        **cpu_resources(),
    shell:
        "python -m syncr2 concat --inputs {input} --out {output} 2> {log}"
