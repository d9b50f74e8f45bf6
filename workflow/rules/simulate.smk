GEN = config["generation"]


rule simulate:
    """GPU job: one block of episodes of an ordered pair and seed, with genuine representations."""
    input:
        tasks="results/tasks.parquet",
        models=model_inputs,
    output:
        episodes="results/episodes/{pair}/seed{seed}/block{block}.parquet",
        reps1="results/reps/{pair}/seed{seed}/genuine/block{block}_agent1.parquet",
        reps2="results/reps/{pair}/seed{seed}/genuine/block{block}_agent2.parquet",
    params:
        m1=lambda wc: PAIRS[wc.pair][0],
        m2=lambda wc: PAIRS[wc.pair][1],
        path1=lambda wc: model_dir(PAIRS[wc.pair][0]),
        path2=lambda wc: model_dir(PAIRS[wc.pair][1]),
        lm1=lambda wc: lm_options(PAIRS[wc.pair][0]),
        lm2=lambda wc: lm_options(PAIRS[wc.pair][1]),
        generation=json.dumps(GEN),
        templates=json.dumps(config.get("prompts", {})),
        block_size=TASKS.get("block_size", 16),
    resources:
        **gpu_resources(),
    log:
        "logs/simulate/{pair}/seed{seed}/block{block}.log",
    shell:
        "{PY} simulate --tasks {input.tasks} --block {wildcards.block} --block-size {params.block_size} "
        "--seed {wildcards.seed} --model1 {params.m1}={params.path1} --model2 {params.m2}={params.path2} "
        "--lm1 {params.lm1:q} --lm2 {params.lm2:q} --generation {params.generation:q} "
        "--templates {params.templates:q} --episodes-out {output.episodes} "
        "--reps-out1 {output.reps1} --reps-out2 {output.reps2} 2> {log}"


rule read_passive:
    """GPU job: the same models re-read every recorded prompt as passive readers."""
    input:
        tasks="results/tasks.parquet",
        episodes="results/episodes/{pair}/seed{seed}/block{block}.parquet",
        models=model_inputs,
    output:
        reps1="results/reps/{pair}/seed{seed}/passive/block{block}_agent1.parquet",
        reps2="results/reps/{pair}/seed{seed}/passive/block{block}_agent2.parquet",
    params:
        m1=lambda wc: PAIRS[wc.pair][0],
        m2=lambda wc: PAIRS[wc.pair][1],
        path1=lambda wc: model_dir(PAIRS[wc.pair][0]),
        path2=lambda wc: model_dir(PAIRS[wc.pair][1]),
        lm1=lambda wc: lm_options(PAIRS[wc.pair][0]),
        lm2=lambda wc: lm_options(PAIRS[wc.pair][1]),
        templates=json.dumps(config.get("prompts", {})),
    resources:
        **gpu_resources(),
    log:
        "logs/read_passive/{pair}/seed{seed}/block{block}.log",
    shell:
        "{PY} read-passive --tasks {input.tasks} --episodes {input.episodes} "
        "--model1 {params.m1}={params.path1} --model2 {params.m2}={params.path2} "
        "--lm1 {params.lm1:q} --lm2 {params.lm2:q} --templates {params.templates:q} "
        "--reps-out1 {output.reps1} --reps-out2 {output.reps2} 2> {log}"
