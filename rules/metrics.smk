rule metric:
    input:
        f"{RESULTS}/{{experiment}}/images.txt",
    output:
        report(
            f"{RESULTS}/{{experiment}}/metrics/{{metric}}.csv",
            caption="../report/metric.rst",
            category="Metric tables",
            labels={"experiment": "{experiment}", "metric": "{metric}"},
        ),
    log:
        f"{RESULTS}/{{experiment}}/logs/{{metric}}.log",
    benchmark:
        f"{RESULTS}/{{experiment}}/benchmarks/{{metric}}.tsv"
    resources:
        gpu=1,
    params:
        settings=get_metric_params,
    run:
        steps.metric(PLAN, wildcards.experiment, wildcards.metric, output[0], log[0])
