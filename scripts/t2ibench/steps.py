"""One function per Snakemake rule: the rules stay thin and call these (generation:
t2ibench.generation_steps; findings and rounds: t2ibench.verdict_steps).

Each function takes plain values (the plan, wildcards, paths), imports heavy libraries
only when it runs, and writes its outputs atomically.
"""

from __future__ import annotations

import logging
from pathlib import Path

from t2ibench.console import logged
from t2ibench.generate import TORCH_LOCK
from t2ibench.plan import Plan

log = logging.getLogger("t2ibench")
_LOADED: set[str] = set()  # what load_libraries imported in this process


def load_libraries(plan: Plan | None = None, metrics: bool = True) -> None:
    """Import the heavy libraries a step uses, once, before it uses them: the diffusers
    and transformers classes of the plan's model families (every family without a
    plan), the samplers, and with `metrics` the metric libraries.

    Jobs run as threads of one process, and diffusers' and transformers' lazy modules are
    not thread-safe on first use: two jobs importing at once can fail with "cannot import
    name 'AutoencoderKL' from 'diffusers'". So the imports run under the lock that models
    are loaded and run under (TORCH_LOCK). Importing only what the step needs keeps a
    generation job from paying for the other families and the metrics (about 1 s).
    """
    from t2ibench.models import families

    names = (
        {spec.family for spec in plan.models.values()} if plan is not None
        else {family.name for family in families.all_families()}
    )  # fmt: skip
    wanted = (
        {f"family:{name}" for name in names} | {"samplers"} | ({"metrics"} if metrics else set())
    )
    if wanted <= _LOADED:
        return
    with TORCH_LOCK:
        import diffusers
        import transformers

        for key in sorted(wanted - _LOADED):
            kind, _, name = key.partition(":")
            if kind == "family":
                family = families.get(name)
                for class_name in family.diffusers_classes:
                    getattr(diffusers, class_name)
                for class_name in family.transformers_classes:
                    getattr(transformers, class_name)
            elif kind == "samplers":
                from t2ibench.samplers import SAMPLERS

                for class_name, _ in SAMPLERS.values():
                    getattr(diffusers, class_name)
            else:
                import lpips  # noqa: F401
                import open_clip  # noqa: F401
            _LOADED.add(key)
        from t2ibench.console import quiet_libraries

        quiet_libraries()


def sha_cache_path(plan: Plan) -> Path:
    from t2ibench.models.checks import sha_cache

    return sha_cache(plan.config["resources_dir"])


def materialise_builtin(builtin_id: str, checkpoint: str, config_dir: str, log_path: str) -> None:
    """A built-in written as one original-layout file plus its config folder."""
    load_libraries()
    from t2ibench.models import families

    builtin = families.builtins()[builtin_id]
    with logged(log_path, checkpoint), TORCH_LOCK:
        families.get(builtin.family).build_builtin(builtin, Path(checkpoint), Path(config_dir))
        log.debug("built-in model %s written to %s", builtin_id, checkpoint)


def materialise_builtin_folder(builtin_id: str, folder: str, log_path: str) -> None:
    """A built-in written as a diffusers folder."""
    load_libraries()
    from t2ibench.models import families

    builtin = families.builtins()[builtin_id]
    with logged(log_path, folder), TORCH_LOCK:
        families.get(builtin.family).build_builtin(builtin, Path(folder), None)
        log.debug("built-in model %s written to %s", builtin_id, folder)


def download_model(url: str, sha256: str, output: str, log_path: str) -> None:
    load_libraries()
    from t2ibench.models.download import ProgressPrinter, download_model

    out = Path(output)
    with logged(log_path, output):
        progress = ProgressPrinter(out.stem)
        try:
            download_model(url, out.parent, name=out.stem, sha256=sha256 or None, progress=progress)
        finally:
            progress.close()
        log.info("downloaded %s to %s", url, output)


def base_config(name: str, config_dir: str, log_path: str) -> None:
    """A family's base config folder (shipped configs and offline tokenizers)."""
    load_libraries()
    from t2ibench.models import families

    with logged(log_path, config_dir):
        families.base_configs()[name].build_base_config(name, Path(config_dir))
        log.debug("base configs %s written to %s", name, config_dir)


