import copy
import functools
import hashlib
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))

from t2ibench import (
    console,
    generation_steps,
    human,
    look_chain,
    preflight,
    quick_exit,
    rounds,
    steps,
    verdict_steps,
)
from t2ibench.chunks import CHUNK_WILDCARD, chunk_jobs, chunk_record_path
from t2ibench.chunks import experiment_chunks, parse_chunk_name
from t2ibench.config import load_yaml, validate_config
from t2ibench.errors import InputError
from t2ibench.freshness import OUTDATED, Freshness, read_image_lists
from t2ibench.generate import stop_chunks_on_interrupt
from t2ibench.io import changed_outputs, settings_digest, unfinished_outputs
from t2ibench.metrics import registry
from t2ibench.models.checks import check_checkpoint
from t2ibench.models.families import base_configs
from t2ibench.report.tables import FORMAT as TABLES_FORMAT
from t2ibench.report.thumbnails import files_missing
from t2ibench.models.registry import BUILTIN_FOLDER, BUILTIN_FOLDER_IDS, BUILTIN_IDS
from t2ibench.models.registry import builtin_dir

BASE_CONFIGS = list(base_configs())
from t2ibench.plan import build_plan

console.setup_logging()  # before the plan: what building it warns of is a console line
try:
    # Snakemake has read the --configfile files already; read them again as our own
    # files are read, so that a key given twice is an error, not silently the last.
    for _path in workflow.overwrite_configfiles or []:
        load_yaml(Path(_path))
    if workflow.overwrite_configfiles:
        # A config given with --configfile replaces the demo config/config.yaml instead
        # of being merged into it (the schema's defaults fill what it leaves out);
        # --config values still apply on top.
        config.clear()
        config.update(copy.deepcopy(workflow.config_settings.overwrite_config))
    _validated = validate_config(
        config
    )  # the schema, its defaults, and what it cannot say
    config.clear()
    config.update(_validated)
    PLAN = build_plan(config)
    # Vote files of the viewer's Vote view, by the experiment they name (each checked).
    VOTES = human.read_folder(config["votes"])
except InputError as err:
    sys.exit(f"t2ibench: error: {err}")

RESULTS = PLAN.results_dir
# A quick run's tables, plots and pages go to their own folder: it never rewrites the
# full run's. Its images are a subset of the full run's, in the same place.
ANALYSIS = f"{RESULTS}/quick" if config["quick"] else RESULTS
RESOURCES = config["resources_dir"]
IMAGES_PER_JOB = config["images_per_job"]
# Cluster jobs, and the subprocesses of jobs run outside threads, make their own
# targets only: the plan summary is the main process's.
MAIN_PROCESS = not (workflow.remote_exec or workflow.subprocess_exec)
quick_exit.freeze_at_exit()
_OTHER_VOTES = human.foreign(VOTES, [PLAN.vote_name(e) for e in PLAN.experiments])
if MAIN_PROCESS and _OTHER_VOTES:
    console.log.warning("%s", _OTHER_VOTES)


def analyze_only():
    """True when `analyze` is among the targets: score the images that exist, make none.

    Read while the DAG is built (input and params functions), when the targets are known.
    """
    settings = workflow.dag_settings
    return settings is not None and "analyze" in (settings.targets or ())


@functools.cache
def freshness(verify):
    """The state of every planned image (t2ibench.freshness), read once per process;
    images left out of their experiment's current list are verified."""
    return Freshness(PLAN, verify=verify, listed=read_image_lists(PLAN, ANALYSIS))


def fresh():
    """`analyze` (and `verify_images: true`) also checks each PNG's sha256."""
    return freshness(config["verify_images"] or analyze_only())


if MAIN_PROCESS and "--unlock" in sys.argv:
    # Snakemake's --unlock clears its own lock; this clears the results folder's.
    preflight.unlock(PLAN)
elif MAIN_PROCESS and workflow.output_settings.dryrun:
    # A dry run has no onstart (where a run says what it will do): say it here (the
    # targets are not known yet while the Snakefile is read: `analyze` from the command).
    console.announce_plan(PLAN, fresh(), IMAGES_PER_JOB, "analyze" not in sys.argv[1:])


