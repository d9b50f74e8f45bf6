# The known-answer study (config/synthetic.yaml): planted representations and a
# planted performance replace the LLM runs and the judge; every later rule is the same.
SYN = config["synthetic"]


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
        "../../envs/cpu.yaml"
    resources:
        **cpu_resources(),
    params:
        study=canon(SYN),
        model1=lambda wc: model_arg(wc, 1),
        model2=lambda wc: model_arg(wc, 2),
        n_tasks=N_TASKS,
        block_size=TASKS["block_size"],
    shell:
        "python -m syncr2 synthesize --study {params.study:q} --pair {wildcards.pair} "
        "--model1 {params.model1} --model2 {params.model2} --n-tasks {params.n_tasks} "
        "--block {wildcards.block} --block-size {params.block_size} --seed {wildcards.seed} "
        "--episodes-out {output.episodes} --reps-out1 {output.reps1} --reps-out2 {output.reps2} "
        "--passive-out1 {output.passive1} --passive-out2 {output.passive2} 2> {log}"


rule planted_performance:
    """CPU job: the planted performance of every pair (in place of the judge) and the analytic truth."""
    output:
        performance="results/summary/performance.parquet",
        truth="results/summary/planted_truth.parquet",
    log:
        "logs/planted_performance.log",
    conda:
        "../../envs/cpu.yaml"
    resources:
        **cpu_resources(),
    params:
        study=canon(SYN),
        pairs=" ".join(PAIRS),
        families=canon(FAMILIES),
        model_order=" ".join(MODEL_ORDER),
        first_family=config["analysis"]["one_order_first_family"],
        conditions=" ".join(CONDITIONS),
        directions=" ".join(DIRECTIONS),
    shell:
        "python -m syncr2 planted-performance --study {params.study:q} --pairs {params.pairs} "
        "--families {params.families:q} --model-order {params.model_order} "
        "--one-order-first-family {params.first_family} --conditions {params.conditions} "
        "--directions {params.directions} --out {output.performance} --truth-out {output.truth} 2> {log}"