def image_list(plan: Plan, experiment: str, output: str, log_path: str) -> None:
    """The experiment's images, one path a line: the images the metrics and tables cover
    (the one input of the metric and report rules, so Snakemake resolves each image path
    once rather than once per rule).

    Every image is verified against its record first (t2ibench.freshness; the metric
    jobs reuse the digests): listed are the images that are done, and complete PNGs made
    elsewhere (no record), which `analyze` scores as they are. An image that is not the
    one the plan names (another PNG under its name, a cut file, made with other
    settings) never reaches a scorer: it is left out and named, and the next `snakemake`
    verifies it and makes it again.
    """
    from t2ibench.freshness import OUTDATED, Freshness
    from t2ibench.io import unfinished_mark, write_text

    with logged(log_path, output):
        states = Freshness(plan, verify=True).states(experiment)
        listed = [job for job, state in states.items() if state.scorable]
        left_out = [
            (job, state)
            for job, state in states.items()
            if state.state == OUTDATED and not state.scorable
        ]
        write_text(output, "".join(f"{plan.path(job)}\n" for job in listed))
        log.debug("%s: %d images", experiment, len(listed))
        # The list may read the same with other pixels under its names, which Snakemake's
        # checksums would take for unchanged: each metric table is marked unfinished
        # until its job has scored this list (t2ibench.io.unfinished_mark).
        for name in enabled_metrics(plan.config):
            table = Path(output).parent / "metrics" / f"{name}.csv"
            if table.exists():
                unfinished_mark(table).touch()
        for job, state in left_out[:5]:
            log.warning(
                "%s: left out of the tables: %s; the next `snakemake` makes it again",
                plan.path(job),
                state.reason,
            )
        if len(left_out) > 5:
            log.warning(
                "%s: %d more images left out (see %s)", experiment, len(left_out) - 5, log_path
            )
            for job, state in left_out[5:]:
                log.debug("%s: left out: %s", plan.path(job), state.reason)


def listed_jobs(plan: Plan, experiment: str, image_list: str):
    """The jobs of the images an image list names, in plan order."""
    from pathlib import Path as _Path

    names = set(_Path(image_list).read_text(encoding="utf-8").splitlines())
    return [j for j in plan.jobs if j.experiment == experiment and plan.path(j) in names]


def enabled_metrics(config: dict) -> list[str]:
    from t2ibench.metrics.registry import enabled

    return enabled(config["metrics"])


def score_cache_path(plan: Plan) -> Path:
    return Path(plan.config["resources_dir"]) / "cache" / "scores.sqlite"


def metric(
    plan: Plan, experiment: str, name: str, image_list: str, output: str, log_path: str
) -> None:
    """metrics/<name>.csv: one metric's table of the listed images (see
    t2ibench.metrics.registry)."""
    load_libraries(plan)
    from t2ibench import scoring
    from t2ibench.devices import configure_torch
    from t2ibench.io import write_csv

    configure_torch(plan.config["torch_threads"])
    settings = metric_settings(plan, experiment, name)
    with logged(log_path, output, settings=settings), TORCH_LOCK:
        jobs = listed_jobs(plan, experiment, image_list)
        table = scoring.metric_table(plan, experiment, name, jobs, score_cache_path(plan))
        write_csv(table, output)


def results_table(plan: Plan, experiment: str, inputs: dict, outputs, log_path: str) -> None:
    from t2ibench.io import write_csv
    from t2ibench.report import tables

    with logged(log_path, outputs.results):
        metric_tables = {k: v for k, v in inputs.items() if k != "images"}
        jobs = listed_jobs(plan, experiment, inputs["images"])
        results = tables.results_frame(plan, experiment, jobs, metric_tables)
        write_csv(results, outputs.results)
        write_csv(tables.summary_frame(results, plan, experiment), outputs.summary)
        write_csv(tables.comparisons_frame(results, plan, experiment), outputs.comparisons)
        log.info(
            "%s: %d images scored by %d metric(s): %s",
            experiment,
            len(results),
            len(metric_tables),
            outputs.results,
        )


def metadata(plan: Plan, experiment: str, output: str, log_path: str) -> None:
    load_libraries(plan)
    from t2ibench.io import write_json
    from t2ibench.report import tables

    with logged(log_path, output):
        write_json(output, tables.metadata(plan, experiment, sha_cache_path(plan)))


def grid(results_dir: str, experiment: str, cell_size: int, output: str, log_path: str) -> None:
    """grids/: the experiment's labelled grid pages (see t2ibench.report.grid)."""
    from t2ibench.io import building_dir
    from t2ibench.report.grid import experiment_grid_pages

    with logged(log_path, output), building_dir(output) as staging:
        pages = experiment_grid_pages(Path(results_dir), experiment, staging, cell_size)
        log.debug("%s: %d grid pages", output, len(pages))


