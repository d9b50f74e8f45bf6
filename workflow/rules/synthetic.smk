# The known-answer study (config/synthetic.yaml): planted representations and a
# planted performance replace the LLM runs and the judge; every later rule is the same.


rule synthesize:
    """CPU job: one block of planted episodes with genuine and passive shards (in place of simulate + read_passive)."""
    output:
        episodes="results/episodes/{pair}/seed{seed}/block{block}.parquet",
        reps1="results/reps/{pair}/seed{seed}/genuine/block{block}_agent1.parquet",
        reps2="results/reps/{pair}/seed{seed}/genuine/block{block}_agent2.parquet",
        passive1="results/reps/{pair}/seed{seed}/passive/block{block}_agent1.parquet",
        passive2="results/reps/{pair}/seed{seed}/passive/block{block}_agent2.parquet",
    log:
        "logs/synthesize/{pair}/seed{seed}/block{block}.log",
    conda:
        env("synthesize")
    resources:
        **placement("synthesize"),
    params:
        settings=settings("synthesize"),
    shell:
        cli("synthesize")


rule planted_performance:
    """CPU job: the planted performance of every pair (in place of the judge) and the analytic truth."""
    output:
        performance="results/summary/performance.parquet",
        truth="results/summary/planted_truth.parquet",
    log:
        "logs/planted_performance.log",
    conda:
        env("planted_performance")
    resources:
        **placement("planted_performance"),
    params:
        settings=settings("planted_performance"),
    shell:
        cli("planted-performance")
