"""The generation steps of the rules (rules/generate.smk): one image a job, or a chunk of
a model's images a job, both through the one engine (t2ibench.generate.GENERATOR).

Each function takes plain values (the plan, wildcards, paths), imports heavy libraries
only when it runs, and writes its outputs atomically (PNGs and records on the writer's
thread in chunks, t2ibench.writer).
"""

from __future__ import annotations

import logging
from contextlib import nullcontext

from t2ibench.console import logged
from t2ibench.errors import Stopped
from t2ibench.inline_scores import InlineScores
from t2ibench.plan import Plan
from t2ibench.steps import load_libraries, score_cache_path, sha_cache_path

log = logging.getLogger("t2ibench")


def _make_image(
    plan: Plan, model: str, settings: dict, image: str, record: str, writer=None, scores=None
) -> bool:
    """One image with the process's cached pipeline (written by `writer`'s thread when
    given, scored by `scores`, an InlineScores, when given); its time goes to the
    timings file. True when this call loaded the model."""
    return _make_batch(plan, model, [(settings, image, record)], writer, scores)


def _make_batch(plan: Plan, model: str, items: list, writer=None, scores=None) -> bool:
    """(settings, image, record) items made in one call (t2ibench.batching)."""
    from t2ibench import timings
    from t2ibench.generate import GENERATOR

    results = GENERATOR.generate_batch(
        plan.models[model],
        items,
        plan.config["device"],
        sha_cache=sha_cache_path(plan),
        memory=plan.config["memory"],
        writer=writer,
        on_written=scores.add if scores is not None else None,
    )
    for (settings, image, _), result in zip(items, results, strict=True):
        timings.record(
            timings.timings_path(plan.config["resources_dir"]),
            settings,
            result["device"],
            result["generation_seconds"],
        )
        log.debug(
            "%s: %.3f s, %d prompt tokens", image, result["generation_seconds"],
            result["prompt_tokens"],
        )  # fmt: skip
    return results[0]["model_loaded"]


def generate_image(plan: Plan, wildcards: dict, image: str, record: str, log_path: str) -> None:
    """One image of the plan, named by its target's wildcards."""
    load_libraries(plan, metrics=plan.config["metrics"]["score_in_generation"])
    from t2ibench.devices import configure_torch

    job = plan.lookup(
        wildcards["experiment"],
        wildcards["model"],
        wildcards["cell"],
        wildcards["prompt"],
        wildcards["image"],
        wildcards["seed"],
    )
    configure_torch(plan.config["torch_threads"])
    with logged(log_path, image, mark=False):  # images: t2ibench.freshness
        scores = InlineScores.for_jobs(plan, score_cache_path(plan), [job])
        with scores or nullcontext():
            _make_image(plan, job.model, plan.settings(job), image, record, scores=scores)


def generate_chunk(
    plan: Plan, experiment: str, model: str, chunk: str, output: str, log_path: str
) -> None:
    """Make the missing or outdated images of one chunk (see t2ibench.chunks), loading
    the model once; then write the chunk's record of what was made.

    Which images to make is decided here, when the job runs (on a cluster node, possibly
    in a retry): images made meanwhile, or by an earlier attempt, are not made again.
    """
    load_libraries(plan, metrics=plan.config["metrics"]["score_in_generation"])
    import socket
    import time

    from t2ibench import batching
    from t2ibench.chunks import chunk_jobs, parse_chunk_name
    from t2ibench.devices import configure_torch
    from t2ibench.freshness import Freshness
    from t2ibench.generate import GENERATOR, STOP
    from t2ibench.io import write_json
    from t2ibench.writer import Writer

    configure_torch(plan.config["torch_threads"])
    with logged(log_path, output):
        index, size = parse_chunk_name(chunk)
        jobs = chunk_jobs(plan, experiment, model, index, size)
        todo = Freshness(plan).todo(jobs)
        loads = 0
        start = time.perf_counter()
        where = f"{experiment}/{model} {chunk}"
        log.debug("%s: %d of its %d images to make", where, len(todo), len(jobs))
        progress = GENERATOR.progress  # its total is the plan's, or 0 in a cluster job
        progress.total = max(progress.total, progress.done + len(todo))
        spec = plan.models[model]
        hold = GENERATOR.hold_device(spec, plan.config["device"]) if todo else nullcontext()
        # PNGs are encoded and written on the writer's thread while the next image is
        # made; leaving the block (also on an interrupt) waits for every queued image.
        scores = InlineScores.for_jobs(plan, score_cache_path(plan), todo) if todo else None
        # Leaving the block, the writer finishes first, then the scores of what it wrote.
        with hold as device, scores or nullcontext(), Writer() as writer:
            if todo:
                log.debug("%s: on %s", where, device)
            done = 0
            for batch in batching.batches(todo, plan.settings):
                if STOP.is_set():
                    raise Stopped(
                        f"{where}: stopped on interrupt after {done} of {len(todo)} images; "
                        "the next run makes the rest"
                    )
                items = [
                    (plan.settings(j), plan.path(j), plan.path(j)[: -len(".png")] + ".json")
                    for j in batch
                ]
                loads += _make_batch(plan, model, items, writer, scores)
                done += len(batch)
        seconds = time.perf_counter() - start
        log.debug("%s: %d images in %.1f s", where, len(todo), seconds)
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