def plots(inputs: dict, output: str, log_path: str) -> None:
    """plots/: built whole in a staging folder, so that no plot of an earlier run (a
    metric turned off, an axis renamed) stays beside the new ones."""
    from t2ibench.io import building_dir
    from t2ibench.report.plots import experiment_plots

    with logged(log_path, output), building_dir(output) as staging:
        written = experiment_plots(
            Path(inputs["summary"]), Path(inputs["results"]), Path(inputs["metadata"]), staging
        )
        log.debug("%s: %d plot files", output, len(written))


def viewer(results_dir: str, thumb_size: int, output: str, log_path: str) -> None:
    """results/report/: the interactive viewer over every experiment in results_dir."""
    from t2ibench.report.viewer import build_viewer

    with logged(log_path, output):
        page = build_viewer(Path(results_dir), Path(output).parent, thumb_size)
        log.debug("viewer: %s", page)


def report_page(plan: Plan, experiment: str, inputs: dict, output: str, log_path: str) -> None:
    from t2ibench.report.html import write_experiment_page

    with logged(log_path, output):
        write_experiment_page(plan, experiment, inputs, output)


def metric_settings(plan: Plan, experiment: str, metric: str) -> dict:
    """What a metric's table depends on besides the images (the metric rule's params,
    and its made mark's settings): its config, and for the metrics against real images,
    which images those are (a changed reference set remakes them)."""
    from t2ibench.metrics.registry import metric_params

    return {
        **metric_params(plan.config["metrics"], metric),
        **metric_references(plan, experiment, metric),
    }


def metric_references(plan: Plan, experiment: str, metric: str) -> dict:
    """The real images a metric compares with (FID/KID: the reference set; reference
    similarity: the prompts' paired images), as names, sizes and times: a change remakes
    that metric's table."""
    from t2ibench.scoring import reference_set

    if metric == "fid":
        paths = reference_set(plan, experiment)
    elif metric == "reference_similarity":
        paths = sorted(
            {p.reference_image for p in plan.experiments[experiment].prompts if p.reference_image}
        )
    else:
        return {}
    stamps = []
    for path in paths:
        stat = Path(path).stat()
        stamps.append(f"{path}|{stat.st_size}|{stat.st_mtime_ns}")
    facts = {"references": len(paths), "references_digest": _digest("\n".join(stamps))}
    if metric == "fid":  # `against: reference_cell` compares with it
        facts["reference_cell"] = plan.experiments[experiment].experiment.reference
    return facts


VIEWED_FILES = (
    "metadata.json",
    "results.csv",
    "summary.csv",
    "comparisons.csv",
    "findings.json",
    "findings.md",
)


def other_experiments(plan: Plan, analysis_dir: str) -> dict:
    """The experiments on disk that this config does not make (custom prompts' results,
    experiments of another config), as names and a digest of their tables' sizes and
    times: the viewer shows them too, so one added, changed or deleted remakes it."""
    from t2ibench.report.results import find_experiments

    others = [e for e in find_experiments(Path(analysis_dir)) if e not in plan.experiments]
    stamps = []
    for name in others:
        folder = Path(analysis_dir) / name
        files = [folder / f for f in VIEWED_FILES]
        files += sorted(folder.glob("metrics/*.csv")) + sorted(folder.glob("plots/*"))
        for path in files:
            if path.is_file():
                stat = path.stat()
                where = path.relative_to(analysis_dir).as_posix()
                stamps.append(f"{where}|{stat.st_size}|{stat.st_mtime_ns}")
    return {"experiments": others, "digest": _digest("\n".join(stamps))}


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def cell_record_content(plan: Plan, experiment: str, model: str, cell: str) -> dict:
    """cell.json: a cell's values and the settings its images are made with (the same in
    a quick run, whose cells and images are a subset of the full run's)."""
    from t2ibench.plan import ImageJob

    exp = plan.experiments[experiment]
    first = ImageJob(experiment, model, cell, exp.prompts[0].index, 0, exp.seeds[0])
    settings = plan.settings(first)
    per_image = ("prompt", "prompt_id", "seed")
    return {
        "experiment": experiment,
        "model": model,
        "cell": cell,
        "values": plan.cell(experiment, cell).values,
        "cell_settings": plan.cell(experiment, cell).settings,
        "settings": {k: v for k, v in settings.items() if k not in per_image},
    }


def cell_record(content: dict, output: str, log_path: str) -> None:
    from t2ibench.io import write_json

    with logged(log_path, output):
        write_json(output, content)
        log.debug("%s: %s", output, content["values"])
