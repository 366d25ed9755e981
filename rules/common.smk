import copy
import functools
import re
import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))

from t2ibench import steps
from t2ibench.batches import MARKER_WILDCARD, experiment_chunks, marker_path
from t2ibench.config import SCHEMA_PATH, validate_config
from t2ibench.errors import InputError
from t2ibench.generate import stop_batches_on_interrupt
from t2ibench.metrics.registry import SECTIONS, metric_params
from t2ibench.models.registry import BUILTIN_FOLDER_IDS, BUILTIN_IDS
from t2ibench.plan import build_plan

if workflow.overwrite_configfiles:
    # A config given with --configfile replaces the demo config/config.yaml instead of
    # being merged into it (the schema's defaults fill what it leaves out); --config
    # values still apply on top.
    config.clear()
    config.update(copy.deepcopy(workflow.config_settings.overwrite_config))

try:
    _validated = validate_config(config)
    config.clear()
    config.update(_validated)
    # Also run Snakemake's own validator on the filled config (it must agree).
    validate(config, schema=str(SCHEMA_PATH))
    PLAN = build_plan(config)
except InputError as err:
    sys.exit(f"t2ibench: error: {err}")

RESULTS = PLAN.results_dir
RESOURCES = config["resources_dir"]
steps.setup_logging()
# A cluster job makes its own target only: the plan summary (a look at every image) is
# for the main process.
ANNOUNCE = not workflow.remote_exec
if ANNOUNCE:
    steps.announce_plan(PLAN)


def analysis_outputs(experiment):
    """An experiment's tables, metadata, grid and page."""
    return [
        f"{RESULTS}/{experiment}/results.csv",
        f"{RESULTS}/{experiment}/summary.csv",
        f"{RESULTS}/{experiment}/comparisons.csv",
        f"{RESULTS}/{experiment}/metadata.json",
        f"{RESULTS}/{experiment}/grids",
        f"{RESULTS}/{experiment}/plots",
        f"{RESULTS}/{experiment}/index.html",
    ]


IMAGES_PER_JOB = config["images_per_job"]


def bundled():
    """images_per_job above 1: generation jobs make chunks of images (t2ibench.batches)."""
    return IMAGES_PER_JOB > 1


@functools.cache
def chunks(experiment):
    """The experiment's chunks and their markers (images checked once per process)."""
    return experiment_chunks(PLAN, experiment, IMAGES_PER_JOB)


if bundled():
    stop_batches_on_interrupt()
    if ANNOUNCE:
        steps.announce_batches(
            PLAN, IMAGES_PER_JOB, {e: chunks(e) for e in PLAN.experiments}
        )


def generation_outputs(experiment):
    """An experiment's images and each (model, cell) directory's cell.json.

    Images are listed themselves: Snakemake does not rerun a job for a missing
    intermediate file when the files after it are up to date, so a deleted image must be
    a target to be made again. Bundled, the image list stands for them: it depends on
    one marker per chunk (t2ibench.batches).
    """
    exp = PLAN.experiments[experiment]
    cells = [
        f"{RESULTS}/{experiment}/{model}/{cell.name}/cell.json"
        for model in exp.models
        for cell in exp.cells
    ]
    if bundled():
        return [f"{RESULTS}/{experiment}/images.txt"] + cells
    return PLAN.paths(experiment) + cells


def experiment_outputs(experiment):
    return generation_outputs(experiment) + analysis_outputs(experiment)


def viewer_inputs():
    """What the viewer shows: every experiment's tables, metadata, plots and grids."""
    return [path for e in PLAN.experiments for path in analysis_outputs(e)]


def viewer_outputs():
    return [f"{RESULTS}/report/index.html", f"{RESULTS}/report/data.js"]


def get_final_output():
    """Every experiment's images, cell records, tables, metadata, grids, plots and page,
    and the viewer over all of them."""
    outputs = [path for e in PLAN.experiments for path in experiment_outputs(e)]
    return outputs + viewer_outputs()


def analyze_only():
    """True when `analyze` is among the targets: score the images that exist, make none.

    Read while the DAG is built (input and params functions), when the targets are known.
    """
    return "analyze" in (workflow.dag_settings.targets or ())


def get_model_inputs(wildcards):
    return PLAN.models[wildcards.model].input_files


def get_download_url(wildcards):
    return PLAN.models[wildcards.download].url


def get_download_sha256(wildcards):
    return PLAN.models[wildcards.download].sha256 or ""


def get_image_settings(wildcards):
    job = PLAN.lookup(
        wildcards.experiment,
        wildcards.model,
        wildcards.cell,
        wildcards.prompt,
        wildcards.image,
        wildcards.seed,
    )
    return PLAN.settings(job)


def get_experiment_images(wildcards):
    """What the image list waits for: every image, or bundled one marker per chunk."""
    if analyze_only():
        return []
    if bundled():
        return [
            marker_path(RESULTS, c.experiment, c.model, c.marker)
            for c in chunks(wildcards.experiment)
        ]
    return PLAN.paths(wildcards.experiment)


def get_existing_images(wildcards):
    """With `analyze`, the list of images present: a new image found makes the list (and
    what depends on it) be remade."""
    if not analyze_only():
        return ""
    return steps.existing_digest(PLAN, wildcards.experiment)


def get_cell_record(wildcards):
    return steps.cell_record_content(
        PLAN, wildcards.experiment, wildcards.model, wildcards.cell
    )


def get_metric_tables(wildcards):
    return {
        metric: f"{RESULTS}/{wildcards.experiment}/metrics/{metric}.csv"
        for metric in steps.enabled_metrics(config)
    }


def get_page_tables(wildcards):
    """The page shows the FID/KID table when that metric is on."""
    tables = get_metric_tables(wildcards)
    return {"fid": tables["fid"]} if "fid" in tables else {}


def get_metric_params(wildcards):
    """The config a metric's table depends on: a change remakes that table."""
    return metric_params(config["metrics"], wildcards.metric)


def _alternatives(names):
    return "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))


wildcard_constraints:
    experiment=_alternatives(PLAN.experiments),
    model=_alternatives(PLAN.models),
    cell=_alternatives({c.name for e in PLAN.experiments.values() for c in e.cells}),
    download=_alternatives(m.name for m in PLAN.models.values() if m.url) or "(?!)",
    prompt=r"\d\d\d+",
    image=r"\d\d+",
    seed=r"\d+",
    metric=_alternatives(SECTIONS),
    batch=MARKER_WILDCARD,
