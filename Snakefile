from snakemake.utils import min_version

min_version("9.0")


# The demo config, unless --configfile gives another: that one replaces it (the schema's
# defaults fill what it leaves out; rules/common.smk), and --config applies on top.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/models.smk"
include: "rules/generate.smk"
include: "rules/sequential.smk"
include: "rules/metrics.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
    localrule: True


rule generate:
    input:
        [path for e in PLAN.experiments for path in generation_outputs(e)],
    localrule: True


rule analyze:
    input:
        viewer_inputs(),
        viewer_outputs(),
    localrule: True


# One target rule per experiment: `snakemake shift_sweep` makes and scores just that one
# (and refreshes the viewer, which shows it).
for _experiment in PLAN.experiments:

    rule:
        name:
            _experiment
        input:
            experiment_outputs(_experiment),
        localrule: True


onstart:
    if MAIN_PROCESS:
        console.announce_plan(PLAN, fresh(), IMAGES_PER_JOB, not analyze_only())
        preflight.start_run(
            PLAN,
            local_jobs=workflow.local_exec,
            executor=workflow.executor_plugin.name,
        )


onsuccess:
    quick_exit.stop_scheduler_timers()
    if MAIN_PROCESS:
        preflight.end_run(PLAN, ANALYSIS, ok=True)


onerror:
    quick_exit.stop_scheduler_timers()
    if MAIN_PROCESS:
        preflight.end_run(PLAN, ANALYSIS, ok=False)
