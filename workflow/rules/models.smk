# results/models/{model}: the checkpoints the workflow makes, one rule per kind of entry
# (the wildcard constraints give each rule only its own model keys).


rule build_tiny_model:
    """A tiny seeded random-weight checkpoint with a locally trained tokenizer (offline demo)."""
    output:
        model=directory("results/models/{model}"),
    log:
        "logs/build_tiny_model/{model}.log",
    wildcard_constraints:
        model=PLAN.models_made_by("build"),
    conda:
        env("build_tiny_model")
    resources:
        **placement("build_tiny_model"),
    params:
        settings=settings("build_tiny_model"),
    shell:
        cli("build-model")


rule convert_gguf:
    """A real trained model: its GGUF file (fetched and sha256-checked) as a float32 checkpoint."""
    output:
        model=directory("results/models/{model}"),
    log:
        "logs/convert_gguf/{model}.log",
    wildcard_constraints:
        model=PLAN.models_made_by("gguf"),
    conda:
        env("convert_gguf")
    resources:
        **placement("convert_gguf"),
    params:
        settings=settings("convert_gguf"),
    shell:
        cli("build-model")
