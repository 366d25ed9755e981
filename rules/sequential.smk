# Early stopping (t2ibench.rounds): an experiment with `sequential:` makes its prompts in
# rounds. Each look is a checkpoint: its content decides which images the next round
# makes, so one `snakemake` runs every round, and a dry run shows the first.
checkpoint sequential_look:
    input:
        get_look_inputs,
    output:
        f"{ANALYSIS}/{{experiment}}/sequential/look{{look}}.json",
    log:
        f"{ANALYSIS}/{{experiment}}/logs/sequential/look{{look}}.log",
    resources:
        gpu=1,
    params:
        design=get_design,
        previous=get_previous_look,
    run:
        verdict_steps.sequential_look(
            PLAN,
            wildcards.experiment,
            int(wildcards.look),
            params.previous,
            output[0],
            log[0],
        )


rule sequential_rounds:
    input:
        get_last_look,
    output:
        f"{ANALYSIS}/{{experiment}}/sequential/rounds.json",
    log:
        f"{ANALYSIS}/{{experiment}}/logs/sequential/rounds.log",
    localrule: True
    run:
        verdict_steps.sequential_end(
            PLAN, wildcards.experiment, input[0], output[0], log[0]
        )
