rule metric:
    input:
        get_metric_inputs,
    output:
        report(
            update(f"{ANALYSIS}/{{experiment}}/metrics/{{metric}}.csv"),
            caption="../report/metric.rst",
            category="Metric tables",
            labels={"experiment": "{experiment}", "metric": "{metric}"},
        ),
    log:
        f"{ANALYSIS}/{{experiment}}/logs/{{metric}}.log",
    benchmark:
        f"{ANALYSIS}/{{experiment}}/benchmarks/{{metric}}.tsv"
    resources:
        gpu=1,
    params:
        settings=get_metric_params,
        about=get_metric_summary,
    run:
        steps.metric(
            PLAN,
            wildcards.experiment,
            wildcards.metric,
            input[0],
            output[0],
            log[0],
        )