def chunked():
    """images_per_job above 1: generation jobs make chunks of images (t2ibench.chunks)."""
    return IMAGES_PER_JOB > 1


if chunked():
    stop_chunks_on_interrupt()


def force(path):
    """Have Snakemake remake `path` as `--forcerun path` would: an image, chunk record or image
    list that exists but is outdated by t2ibench.freshness, which Snakemake's checks of
    times and params do not see (another PNG under the same name, a settings change made
    while it ran elsewhere). Called from input functions, while the DAG is built."""
    if workflow.dag is not None and MAIN_PROCESS:
        workflow.dag.forcefiles.add(path)


_UNFINISHED_SEEN = []


def force_unfinished():
    """Force every table, page and list that a job began replacing and did not finish
    (failed, interrupted, killed; t2ibench.io.unfinished_mark): Snakemake put the old
    file back with a new time, so neither its times nor its checksums would remake it.
    Force too each one that is no longer what its job made (removed, cut, edited by
    hand; t2ibench.io.made_mark), and each built-in model file that is damaged. Once per
    DAG, from the input functions of the rules that read the image lists."""
    if workflow.dag is None or not MAIN_PROCESS or workflow.dag in _UNFINISHED_SEEN:
        return
    _UNFINISHED_SEEN[:] = [workflow.dag]
    folders = {f"{ANALYSIS}/report": None, str(builtin_dir(RESOURCES)): None}
    for experiment in PLAN.experiments:
        folders[f"{ANALYSIS}/{experiment}"] = None
        folders[f"{ANALYSIS}/{experiment}/metrics"] = {
            f"{name}.csv": settings_digest(
                steps.metric_settings(PLAN, experiment, name)
            )
            for name in steps.enabled_metrics(config)
        }
    for folder, settings in folders.items():
        for path in unfinished_outputs(folder) + changed_outputs(folder, settings):
            force(path)
    if files_missing(f"{ANALYSIS}/report"):  # a viewer whose thumbnails were removed
        force(f"{ANALYSIS}/report/index.html")
    for builtin in BUILTIN_IDS:  # a damaged built-in model file is built again
        path = f"{RESOURCES}/{BUILTIN_FOLDER}/{builtin}.safetensors"
        try:
            if Path(path).is_file():
                check_checkpoint(Path(path))
        except InputError:
            force(path)


def experiment_jobs(experiment):
    return [job for job in PLAN.jobs if job.experiment == experiment]


@functools.cache
def design_of(experiment):
    """The experiment's early-stopping design (t2ibench.rounds); None: fixed design."""
    return PLAN.sequential(experiment)


def to_make(experiment):
    """What the experiment's image list waits for: the images to make (t2ibench.freshness)
    or, chunked, the records of the chunks that hold them; for a sequential experiment,
    its last look's summary (the looks' inputs are the rounds' images)."""
    if design_of(experiment) is not None:
        return [rounds.end_path(ANALYSIS, experiment)]
    if chunked():
        return [
            chunk_record_path(RESULTS, experiment, c.model, c.name)
            for c in experiment_chunks(PLAN, experiment, IMAGES_PER_JOB, fresh())
        ]
    return [PLAN.path(j) for j in experiment_jobs(experiment) if fresh().state(j).todo]


def cell_records(experiment):
    exp = PLAN.experiments[experiment]
    return [
        f"{RESULTS}/{experiment}/{model}/{cell.name}/cell.json"
        for model in exp.models
        for cell in exp.cells
    ]


def generation_outputs(experiment):
    """The images (or chunks) left to make, and each (model, cell)'s cell.json."""
    return to_make(experiment) + cell_records(experiment)


def vote_files(experiment):
    """The vote files (config key `votes`) that name the experiment."""
    return [str(path) for path in VOTES.get(PLAN.vote_name(experiment), [])]


def get_vote_files(wildcards):
    return vote_files(wildcards.experiment)


def get_vote_digest(wildcards):
    """The experiment's vote files by name and content: one added, removed or changed
    makes people's tables and the findings again."""
    return human.digest(vote_files(wildcards.experiment))


