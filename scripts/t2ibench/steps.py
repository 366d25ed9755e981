"""One function per Snakemake rule: the rules stay thin and call these.

Each function takes plain values (the plan, wildcards, paths), imports heavy libraries
only when it runs, and writes its outputs atomically.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from pathlib import Path

from t2ibench.errors import InputError
from t2ibench.generate import TORCH_LOCK
from t2ibench.plan import Plan

log = logging.getLogger("t2ibench")
_LIBRARY_LOCK = threading.Lock()
_libraries_loaded = False


def load_libraries() -> None:
    """Import the heavy libraries once, under a lock, before a step uses them.

    Jobs run as threads of one process, and diffusers' and transformers' lazy modules are
    not thread-safe on first use: two jobs importing at once can fail with "cannot import
    name 'AutoencoderKL' from 'diffusers'".
    """
    global _libraries_loaded
    with _LIBRARY_LOCK:
        if _libraries_loaded:
            return
        import diffusers
        import transformers

        from t2ibench.samplers import SAMPLERS

        for name in [
            "AutoencoderKL",
            "UNet2DConditionModel",
            "StableDiffusionXLPipeline",
            "ZImagePipeline",
            "ZImageTransformer2DModel",
            "FlowMatchEulerDiscreteScheduler",
        ]:
            getattr(diffusers, name)
        for class_name, _ in SAMPLERS.values():
            getattr(diffusers, class_name)
        for name in [
            "CLIPTextModel",
            "CLIPTextModelWithProjection",
            "CLIPTokenizer",
            "Qwen3Model",
            "Qwen2Tokenizer",
        ]:
            getattr(transformers, name)
        import lpips  # noqa: F401
        import open_clip  # noqa: F401

        _libraries_loaded = True


def setup_logging() -> None:
    """Log t2ibench messages to stderr once per process (beside Snakemake's own log).

    Some libraries (open_clip) log through the root logger, which makes Python install a
    stderr handler on it; Snakemake's messages would then print twice. A root handler
    that drops records prevents that.
    """
    if not logging.root.handlers:
        logging.root.addHandler(logging.NullHandler())
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("t2ibench: %(message)s"))
        handler.setLevel(logging.INFO)  # per-image details go to the rule logs only
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)
        log.propagate = False


@contextlib.contextmanager
def logged(path: str):
    """Also write t2ibench log messages to a rule's log file while it runs.

    Jobs may run as threads of one process: the file gets only the messages of the
    thread that runs this job, not those of jobs running beside it.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    thread = threading.get_ident()
    handler.addFilter(lambda record: record.thread == thread)
    log.addHandler(handler)
    try:
        yield
    except InputError as err:  # bad input found only now: say it in the rule's log too
        log.error("error: %s", err)
        raise
    finally:
        log.removeHandler(handler)
        handler.close()


def announce_plan(plan: Plan) -> None:
    """One line about the plan (and the time it will take) before anything runs."""
    from t2ibench.generate import GENERATOR
    from t2ibench.preview import make_estimator, plan_status, total_estimate

    estimator = make_estimator(plan)
    rows = plan_status(plan, estimator)
    missing = sum(r.todo for r in rows)
    GENERATOR.progress.total = missing
    prompts = {p.id for e in plan.experiments.values() for p in e.prompts}
    models = {m for e in plan.experiments.values() for m in e.models}
    log.info(
        "plan: %d images over %d model(s) and %d prompt(s) in %d experiment(s) (%s); "
        "%d not generated yet; %s",
        len(plan.jobs),
        len(models),
        len(prompts),
        len(plan.experiments),
        ", ".join(plan.experiments),
        missing,
        total_estimate(rows, estimator),
    )


def announce_batches(plan: Plan, size: int, chunks: dict[str, list]) -> None:
    """One line about the bundled generation jobs (images_per_job above 1)."""
    running = {e: [c for c in cs if c.runs] for e, cs in chunks.items()}
    log.info(
        "generation bundled by images_per_job = %d: %d job(s) to run for %d image(s) (%s), "
        "each loading its model once",
        size,
        sum(len(cs) for cs in running.values()),
        sum(len(c.todo) for cs in running.values() for c in cs),
        ", ".join(f"{e} {len(cs)}" for e, cs in running.items()),
    )


def sha_cache_path(plan: Plan) -> Path:
    return Path(plan.config["resources_dir"]) / "cache" / "sha256.json"


def materialise_builtin(builtin_id: str, checkpoint: str, config_dir: str, log_path: str) -> None:
    load_libraries()
    from t2ibench.models.tiny import materialise_builtin as build

    with logged(log_path), TORCH_LOCK:
        build(builtin_id, Path(checkpoint), Path(config_dir))
        log.info("built-in model %s written to %s", builtin_id, checkpoint)


def materialise_builtin_folder(builtin_id: str, folder: str, log_path: str) -> None:
    load_libraries()
    from t2ibench.models.zimage import save_tiny_zimage

    with logged(log_path), TORCH_LOCK:
        save_tiny_zimage(Path(folder))
        log.info("built-in model %s written to %s", builtin_id, folder)


def download_model(url: str, sha256: str, output: str, log_path: str) -> None:
    load_libraries()
    from t2ibench.models.download import ProgressPrinter, download_model

    out = Path(output)
    with logged(log_path):
        progress = ProgressPrinter(out.stem)
        try:
            download_model(url, out.parent, name=out.stem, sha256=sha256 or None, progress=progress)
        finally:
            progress.close()
        log.info("downloaded %s to %s", url, output)


def sdxl_base_config(config_dir: str, log_path: str) -> None:
    load_libraries()
    from t2ibench.models.sdxl_config import materialise_sdxl_config

    with logged(log_path):
        materialise_sdxl_config(Path(config_dir))
        log.info("SDXL base configs and tokenizers written to %s", config_dir)


def _make_image(plan: Plan, model: str, settings: dict, image: str, record: str) -> bool:
    """One image with the process's cached pipeline; its time goes to the timings file.
    True when this call loaded the model."""
    from t2ibench import timings
    from t2ibench.generate import GENERATOR

    result = GENERATOR.generate(
        plan.models[model],
        settings,
        image,
        record,
        plan.config["device"],
        sha_cache=sha_cache_path(plan),
        memory=plan.config["memory"],
    )
    timings.record(
        timings.timings_path(plan.config["resources_dir"]),
        settings,
        result["device"],
        result["generation_seconds"],
    )
    log.debug(
        "%s: %.3f s, %d prompt tokens",
        image,
        result["generation_seconds"],
        result["prompt_tokens"],
    )
    return result["model_loaded"]


def generate_image(
    plan: Plan, model: str, settings: dict, image: str, record: str, log_path: str
) -> None:
    load_libraries()
    from t2ibench.generate import configure_torch

    configure_torch(plan.config["torch_threads"])
    with logged(log_path):
        _make_image(plan, model, settings, image, record)


def generate_batch(
    plan: Plan, experiment: str, model: str, marker: str, output: str, log_path: str
) -> None:
    """Make the missing or outdated images of one chunk (see t2ibench.batches), loading
    the model once; then write the marker, a record of what was made.

    Which images to make is decided here, when the job runs (on a cluster node, possibly
    in a retry): images made meanwhile, or by an earlier attempt, are not made again.
    """
    load_libraries()
    import socket
    import time
    from contextlib import nullcontext

    from t2ibench.batches import Freshness, chunk_jobs, parse_marker
    from t2ibench.generate import GENERATOR, STOP, configure_torch
    from t2ibench.io import write_json

    configure_torch(plan.config["torch_threads"])
    with logged(log_path):
        index, size, _ = parse_marker(marker)
        jobs = chunk_jobs(plan, experiment, model, index, size)
        todo = Freshness(plan).todo(jobs)
        loads = 0
        start = time.perf_counter()
        where = f"{experiment}/{model} {marker}"
        log.info("%s: %d of its %d images to make", where, len(todo), len(jobs))
        progress = GENERATOR.progress  # its total is the plan's, or 0 in a cluster job
        progress.total = max(progress.total, progress.done + len(todo))
        spec = plan.models[model]
        hold = GENERATOR.hold_device(spec, plan.config["device"]) if todo else nullcontext()
        with hold as device:
            if todo:
                log.info("%s: on %s", where, device)
            for done, job in enumerate(todo):
                if STOP.is_set():
                    raise RuntimeError(
                        f"{where}: stopped on interrupt after {done} of {len(todo)} images; "
                        "the next run makes the rest"
                    )
                path = plan.path(job)
                record = path[: -len(".png")] + ".json"
                loads += _make_image(plan, model, plan.settings(job), path, record)
        seconds = time.perf_counter() - start
        log.info("%s: %d images in %.1f s", where, len(todo), seconds)
        write_json(
            output,
            {
                "experiment": experiment,
                "model": model,
                "chunk": index,
                "chunk_size": size,
                "images": [f"{job.cell}/{job.filename}" for job in jobs],
                "made": [f"{job.cell}/{job.filename}" for job in todo],
                "model_loads": loads,
                "device": device,
                "seconds": round(seconds, 3),
                "host": socket.gethostname(),
            },
        )


def image_list(plan: Plan, experiment: str, output: str, log_path: str) -> None:
    """The experiment's images, one path a line: the one input of the metric and report
    rules, so Snakemake resolves each image path once rather than once per rule."""
    from t2ibench.io import write_text
    from t2ibench.scoring import existing_jobs

    with logged(log_path):
        paths = [plan.path(job) for job in existing_jobs(plan, experiment)]
        write_text(output, "".join(f"{path}\n" for path in paths))
        log.info("%s: %d images", experiment, len(paths))


def enabled_metrics(config: dict) -> list[str]:
    from t2ibench.metrics.registry import enabled

    return enabled(config["metrics"])


def score_cache_path(plan: Plan) -> Path:
    return Path(plan.config["resources_dir"]) / "cache" / "scores.sqlite"


def metric(plan: Plan, experiment: str, name: str, output: str, log_path: str) -> None:
    """metrics/<name>.csv: one metric's table (see t2ibench.metrics.registry)."""
    load_libraries()
    from t2ibench import scoring
    from t2ibench.generate import configure_torch
    from t2ibench.io import write_csv

    configure_torch(plan.config["torch_threads"])
    with logged(log_path), TORCH_LOCK:
        table = scoring.metric_table(plan, experiment, name, score_cache_path(plan))
        write_csv(table, output)


def results_table(plan: Plan, experiment: str, inputs: dict, outputs, log_path: str) -> None:
    from t2ibench.io import write_csv
    from t2ibench.report import tables

    with logged(log_path):
        metric_tables = {k: v for k, v in inputs.items() if k != "images"}
        results = tables.results_frame(plan, experiment, metric_tables)
        write_csv(results, outputs.results)
        write_csv(tables.summary_frame(results, plan, experiment), outputs.summary)
        write_csv(tables.comparisons_frame(results, plan, experiment), outputs.comparisons)
        log.info("%s: results.csv has %d rows", experiment, len(results))


def metadata(plan: Plan, experiment: str, output: str, log_path: str) -> None:
    load_libraries()
    from t2ibench.io import write_json
    from t2ibench.report import tables

    with logged(log_path):
        write_json(output, tables.metadata(plan, experiment, sha_cache_path(plan)))


def grid(results_dir: str, experiment: str, cell_size: int, output: str, log_path: str) -> None:
    """grids/: the experiment's labelled grid pages (see t2ibench.report.grid)."""
    from t2ibench.report.grid import experiment_grid_pages

    with logged(log_path):
        pages = experiment_grid_pages(Path(results_dir), experiment, Path(output), cell_size)
        log.info("%s: %d grid pages", output, len(pages))


def plots(inputs: dict, output: str, log_path: str) -> None:
    from t2ibench.report.plots import experiment_plots

    with logged(log_path):
        Path(output).mkdir(parents=True, exist_ok=True)
        written = experiment_plots(
            Path(inputs["summary"]), Path(inputs["results"]), Path(inputs["metadata"]), Path(output)
        )
        log.info("%s: %d plot files", output, len(written))


def viewer(results_dir: str, thumb_size: int, output: str, log_path: str) -> None:
    """results/report/: the interactive viewer over every experiment in results_dir."""
    from t2ibench.report.viewer import build_viewer

    with logged(log_path):
        page = build_viewer(Path(results_dir), Path(output).parent, thumb_size)
        log.info("viewer: %s", page)


def report_page(plan: Plan, experiment: str, inputs: dict, output: str, log_path: str) -> None:
    from t2ibench.report.html import write_experiment_page

    with logged(log_path):
        write_experiment_page(plan, experiment, inputs, output)


def existing_digest(plan: Plan, experiment: str) -> str:
    """A digest of which of the experiment's images exist."""
    import hashlib

    from t2ibench.scoring import existing_jobs

    paths = "\n".join(plan.path(j) for j in existing_jobs(plan, experiment))
    return hashlib.sha256(paths.encode()).hexdigest()


def cell_record_content(plan: Plan, experiment: str, model: str, cell: str) -> dict:
    """cell.json: a cell's values and the settings its images are made with."""
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
        "reference": cell == exp.experiment.reference,
        "settings": {k: v for k, v in settings.items() if k not in per_image},
        "prompts": [p.id for p in exp.prompts],
        "seeds": exp.seeds,
        "images": len(exp.prompts) * len(exp.seeds),
    }


def cell_record(content: dict, output: str, log_path: str) -> None:
    from t2ibench.io import write_json

    with logged(log_path):
        write_json(output, content)
        log.debug("%s: %d images with %s", output, content["images"], content["values"])
