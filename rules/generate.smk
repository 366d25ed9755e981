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


rule generate:
    input:
        PLAN.paths(),


rule image_list:
    input:
        get_experiment_images,
    output:
        f"{RESULTS}/{{experiment}}/images.txt",
    log:
        f"{RESULTS}/{{experiment}}/logs/image_list.log",
    run:
        steps.image_list(PLAN, wildcards.experiment, output[0], log[0])
