rule clip_score:
    input:
        f"{RESULTS}/{{experiment}}/images.txt",
    output:
        f"{RESULTS}/{{experiment}}/metrics/clip_score.csv",
    log:
        f"{RESULTS}/{{experiment}}/logs/clip_score.log",
    benchmark:
        f"{RESULTS}/{{experiment}}/benchmarks/clip_score.tsv"
    resources:
        gpu=1,
    params:
        clip=config["metrics"]["clip"],
    run:
        steps.clip_score(PLAN, wildcards.experiment, params.clip, output[0], log[0])


rule lpips_diversity:
    input:
        f"{RESULTS}/{{experiment}}/images.txt",
    output:
        f"{RESULTS}/{{experiment}}/metrics/lpips_diversity.csv",
    log:
        f"{RESULTS}/{{experiment}}/logs/lpips_diversity.log",
    benchmark:
        f"{RESULTS}/{{experiment}}/benchmarks/lpips_diversity.tsv"
    resources:
        gpu=1,
    params:
        lpips=config["metrics"]["lpips"],
    run:
        steps.lpips_diversity(
            PLAN, wildcards.experiment, params.lpips, output[0], log[0]
        )
