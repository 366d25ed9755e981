rule results_table:
    input:
        unpack(get_metric_tables),
        images=f"{ANALYSIS}/{{experiment}}/images.txt",
    output:
        results=report(
            update(f"{ANALYSIS}/{{experiment}}/results.csv"),
            caption="../report/results.rst",
            category="Tables",
            labels={"experiment": "{experiment}", "table": "results"},
        ),
        summary=report(
            update(f"{ANALYSIS}/{{experiment}}/summary.csv"),
            caption="../report/summary.rst",
            category="Tables",
            labels={"experiment": "{experiment}", "table": "summary"},
        ),
        comparisons=report(
            update(f"{ANALYSIS}/{{experiment}}/comparisons.csv"),
            caption="../report/comparisons.rst",
            category="Tables",
            labels={"experiment": "{experiment}", "table": "comparisons"},
        ),
    log:
        f"{ANALYSIS}/{{experiment}}/logs/results_table.log",
    localrule: True
    params:
        metrics=get_enabled_metrics,
        experiment=get_experiment_facts,
    run:
        steps.results_table(PLAN, wildcards.experiment, dict(input), output, log[0])


rule human:
    input:
        votes=get_vote_files,
        results=f"{ANALYSIS}/{{experiment}}/results.csv",
    output:
        csv=report(
            update(f"{ANALYSIS}/{{experiment}}/human.csv"),
            caption="../report/human.rst",
            category="Tables",
            labels={"experiment": "{experiment}", "table": "human"},
        ),
        json=update(f"{ANALYSIS}/{{experiment}}/human.json"),
    log:
        f"{ANALYSIS}/{{experiment}}/logs/human.log",
    localrule: True
    params:
        votes=get_vote_digest,
    run:
        verdict_steps.human(
            PLAN,
            wildcards.experiment,
            list(input.votes),
            input.results,
            output,
            log[0],
        )


rule findings:
    input:
        unpack(get_rounds_summary),
        unpack(get_human),
        comparisons=f"{ANALYSIS}/{{experiment}}/comparisons.csv",
        results=f"{ANALYSIS}/{{experiment}}/results.csv",
        summary=f"{ANALYSIS}/{{experiment}}/summary.csv",
        metadata=f"{ANALYSIS}/{{experiment}}/metadata.json",
    output:
        md=report(
            update(f"{ANALYSIS}/{{experiment}}/findings.md"),
            caption="../report/findings.rst",
            category="Findings",
            labels={"experiment": "{experiment}", "table": "findings"},
        ),
        json=update(f"{ANALYSIS}/{{experiment}}/findings.json"),
    log:
        f"{ANALYSIS}/{{experiment}}/logs/findings.log",
    localrule: True
    params:
        findings=config["findings"],
        design=get_findings_design,
        votes=get_vote_digest,
    run:
        verdict_steps.findings(PLAN, wildcards.experiment, dict(input), output, log[0])


rule metadata:
    input:
        f"{ANALYSIS}/{{experiment}}/results.csv",
    output:
        update(f"{ANALYSIS}/{{experiment}}/metadata.json"),
    log:
        f"{ANALYSIS}/{{experiment}}/logs/metadata.log",
    localrule: True
    params:
        experiment=get_experiment_facts,
    run:
        steps.metadata(PLAN, wildcards.experiment, output[0], log[0])


rule grid:
    input:
        images=f"{ANALYSIS}/{{experiment}}/images.txt",
        results=f"{ANALYSIS}/{{experiment}}/results.csv",
        metadata=f"{ANALYSIS}/{{experiment}}/metadata.json",
    output:
        report(
            update(directory(f"{ANALYSIS}/{{experiment}}/grids")),
            patterns=["{name}.png"],
            caption="../report/grid.rst",
            category="Grids",
            labels={"experiment": "{experiment}", "grid": "{name}"},
        ),
    log:
        f"{ANALYSIS}/{{experiment}}/logs/grid.log",
    localrule: True
    params:
        cell_size=config["report"]["grid_cell_size"],
    run:
        steps.grid(ANALYSIS, wildcards.experiment, params.cell_size, output[0], log[0])


rule plots:
    input:
        summary=f"{ANALYSIS}/{{experiment}}/summary.csv",
        results=f"{ANALYSIS}/{{experiment}}/results.csv",
        metadata=f"{ANALYSIS}/{{experiment}}/metadata.json",
    output:
        report(
            update(directory(f"{ANALYSIS}/{{experiment}}/plots")),
            patterns=["{name}.png"],
            caption="../report/plots.rst",
            category="Plots",
            labels={"experiment": "{experiment}", "plot": "{name}"},
        ),
    log:
        f"{ANALYSIS}/{{experiment}}/logs/plots.log",
    localrule: True
    run:
        steps.plots(dict(input), output[0], log[0])


rule report_page:
    input:
        unpack(get_page_tables),
        results=f"{ANALYSIS}/{{experiment}}/results.csv",
        summary=f"{ANALYSIS}/{{experiment}}/summary.csv",
        metadata=f"{ANALYSIS}/{{experiment}}/metadata.json",
        findings=f"{ANALYSIS}/{{experiment}}/findings.json",
        grids=f"{ANALYSIS}/{{experiment}}/grids",
    # Not in Snakemake's report: the page links the images, tables and grids beside it,
    # which the report's archive does not hold (open it from the results folder).
    output:
        update(f"{ANALYSIS}/{{experiment}}/index.html"),
    log:
        f"{ANALYSIS}/{{experiment}}/logs/report_page.log",
    localrule: True
    params:
        tables=get_page_tables,
    run:
        steps.report_page(PLAN, wildcards.experiment, dict(input), output[0], log[0])


rule viewer:
    input:
        get_viewer_inputs,
    output:
        update(f"{ANALYSIS}/report/index.html"),
        update(f"{ANALYSIS}/report/data.js"),
    log:
        f"{ANALYSIS}/report/viewer.log",
    localrule: True
    params:
        thumb_size=config["report"]["thumb_size"],
        others=lambda wildcards: steps.other_experiments(PLAN, ANALYSIS),
    run:
        steps.viewer(ANALYSIS, params.thumb_size, output[0], log[0])
