rule materialise_builtin_model:
    output:
        checkpoint=f"{RESOURCES}/models/builtin/{{builtin}}.safetensors",
        config=directory(f"{RESOURCES}/models/builtin/{{builtin}}.config"),
    log:
        f"{RESOURCES}/logs/materialise_{{builtin}}.log",
    run:
        steps.materialise_builtin(
            wildcards.builtin, output.checkpoint, output.config, log[0]
        )
