# Robustness (README, "Robustness"): sensitivity analyses, nonlinear maps, the surrogate null.
# The sample-size and persona-disjoint R2 tables come from rule r2_table (results/r2_size/{size}/...,
# results/r2_persona/...); each analysis runs alone through its target, e.g.
#   snakemake -c 2 results/sensitivity/sample_size.parquet
SENS = ANALYSIS["sensitivity"]
MLP = ANALYSIS["nonlinear"]
SUR = ANALYSIS["surrogate"]


rule sensitivity_analysis:
    """CPU job: one sensitivity analysis (top_k, no_clip, sample_size, persona_split) of every pair."""
    input:
        unpack(sensitivity_inputs),
    output:
        "results/sensitivity/{analysis}.parquet",
    log:
        "logs/sensitivity/{analysis}.log",
    wildcard_constraints:
        analysis="top_k|no_clip|sample_size|persona_split",
    conda:
        "../../envs/cpu.yaml"
    resources:
        **cpu_resources(),
    params:
        files=sensitivity_args,
        families=canon(FAMILIES),
        model_order=" ".join(MODEL_ORDER),
        ks=lambda wc: (
            f"--ks {' '.join(map(str, SENS['top_k']))}"
            if wc.analysis == "top_k" and SENS["top_k"]
            else ""
        ),
        scores=" ".join(SENS["scores"]),
        min_corr=ANALYSIS["min_pairs_correlation"],
    shell:
        "python -m syncr2 sensitivity --analysis {wildcards.analysis} {params.files} "
        "--families {params.families:q} --model-order {params.model_order} {params.ks} "
        "--scores {params.scores} --min-pairs-correlation {params.min_corr} --out {output} 2> {log}"


rule sensitivity:
    """CPU job: the sensitivity table of every configured analysis, Figures 7-9 and Table 2."""
    input:
        expand("results/sensitivity/{analysis}.parquet", analysis=SENS["analyses"]),
    output:
        table="results/summary/sensitivity.parquet",
        png=[
            report(
                f"reports/figures/{stem}.png",
                caption="../report/sensitivity.rst",
                category="Robustness",
            )
            for stem in SENSITIVITY_OUTPUTS["figures"]
        ],
        pdf=expand("reports/figures/{stem}.pdf", stem=SENSITIVITY_OUTPUTS["figures"]),
        tables=expand(
            "reports/tables/{stem}.{ext}",
            stem=SENSITIVITY_OUTPUTS["tables"],
            ext=["csv", "md"],
        ),
    log:
        "logs/sensitivity/all.log",
    conda:
        "../../envs/cpu.yaml"
    resources:
        **cpu_resources(),
    params:
        abbreviations=canon(ABBREVIATIONS),
        score=ANALYSIS["syncr2"],
    shell:
        "python -m syncr2 sensitivity-figures --parts {input} --sensitivity {output.table} "
        "--abbreviations {params.abbreviations:q} --syncr2 {params.score} "
        "--figures-dir reports/figures --tables-dir reports/tables 2> {log}"


rule mlp_table:
    """GPU job (CPU with analysis.nonlinear.device cpu): the MLP-map R2 table of one pair and direction."""
    input:
        genuine=lambda wc: rep_shards(wc.pair, "genuine"),
    output:
        "results/r2_mlp/{pair}/experimental/{direction}.parquet",
    log:
        "logs/mlp_table/{pair}/{direction}.log",
    conda:
        "../../envs/cpu.yaml"
    resources:
        **(cpu_resources() if MLP["device"] == "cpu" else gpu_resources()),
        device=MLP["device"],
    params:
        mlp=canon(
            {
                k: MLP[k]
                for k in (
                    "hidden",
                    "lr",
                    "weight_decay",
                    "epochs",
                    "batch_size",
                    "seed",
                )
            }
        ),
        stride=MLP["layer_stride"],
        size=R2["size"],
        test_fraction=R2["test_fraction"],
        split_seeds=" ".join(map(str, R2["split_seeds"])),
    shell:
        "python -m syncr2 r2 --map mlp --mlp {params.mlp:q} --layer-stride {params.stride} "
        "--genuine {input.genuine} --condition experimental --direction {wildcards.direction} "
        "--size {params.size} --test-fraction {params.test_fraction} --split-seeds {params.split_seeds} "
        "--device {resources.device} --pair {wildcards.pair} --no-progress --out {output} 2> {log}"


