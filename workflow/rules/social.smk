JUDGE = config["judge"]
JUDGE_LOCAL = JUDGE["backend"] == "hf_local"
# A local judge is a built tiny model (`build`), one of the study's models (`model`: a key
# of `models`, loaded where that model is), or a checkpoint (`path`).
JUDGE_OF_STUDY = JUDGE.get("hf_local", {}).get("model") if JUDGE_LOCAL else None
if JUDGE_OF_STUDY:
    JUDGE_MODEL = model_dir(JUDGE_OF_STUDY)
    JUDGE_INPUTS = [JUDGE_MODEL] if made_here(JUDGE_OF_STUDY) else []
elif JUDGE_LOCAL and "build" in JUDGE.get("hf_local", {}):
    JUDGE_MODEL = "results/judge/model"
    JUDGE_INPUTS = [JUDGE_MODEL]
else:
    JUDGE_MODEL, JUDGE_INPUTS = None, []
JUDGE_RESULT, JUDGE_RUNTIME = judge_settings(config, JUDGE_MODEL)


rule build_judge_model:
    """A tiny seeded random-weight judge checkpoint (offline demo; long context for the judge prompt)."""
    output:
        directory("results/judge/model"),
    log:
        "logs/build_judge_model.log",
    conda:
        "../../envs/cpu.yaml"
    resources:
        **cpu_resources(),
    params:
        spec=canon(JUDGE.get("hf_local", {}).get("build", {})),
    shell:
        "python -m syncr2 build-model --spec {params.spec:q} --out {output} 2> {log}"


rule judge:
    """GPU job (local judge) or CPU job (HTTP judge): Sotopia-eval scores of one block of episodes."""
    input:
        tasks="results/tasks.parquet",
        episodes="results/episodes/{pair}/seed{seed}/block{block}.parquet",
        model=JUDGE_INPUTS,
    output:
        "results/eval/{pair}/seed{seed}/block{block}.parquet",
    log:
        "logs/judge/{pair}/seed{seed}/block{block}.log",
    conda:
        "../../envs/gpu.yaml" if JUDGE_LOCAL else "../../envs/cpu.yaml"
    resources:
        **(gpu_resources() if JUDGE_LOCAL else cpu_resources()),
        runtime_settings=canon(JUDGE_RUNTIME),
    params:
        settings=canon(JUDGE_RESULT),
    shell:
        "python -m syncr2 judge --tasks {input.tasks} --episodes {input.episodes} --pair {wildcards.pair} "
        "--seed {wildcards.seed} --settings {params.settings:q} --runtime {resources.runtime_settings:q} "
        "--cache-dir results/judge_cache --no-progress --out {output} 2> {log}"


rule performance:
    """CPU job: social performance per ordered pair and agent, and per unordered pair (both aggregations)."""
    input:
        expand(
            "results/eval/{pair}/seed{seed}/block{block}.parquet",
            pair=PAIRS,
            seed=SEEDS,
            block=BLOCKS,
        ),
    output:
        "results/summary/performance.parquet",
    log:
        "logs/performance.log",
    conda:
        "../../envs/cpu.yaml"
    resources:
        **cpu_resources(),
    params:
        families=canon(FAMILIES),
        model_order=" ".join(MODEL_ORDER),
        aggregation=JUDGE["aggregation"],
        first_family=config["analysis"]["one_order_first_family"],
    shell:
        "python -m syncr2 performance --evals {input} --families {params.families:q} "
        "--model-order {params.model_order} --aggregation {params.aggregation} "
        "--one-order-first-family {params.first_family} --out {output} 2> {log}"
