rule build_tiny_model:
    """A tiny seeded random-weight checkpoint with a locally trained tokenizer (offline demo)."""
    output:
        directory("results/models/{model}"),
    log:
        "logs/build_tiny_model/{model}.log",
    conda:
        "../../envs/cpu.yaml"
    resources:
        **cpu_resources(),
    params:
        spec=lambda wc: canon(config["models"][wc.model]["build"]),
    shell:
        "python -m syncr2 build-model --spec {params.spec:q} --out {output} 2> {log}"
