# One image per job (images_per_job 1). Which images run is decided by
# t2ibench.freshness through the image list's inputs (rules/common.smk); the outputs are
# kept (update) while the job runs and put back if it fails.
rule generate_image:
    input:
        get_image_inputs,
    output:
        image=update(
            f"{RESULTS}/{{experiment}}/{{model}}/{{cell}}/p{{prompt}}_i{{image}}_s{{seed}}.png"
        ),
        record=update(
            f"{RESULTS}/{{experiment}}/{{model}}/{{cell}}/p{{prompt}}_i{{image}}_s{{seed}}.json"
        ),
    log:
        f"{RESULTS}/{{experiment}}/logs/images/{{model}}/{{cell}}/p{{prompt}}_i{{image}}_s{{seed}}.log",
    resources:
        gpu=1,
    run:
        generation_steps.generate_image(
            PLAN, dict(wildcards), output.image, output.record, log[0]
        )


# With images_per_job above 1: one job per chunk of a model's images, one model load.
rule generate_chunk:
    input:
        get_chunk_inputs,
    output:
        f"{RESULTS}/{{experiment}}/logs/chunks/{{model}}/{{chunk}}.json",
    log:
        f"{RESULTS}/{{experiment}}/logs/chunks/{{model}}/{{chunk}}.log",
    resources:
        gpu=1,
    run:
        generation_steps.generate_chunk(
            PLAN,
            wildcards.experiment,
            wildcards.model,
            wildcards.chunk,
            output[0],
            log[0],
        )


rule cell_record:
    output:
        f"{RESULTS}/{{experiment}}/{{model}}/{{cell}}/cell.json",
    log:
        f"{RESULTS}/{{experiment}}/logs/cells/{{model}}/{{cell}}.log",
    localrule: True
    params:
        content=get_cell_record,
    run:
        steps.cell_record(params.content, output[0], log[0])


rule image_list:
    input:
        get_list_inputs,
    output:
        update(f"{ANALYSIS}/{{experiment}}/images.txt"),
    log:
        f"{ANALYSIS}/{{experiment}}/logs/image_list.log",
    localrule: True
    params:
        images=get_list_digest,
    run:
        steps.image_list(PLAN, wildcards.experiment, output[0], log[0])
