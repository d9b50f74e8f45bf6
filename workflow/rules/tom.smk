# The ToM condition (Figure 11): its own episodes and shards under results/tom/, never mixed
# with the main study's; decoded per pair, summarised with the models' format compliance.


rule simulate_tom:
    """GPU job: one block of ToM episodes (an emotion and a speech act open every reply)."""
    input:
        tasks="results/tasks.parquet",
        models=lambda wc: PLAN.model_inputs(wc.pair),
    output:
        episodes="results/tom/episodes/{pair}/seed{seed}/block{block}.parquet",
        reps1="results/tom/reps/{pair}/seed{seed}/block{block}_agent1.parquet",
        reps2="results/tom/reps/{pair}/seed{seed}/block{block}_agent2.parquet",
    log:
        "logs/simulate_tom/{pair}/seed{seed}/block{block}.log",
    conda:
        env("simulate_tom")
    resources:
        **placement("simulate_tom"),
    params:
        settings=settings("simulate_tom"),
    shell:
        cli("simulate")


rule tom_decode:
    """CPU job: every ToM target of one pair decoded from every layer, per split seed."""
    input:
        episodes=lambda wc: PLAN.tom_files(wc.pair, "episodes"),
        genuine=lambda wc: PLAN.tom_files(wc.pair, "reps"),
    output:
        table="results/tom/decoding/{pair}.parquet",
        tasks="results/tom/decoding/{pair}_tasks.parquet",
    log:
        "logs/tom_decode/{pair}.log",
    conda:
        env("tom_decode")
    resources:
        **placement("tom_decode"),
    params:
        settings=settings("tom_decode"),
    shell:
        cli("tom-decode")


rule tom:
    """CPU job: Figure 11, its layer curves, the ToM table and results/summary/tom.parquet."""
    input:
        tables=expand("results/tom/decoding/{pair}.parquet", pair=PLAN.tom_pairs),
        tasks=expand("results/tom/decoding/{pair}_tasks.parquet", pair=PLAN.tom_pairs),
        episodes=[
            f for pair in PLAN.tom_pairs for f in PLAN.tom_files(pair, "episodes")
        ],
    output:
        summary="results/summary/tom.parquet",
        figures=figure_files(["fig11_tom", "fig11_tom_layers"], "tom", "Theory of Mind"),
        tables=table_files(["table_tom"]),
        html=shown("reports/tables/table_tom.html", "tom", "Tables"),
    log:
        "logs/tom.log",
    conda:
        env("tom")
    resources:
        **placement("tom"),
    params:
        settings=settings("tom"),
    shell:
        cli("tom-report")
