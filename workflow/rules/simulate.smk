rule simulate:
    """GPU job: one block of episodes of an ordered pair and seed, with genuine representations."""
    input:
        tasks="results/tasks.parquet",
        models=model_inputs,
    output:
        episodes="results/episodes/{pair}/seed{seed}/block{block}.parquet",
        reps1="results/reps/{pair}/seed{seed}/genuine/block{block}_agent1.parquet",
        reps2="results/reps/{pair}/seed{seed}/genuine/block{block}_agent2.parquet",
    log:
        "logs/simulate/{pair}/seed{seed}/block{block}.log",
    conda:
        "../../envs/gpu.yaml"
    resources:
        **gpu_resources(),
        runtime1=lambda wc: lm_runtime(wc, 1),
        runtime2=lambda wc: lm_runtime(wc, 2),
    params:
        model1=lambda wc: model_arg(wc, 1),
        model2=lambda wc: model_arg(wc, 2),
        lm1=lambda wc: lm_params(wc, 1),
        lm2=lambda wc: lm_params(wc, 2),
        generation=canon(config["generation"]),
        templates=canon(PRESET.config_section()),
        block_size=TASKS["block_size"],
    shell:
        "python -m syncr2 simulate --tasks {input.tasks} --block {wildcards.block} "
        "--block-size {params.block_size} --seed {wildcards.seed} "
        "--model1 {params.model1} --model2 {params.model2} --lm1 {params.lm1:q} --lm2 {params.lm2:q} "
        "--runtime1 {resources.runtime1:q} --runtime2 {resources.runtime2:q} "
        "--generation {params.generation:q} --templates {params.templates:q} "
        "--episodes-out {output.episodes} --reps-out1 {output.reps1} --reps-out2 {output.reps2} 2> {log}"


rule read_passive:
    """GPU job: the same models re-read every recorded prompt as passive readers."""
    input:
        tasks="results/tasks.parquet",
        episodes="results/episodes/{pair}/seed{seed}/block{block}.parquet",
        models=model_inputs,
    output:
        reps1="results/reps/{pair}/seed{seed}/passive/block{block}_agent1.parquet",
        reps2="results/reps/{pair}/seed{seed}/passive/block{block}_agent2.parquet",
    log:
        "logs/read_passive/{pair}/seed{seed}/block{block}.log",
    conda:
        "../../envs/gpu.yaml"
    resources:
        **gpu_resources(),
        runtime1=lambda wc: lm_runtime(wc, 1),
        runtime2=lambda wc: lm_runtime(wc, 2),
    params:
        model1=lambda wc: model_arg(wc, 1),
        model2=lambda wc: model_arg(wc, 2),
        lm1=lambda wc: lm_params(wc, 1),
        lm2=lambda wc: lm_params(wc, 2),
        templates=canon(PRESET.config_section()),
    shell:
        "python -m syncr2 read-passive --tasks {input.tasks} --episodes {input.episodes} "
        "--model1 {params.model1} --model2 {params.model2} --lm1 {params.lm1:q} --lm2 {params.lm2:q} "
        "--runtime1 {resources.runtime1:q} --runtime2 {resources.runtime2:q} --templates {params.templates:q} "
        "--reps-out1 {output.reps1} --reps-out2 {output.reps2} 2> {log}"
