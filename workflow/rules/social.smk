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
STUDY.context["judge_model"] = JUDGE_MODEL  # the judge's settings name its checkpoint


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
        model=JUDGE_INPUTS,
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
        cli("judge", outputs=["eval"], extra="--out cache results/judge_cache")


rule performance:
    """CPU job: social performance per ordered and unordered pair and agent (both aggregations)."""
    input:
        evals=expand(
            "results/eval/{pair}/seed{seed}/block{block}.parquet",
            pair=PAIRS,
            seed=SEEDS,
            block=BLOCKS,
        ),
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
