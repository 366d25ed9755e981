rule results_table:
    input:
        unpack(get_metric_tables),
        images=f"{RESULTS}/{{experiment}}/images.txt",
    output:
        results=report(
            f"{RESULTS}/{{experiment}}/results.csv",
            caption="../report/results.rst",
            category="Tables",
            labels={"experiment": "{experiment}", "table": "results"},
        ),
        summary=report(
            f"{RESULTS}/{{experiment}}/summary.csv",
            caption="../report/summary.rst",
            category="Tables",
            labels={"experiment": "{experiment}", "table": "summary"},
        ),
        comparisons=report(
            f"{RESULTS}/{{experiment}}/comparisons.csv",
            caption="../report/comparisons.rst",
            category="Tables",
            labels={"experiment": "{experiment}", "table": "comparisons"},
        ),
    log:
        f"{RESULTS}/{{experiment}}/logs/results_table.log",
    run:
        steps.results_table(PLAN, wildcards.experiment, dict(input), output, log[0])


rule metadata:
    input:
        f"{RESULTS}/{{experiment}}/results.csv",
    output:
        f"{RESULTS}/{{experiment}}/metadata.json",
    log:
        f"{RESULTS}/{{experiment}}/logs/metadata.log",
    run:
        steps.metadata(PLAN, wildcards.experiment, output[0], log[0])


rule grid:
    input:
        images=f"{RESULTS}/{{experiment}}/images.txt",
        results=f"{RESULTS}/{{experiment}}/results.csv",
        metadata=f"{RESULTS}/{{experiment}}/metadata.json",
    output:
        report(
            directory(f"{RESULTS}/{{experiment}}/grids"),
            patterns=["{name}.png"],
            caption="../report/grid.rst",
            category="Grids",
            labels={"experiment": "{experiment}", "grid": "{name}"},
        ),
    log:
        f"{RESULTS}/{{experiment}}/logs/grid.log",
    params:
        cell_size=config["report"]["grid_cell_size"],
    run:
        steps.grid(RESULTS, wildcards.experiment, params.cell_size, output[0], log[0])


rule plots:
    input:
        summary=f"{RESULTS}/{{experiment}}/summary.csv",
        results=f"{RESULTS}/{{experiment}}/results.csv",
        metadata=f"{RESULTS}/{{experiment}}/metadata.json",
    output:
        report(
            directory(f"{RESULTS}/{{experiment}}/plots"),
            patterns=["{name}.png"],
            caption="../report/plots.rst",
            category="Plots",
            labels={"experiment": "{experiment}", "plot": "{name}"},
        ),
    log:
        f"{RESULTS}/{{experiment}}/logs/plots.log",
    run:
        steps.plots(dict(input), output[0], log[0])


rule report_page:
    input:
        unpack(get_page_tables),
        results=f"{RESULTS}/{{experiment}}/results.csv",
        summary=f"{RESULTS}/{{experiment}}/summary.csv",
        metadata=f"{RESULTS}/{{experiment}}/metadata.json",
        grids=f"{RESULTS}/{{experiment}}/grids",
    output:
        report(
            f"{RESULTS}/{{experiment}}/index.html",
            caption="../report/page.rst",
            category="Pages",
            labels={"experiment": "{experiment}"},
        ),
    log:
        f"{RESULTS}/{{experiment}}/logs/report_page.log",
    run:
        steps.report_page(PLAN, wildcards.experiment, dict(input), output[0], log[0])


rule viewer:
    input:
        viewer_inputs(),
    output:
        f"{RESULTS}/report/index.html",
        f"{RESULTS}/report/data.js",
    log:
        f"{RESULTS}/report/viewer.log",
    params:
        thumb_size=config["report"]["thumb_size"],
    run:
        steps.viewer(RESULTS, params.thumb_size, output[0], log[0])
