rule generate_image:
    input:
        get_model_inputs,
    output:
        image=f"{RESULTS}/{{experiment}}/{{model}}/{{cell}}/p{{prompt}}_i{{image}}_s{{seed}}.png",
        record=f"{RESULTS}/{{experiment}}/{{model}}/{{cell}}/p{{prompt}}_i{{image}}_s{{seed}}.json",
    log:
        f"{RESULTS}/{{experiment}}/logs/images/{{model}}/{{cell}}/p{{prompt}}_i{{image}}_s{{seed}}.log",
    resources:
        gpu=1,
    params:
        settings=get_image_settings,
    run:
        steps.generate_image(
            PLAN,
            wildcards.model,
            params.settings,
            output.image,
            output.record,
            log[0],
        )


# With images_per_job above 1: one job per chunk of a model's images, one model load.
rule generate_batch:
    input:
        get_model_inputs,
    output:
        f"{RESULTS}/{{experiment}}/logs/batches/{{model}}/{{batch}}.json",
    log:
        f"{RESULTS}/{{experiment}}/logs/batches/{{model}}/{{batch}}.log",
    resources:
        gpu=1,
    run:
        steps.generate_batch(
            PLAN,
            wildcards.experiment,
            wildcards.model,
            wildcards.batch,
            output[0],
            log[0],
        )


rule cell_record:
    output:
        f"{RESULTS}/{{experiment}}/{{model}}/{{cell}}/cell.json",
    log:
        f"{RESULTS}/{{experiment}}/logs/cells/{{model}}/{{cell}}.log",
    params:
        content=get_cell_record,
    run:
        steps.cell_record(params.content, output[0], log[0])


rule image_list:
    input:
        get_experiment_images,
    output:
        f"{RESULTS}/{{experiment}}/images.txt",
    log:
        f"{RESULTS}/{{experiment}}/logs/image_list.log",
    params:
        existing=get_existing_images,
    run:
        steps.image_list(PLAN, wildcards.experiment, output[0], log[0])