def get_human(wildcards):
    """People's votes, where there are vote files for the experiment."""
    if not vote_files(wildcards.experiment):
        return {}
    return {"human": f"{ANALYSIS}/{wildcards.experiment}/human.json"}


def analysis_outputs(experiment):
    """An experiment's image list, tables, metadata, grids, plots and page (and what
    people's votes say, where there are some)."""
    voted = [f"{ANALYSIS}/{experiment}/human.csv"] if vote_files(experiment) else []
    return voted + [
        f"{ANALYSIS}/{experiment}/images.txt",
        f"{ANALYSIS}/{experiment}/results.csv",
        f"{ANALYSIS}/{experiment}/summary.csv",
        f"{ANALYSIS}/{experiment}/comparisons.csv",
        f"{ANALYSIS}/{experiment}/metadata.json",
        f"{ANALYSIS}/{experiment}/findings.md",
        f"{ANALYSIS}/{experiment}/findings.json",
        f"{ANALYSIS}/{experiment}/grids",
        f"{ANALYSIS}/{experiment}/plots",
        f"{ANALYSIS}/{experiment}/index.html",
    ]


def viewer_inputs():
    """What the viewer shows: every experiment's tables, metadata, plots and grids."""
    return [path for e in PLAN.experiments for path in analysis_outputs(e)]


def experiment_of(path):
    """The experiment whose folder holds `path` (None: no experiment's)."""
    for root in dict.fromkeys([ANALYSIS, RESULTS]):
        try:
            first = Path(path).resolve().relative_to(Path(root).resolve()).parts[:1]
        except ValueError:
            continue
        if first and first[0] in PLAN.experiments:
            return first[0]
    return None


def targeted_experiments():
    """The experiments this run's targets make: those named (as a target rule, or by a
    file in their folder), else all."""
    targets = (workflow.dag_settings.targets if workflow.dag_settings else None) or ()
    named = set()
    for target in targets:
        if target in PLAN.experiments:
            named.add(target)
            continue
        folder = experiment_of(target)
        if folder is None:
            return list(PLAN.experiments)  # all, generate, analyze, the viewer, ...
        named.add(folder)
    return [e for e in PLAN.experiments if e in named] or list(PLAN.experiments)


def get_viewer_inputs(wildcards):
    """The viewer shows every experiment on disk and is remade when the experiments this
    run makes are newer: `snakemake shift_sweep` refreshes it without making the others.
    """
    force_unfinished()
    return [path for e in targeted_experiments() for path in analysis_outputs(e)]


def viewer_outputs():
    return [f"{ANALYSIS}/report/index.html", f"{ANALYSIS}/report/data.js"]


def experiment_outputs(experiment):
    """One experiment's images, tables and page, and the viewer (which shows them)."""
    return (
        generation_outputs(experiment) + analysis_outputs(experiment) + viewer_outputs()
    )


def get_final_output():
    """Every experiment's images, cell records, tables, metadata, grids, plots and page,
    and the viewer over all of them."""
    outputs = [path for e in PLAN.experiments for path in generation_outputs(e)]
    return outputs + viewer_inputs() + viewer_outputs()


def get_image_inputs(wildcards):
    """The model's files; an image that exists but is outdated is forced."""
    job = PLAN.lookup(
        wildcards.experiment,
        wildcards.model,
        wildcards.cell,
        wildcards.prompt,
        wildcards.image,
        wildcards.seed,
    )
    if fresh().state(job).state == OUTDATED:
        force(PLAN.path(job))
    return PLAN.models[wildcards.model].input_files


def get_chunk_inputs(wildcards):
    """The model's files; a chunk's record from an earlier run is forced while the chunk
    has images to make."""
    index, size = parse_chunk_name(wildcards.chunk)
    jobs = chunk_jobs(PLAN, wildcards.experiment, wildcards.model, index, size)
    record = chunk_record_path(
        RESULTS, wildcards.experiment, wildcards.model, wildcards.chunk
    )
    if fresh().todo(jobs) and Path(record).exists():
        force(record)
    return PLAN.models[wildcards.model].input_files


