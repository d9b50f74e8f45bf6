rule build_tiny_model:
    """A tiny seeded random-weight checkpoint with a locally trained tokenizer (offline demo)."""
    output:
        directory("results/models/{model}"),
    params:
        spec=lambda wc: json.dumps(config["models"][wc.model]["build"]),
    resources:
        **cpu_resources(),
    log:
        "logs/build_tiny_model/{model}.log",
    shell:
        "{PY} build-model --spec {params.spec:q} --out {output} 2> {log}"