rule nonlinear:
    """CPU job: SyncR2 of the MLP maps (results/summary/nonlinear.parquet) and Table 5."""
    input:
        affine="results/summary/synchrony_experimental.parquet",
        tables=expand(
            "results/r2_mlp/{pair}/experimental/{direction}.parquet",
            pair=MLP_PAIRS,
            direction=DIRECTIONS,
        ),
    output:
        summary="results/summary/nonlinear.parquet",
        tables=expand("reports/tables/table5_nonlinear.{ext}", ext=["csv", "md"]),
    log:
        "logs/nonlinear.log",
    conda:
        "../../envs/cpu.yaml"
    resources:
        **cpu_resources(),
    params:
        abbreviations=canon(ABBREVIATIONS),
        model_order=" ".join(MODEL_ORDER),
        score=ANALYSIS["syncr2"],
    shell:
        "python -m syncr2 nonlinear-summary --tables {input.tables} --affine-summary {input.affine} "
        "--abbreviations {params.abbreviations:q} --model-order {params.model_order} --syncr2 {params.score} "
        "--out {output.summary} --tables-dir reports/tables 2> {log}"


rule surrogate_draws:
    """CPU job: R null SyncR2 draws per surrogate mode for one (pair, condition, direction)."""
    input:
        genuine=lambda wc: rep_shards(wc.pair, "genuine"),
        passive=lambda wc: (
            rep_shards(wc.pair, "passive") if wc.condition == "passive" else []
        ),
    output:
        "results/surrogate/{pair}/{condition}/{direction}.parquet",
    log:
        "logs/surrogate/{pair}/{condition}/{direction}.log",
    conda:
        "../../envs/cpu.yaml"
    resources:
        **cpu_resources(),
        device=R2["device"],
    params:
        modes=" ".join(SUR["modes"]),
        n_perm=SUR["n_perm"],
        seed=SUR["seed"],
        size=R2["size"],
        test_fraction=R2["test_fraction"],
        split_seeds=" ".join(map(str, R2["split_seeds"])),
        alpha=R2["alpha"],
        passive=lambda wc, input: (
            f"--passive {' '.join(input.passive)}" if input.passive else ""
        ),
    shell:
        "python -m syncr2 surrogate --genuine {input.genuine} {params.passive} --pair {wildcards.pair} "
        "--condition {wildcards.condition} --direction {wildcards.direction} --modes {params.modes} "
        "--n-perm {params.n_perm} --seed {params.seed} --size {params.size} --test-fraction {params.test_fraction} "
        "--split-seeds {params.split_seeds} --alpha {params.alpha} --device {resources.device} "
        "--no-progress --out {output} 2> {log}"


rule surrogate:
    """CPU job: real SyncR2 against its nulls (results/summary/surrogate.parquet) and the figure."""
    input:
        expand(
            "results/surrogate/{pair}/{condition}/{direction}.parquet",
            pair=SURROGATE_PAIRS,
            condition=SURROGATE_CONDITIONS,
            direction=DIRECTIONS,
        ),
    output:
        summary="results/summary/surrogate.parquet",
        png=report(
            "reports/figures/surrogate_null.png",
            caption="../report/surrogate.rst",
            category="Robustness",
        ),
        pdf="reports/figures/surrogate_null.pdf",
    log:
        "logs/surrogate/all.log",
    conda:
        "../../envs/cpu.yaml"
    resources:
        **cpu_resources(),
    shell:
        "python -m syncr2 surrogate-summary --draws {input} --out {output.summary} "
        "--figures-dir reports/figures --stem surrogate_null 2> {log}"