def look_content(experiment, k):
    """Look k's content, through its checkpoint: until the look has run, this raises
    Snakemake's IncompleteCheckpointException, which makes the look a dependency and
    asks again once it is there."""
    path = checkpoints.sequential_look.get(experiment=experiment, look=str(k)).output[0]
    return rounds.read(path)


def look_number(wildcards):
    """The look's number, checked against the experiment's design."""
    design, k = design_of(wildcards.experiment), int(wildcards.look)
    if design is None or not 1 <= k <= len(design.looks):
        raise InputError(
            f"{rounds.look_path(ANALYSIS, wildcards.experiment, k)}: no such look "
            f"(experiment '{wildcards.experiment}' has "
            f"{len(design.looks) if design else 'no sequential'} looks)"
        )
    return k


@functools.cache
def chain_of(experiment):
    """The experiment's looks on disk that hold (t2ibench.look_chain), read once per
    process; `analyze` does not check the images (it makes none)."""
    return look_chain.chain(PLAN, experiment, fresh(), images=not analyze_only())


def get_look_inputs(wildcards):
    """Look k waits for look k-1 and the images of rounds 1..k of the arms it left open
    that are still to make (round k's, and any of an earlier round made again). The
    first look on disk that no longer holds is forced."""
    experiment, k = wildcards.experiment, look_number(wildcards)
    path = rounds.look_path(ANALYSIS, experiment, k)
    if chain_of(experiment).redo == k and Path(path).exists():
        force(path)
    previous, inputs = None, []
    if k > 1:
        previous = look_content(experiment, k - 1)
        inputs.append(rounds.look_path(ANALYSIS, experiment, k - 1))
    if analyze_only():  # `analyze` makes no image
        return inputs
    arms = rounds.open_arms(previous, PLAN.experiments[experiment])
    jobs = rounds.jobs_until(PLAN, experiment, design_of(experiment), k, arms)
    return inputs + [PLAN.path(j) for j in jobs if fresh().state(j).todo]


def get_previous_look(wildcards):
    k = look_number(wildcards)
    return rounds.look_path(ANALYSIS, wildcards.experiment, k - 1) if k > 1 else ""


def get_design(wildcards):
    """What a look decides with: a change (another margin, round, metric, arm) remakes
    the looks."""
    design = design_of(wildcards.experiment)
    return {
        **design.as_dict(),
        "arms": [list(a) for a in rounds.arms(PLAN.experiments[wildcards.experiment])],
    }


def get_rounds_summary(wildcards):
    """A sequential experiment's findings say what its looks decided (with `analyze`,
    which makes no image, where its looks have run)."""
    path = rounds.end_path(ANALYSIS, wildcards.experiment)
    if design_of(wildcards.experiment) is None or (
        analyze_only() and not Path(path).exists()
    ):
        return {}
    return {"rounds": path}


def get_findings_design(wildcards):
    """The design the findings follow: switching between early stopping and the fixed
    design (`sequential=false`) makes them again, also with every image already made."""
    design = design_of(wildcards.experiment)
    return "fixed" if design is None else design.as_dict()


def get_last_look(wildcards):
    """The look after which nothing is open (or the last of the design). Where a look
    on disk no longer holds, or the images on disk are not those rounds.json counted,
    rounds.json is forced (and the looks it waits for are made again)."""
    experiment = wildcards.experiment
    design = design_of(experiment)
    if design is None:
        raise InputError(f"experiment '{experiment}' is not sequential in this run")
    end = rounds.end_path(ANALYSIS, experiment)
    if Path(end).exists() and (
        chain_of(experiment).redo
        or look_chain.recorded(end) != look_chain.on_disk(PLAN, experiment, fresh())
    ):
        force(end)
    for k in range(1, len(design.looks) + 1):
        if look_content(experiment, k)["finished"]:
            return [rounds.look_path(ANALYSIS, experiment, k)]
    return [rounds.look_path(ANALYSIS, experiment, len(design.looks))]


def get_download_url(wildcards):
    return PLAN.models[wildcards.download].url


def get_download_sha256(wildcards):
    return PLAN.models[wildcards.download].sha256 or ""


