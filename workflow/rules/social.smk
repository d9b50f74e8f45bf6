rule build_judge_model:
    """A tiny seeded random-weight judge checkpoint (offline demo; long context for the judge prompt)."""
    output:
        model=directory("results/judge/model"),
    log:
        "logs/build_judge_model.log",
    conda:
        env("build_judge_model")
    resources:
        **placement("build_judge_model"),
    params:
        settings=settings("build_judge_model"),
    shell:
        cli("build-model")


rule judge:
    """GPU job (local judge) or CPU job (HTTP judge): Sotopia-eval scores of one block of episodes."""
    input:
        tasks="results/tasks.parquet",
        episodes="results/episodes/{pair}/seed{seed}/block{block}.parquet",
        model=PLAN.judge_inputs,
    output:
        eval="results/eval/{pair}/seed{seed}/block{block}.parquet",
    log:
        "logs/judge/{pair}/seed{seed}/block{block}.log",
    conda:
        env("judge")
    resources:
        **placement("judge"),
    params:
        settings=settings("judge"),
    shell:
        cli("judge")


rule performance:
    """CPU job: social performance per ordered and unordered pair and agent (both aggregations)."""
    input:
        evals=PLAN.evals(),
    output:
        performance="results/summary/performance.parquet",
    log:
        "logs/performance.log",
    conda:
        env("performance")
    resources:
        **placement("performance"),
    params:
        settings=settings("performance"),
    shell:
        cli("performance")
