# A study of recorded conversations reads them (read_transcript); any other study simulates its episodes.
if PLAN.transcripts:

    rule read_transcript:
        """GPU job: two models read one block of recorded conversations, each as one participant."""
        input:
            tasks="results/tasks.parquet",
            transcript=config["tasks"]["path"],
            models=lambda wc: PLAN.model_inputs(wc.pair),
        output:
            episodes="results/episodes/{pair}/seed{seed}/block{block}.parquet",
            reps1="results/reps/{pair}/seed{seed}/genuine/block{block}_agent1.parquet",
            reps2="results/reps/{pair}/seed{seed}/genuine/block{block}_agent2.parquet",
        log:
            "logs/read_transcript/{pair}/seed{seed}/block{block}.log",
        conda:
            env("read_transcript")
        resources:
            **placement("read_transcript"),
        params:
            settings=settings("read_transcript"),
        shell:
            cli("read-transcript")

else:

    rule simulate:
        """GPU job: one block of episodes of an ordered pair and seed, with genuine representations."""
        input:
            tasks="results/tasks.parquet",
            models=lambda wc: PLAN.model_inputs(wc.pair),
        output:
            episodes="results/episodes/{pair}/seed{seed}/block{block}.parquet",
            reps1="results/reps/{pair}/seed{seed}/genuine/block{block}_agent1.parquet",
            reps2="results/reps/{pair}/seed{seed}/genuine/block{block}_agent2.parquet",
        log:
            "logs/simulate/{pair}/seed{seed}/block{block}.log",
        conda:
            env("simulate")
        resources:
            **placement("simulate"),
        params:
            settings=settings("simulate"),
        shell:
            cli("simulate")


rule read_passive:
    """GPU job: the same models re-read every recorded prompt as passive readers."""
    input:
        tasks="results/tasks.parquet",
        episodes="results/episodes/{pair}/seed{seed}/block{block}.parquet",
        models=lambda wc: PLAN.model_inputs(wc.pair),
    output:
        reps1="results/reps/{pair}/seed{seed}/passive/block{block}_agent1.parquet",
        reps2="results/reps/{pair}/seed{seed}/passive/block{block}_agent2.parquet",
    log:
        "logs/read_passive/{pair}/seed{seed}/block{block}.log",
    conda:
        env("read_passive")
    resources:
        **placement("read_passive"),
    params:
        settings=settings("read_passive"),
    shell:
        cli("read-passive")
