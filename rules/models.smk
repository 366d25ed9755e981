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


rule sdxl_base_config:
    output:
        directory(f"{RESOURCES}/configs/sdxl-base"),
    log:
        f"{RESOURCES}/logs/sdxl_base_config.log",
    run:
        steps.sdxl_base_config(output[0], log[0])
