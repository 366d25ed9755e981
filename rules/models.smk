rule materialise_builtin_model:
    output:
        checkpoint=f"{RESOURCES}/{BUILTIN_FOLDER}/{{builtin}}.safetensors",
        config=directory(f"{RESOURCES}/{BUILTIN_FOLDER}/{{builtin}}.config"),
    log:
        f"{RESOURCES}/logs/materialise_{{builtin}}.log",
    wildcard_constraints:
        builtin="|".join(BUILTIN_IDS),
    localrule: True
    run:
        steps.materialise_builtin(
            wildcards.builtin, output.checkpoint, output.config, log[0]
        )


# A family's base configs, with which single files of it load offline (e.g. sdxl-base).
rule base_config:
    output:
        directory(f"{RESOURCES}/configs/{{base}}"),
    log:
        f"{RESOURCES}/logs/base_config_{{base}}.log",
    wildcard_constraints:
        base="|".join(BASE_CONFIGS),
    localrule: True
    run:
        steps.base_config(wildcards.base, output[0], log[0])


rule download_model:
    output:
        f"{RESOURCES}/models/downloads/{{download}}.safetensors",
    log:
        f"{RESOURCES}/logs/download_{{download}}.log",
    localrule: True
    params:
        url=get_download_url,
        sha256=get_download_sha256,
    run:
        steps.download_model(params.url, params.sha256, output[0], log[0])


rule materialise_builtin_folder:
    output:
        directory(f"{RESOURCES}/{BUILTIN_FOLDER}/{{builtin}}"),
    log:
        f"{RESOURCES}/logs/materialise_{{builtin}}.log",
    wildcard_constraints:
        builtin="|".join(BUILTIN_FOLDER_IDS),
    localrule: True
    run:
        steps.materialise_builtin_folder(wildcards.builtin, output[0], log[0])