def listed_jobs(experiment):
    """The images the experiment's list will hold: with `analyze`, those whose pixels
    are there to score; otherwise every planned image (the run makes what is left)."""
    jobs = experiment_jobs(experiment)
    if analyze_only():
        return [j for j in jobs if fresh().state(j).scorable]
    return jobs


def get_list_inputs(wildcards):
    """The images (or chunks) to make first; none with `analyze`. An image list older
    than one of its images (made by a run that stopped before the list) is forced."""
    force_unfinished()
    experiment = wildcards.experiment
    inputs = [] if analyze_only() else to_make(experiment)
    path = Path(f"{ANALYSIS}/{experiment}/images.txt")
    sequential = design_of(experiment) is not None
    if sequential and analyze_only():
        # The inputs stay those of the run that made the rounds (a changed set of
        # inputs would remake the list); the list is remade when what `analyze` can
        # score is not what it holds.
        end = rounds.end_path(ANALYSIS, experiment)
        inputs = [end] if Path(end).exists() else []
        if path.exists():
            held = set(path.read_text(encoding="utf-8").splitlines())
            if held != {PLAN.path(j) for j in listed_jobs(experiment)}:
                force(str(path))
    if path.exists():
        made = path.stat().st_mtime
        if any(fresh().mtime.get(j, 0.0) > made for j in listed_jobs(experiment)):
            force(str(path))
    return inputs


def get_list_digest(wildcards):
    """The paths the list will hold: a change (an image added to or gone from what
    `analyze` can score, a prompt or seed added) remakes the list and the tables. A
    sequential experiment's list holds the images its rounds made, known only after its
    looks: its digest is of the planned paths (the list waits for the last look)."""
    experiment = wildcards.experiment
    jobs = experiment_jobs(experiment)
    if design_of(experiment) is None:
        jobs = listed_jobs(experiment)
    paths = "\n".join(PLAN.path(j) for j in jobs)
    return hashlib.sha256(paths.encode()).hexdigest()


def get_cell_record(wildcards):
    return steps.cell_record_content(
        PLAN, wildcards.experiment, wildcards.model, wildcards.cell
    )


def get_metric_tables(wildcards):
    force_unfinished()
    return {
        metric: f"{ANALYSIS}/{wildcards.experiment}/metrics/{metric}.csv"
        for metric in steps.enabled_metrics(config)
    }


def get_experiment_facts(wildcards):
    """What an experiment's tables and metadata say besides the images: its reference
    cell (comparisons are against it), its description, and its prompts' ids,
    categories and reference images (a prompt's text is in its images' settings); a
    change remakes them."""
    planned = PLAN.experiments[wildcards.experiment]
    exp = planned.experiment
    prompts = [(p.index, p.id, p.category, p.reference_image) for p in planned.prompts]
    return {
        "reference": exp.reference,
        "description": exp.description,
        "prompts": settings_digest(prompts),
        "tables": TABLES_FORMAT,  # a new column set remakes tables written before it
    }


def get_enabled_metrics(wildcards):
    """The metric tables merged: turning a metric off remakes the tables without it."""
    return sorted(steps.enabled_metrics(config))


def get_page_tables(wildcards):
    """The page shows the table of each per-set metric that is on (FID/KID)."""
    tables = get_metric_tables(wildcards)
    return {
        f"set_{name}": path
        for name, path in tables.items()
        if registry.get(name).granularity == "set"
    }


def get_metric_params(wildcards):
    """What a metric's table depends on besides the images (t2ibench.steps)."""
    return steps.metric_settings(PLAN, wildcards.experiment, wildcards.metric)


def get_metric_inputs(wildcards):
    """The image list, then the tables of the metrics this one comes after."""
    force_unfinished()
    after = [
        f"{ANALYSIS}/{wildcards.experiment}/metrics/{name}.csv"
        for name in registry.get(wildcards.metric).after
    ]
    return [f"{ANALYSIS}/{wildcards.experiment}/images.txt", *after]


def get_metric_summary(wildcards):
    """The metric's one-line summary, for its report caption."""
    return registry.get(wildcards.metric).summary


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
    metric=_alternatives(registry.names()),
    chunk=CHUNK_WILDCARD,
    look=r"\d+",
