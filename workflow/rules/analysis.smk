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
        env("correlate")
    resources:
        **placement("correlate"),
    params:
        settings=settings("correlate"),
    shell:
        cli("correlate")


rule check_relationship_sizes:
    """CPU job, before any relationships job: can Figure 5's paper-mode split be filled?"""
    input:
        tasks="results/tasks.parquet",
        episodes=PLAN.episodes(),
    output:
        sizes="results/checks/sample_sizes_relationships.parquet",
    log:
        "logs/check_sizes/relationships.log",
    conda:
        env("check_relationship_sizes")
    resources:
        **placement("check_relationship_sizes"),
    params:
        settings=settings("check_relationship_sizes"),
    shell:
        cli("check-sizes")


rule relationships:
    """CPU job: SyncR2 per relationship category of one pair (Figure 5), in every configured mode."""
    input:
        tasks="results/tasks.parquet",
        # crossfit uses every task: only the paper mode's split has a size to fill
        sizes=(
            ancient("results/checks/sample_sizes_relationships.parquet")
            if "paper" in ANALYSIS["relationships"]["modes"]
            else []
        ),
        genuine=shards("genuine"),
    output:
        table="results/relationships/{pair}.parquet",
    log:
        "logs/relationships/{pair}.log",
    conda:
        env("relationships")
    resources:
        **placement("relationships"),
    params:
        settings=settings("relationships"),
    shell:
        cli("relationships")


rule relationships_summary:
    """CPU job: every pair's relationship table in one."""
    input:
        tables=expand("results/relationships/{pair}.parquet", pair=PAIRS),
    output:
        table="results/summary/relationships.parquet",
    log:
        "logs/relationships/all.log",
    conda:
        env("relationships_summary")
    resources:
        **placement("relationships_summary"),
    params:
        settings=settings("relationships_summary"),
    shell:
        cli("concat")
