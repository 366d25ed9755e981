"""Chunks: one generation job makes many images and loads its model once.

With ``images_per_job`` above 1 the images of each (experiment, model) are cut, in plan
order (cell, prompt, seed), into fixed chunks of that size. A chunk whose images are all
done (t2ibench.freshness) needs no job. Otherwise one ``generate_chunk`` job makes the
chunk's images that are missing or outdated, and only those.

The images are not outputs of the chunk's job: Snakemake deletes every output of a job
before it runs it again (and after it fails), so a job owning its images would remake a
whole chunk for one deleted image, and lose the images a crashed job had already made.
Each image is still written atomically (record first, PNG last), so an interrupted job
leaves only finished images, and the next run makes the rest.

A chunk job's output is the chunk's record, a small JSON file of what it made,
``logs/chunks/<model>/chunk<k>-of<size>.json``. The image list waits for the records of
the chunks that have images to make; a record left by an earlier run is remade (forced)
when its chunk has images to make again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from t2ibench.freshness import Freshness
from t2ibench.plan import ImageJob, Plan

CHUNK_NAME = re.compile(r"^chunk(?P<index>\d{3,})-of(?P<size>\d+)$")
# The same for Snakemake's wildcard (which reads "{3,}" as a wildcard: spelled out).
CHUNK_WILDCARD = r"chunk\d\d\d+-of\d+"


@dataclass(frozen=True)
class Chunk:
    """A chunk of an (experiment, model)'s images that has images to make."""

    experiment: str
    model: str
    index: int
    size: int
    todo: tuple[ImageJob, ...]  # images to make

    @property
    def name(self) -> str:
        return chunk_name(self.index, self.size)


def chunk_name(index: int, size: int) -> str:
    return f"chunk{index:03d}-of{size}"


def parse_chunk_name(name: str) -> tuple[int, int]:
    """(chunk index, chunk size) of a chunk's name."""
    match = CHUNK_NAME.match(name)
    if not match:
        raise ValueError(f"not a chunk name: {name!r} (expected chunk<k>-of<size>)")
    return int(match["index"]), int(match["size"])


def chunk_record_path(results_dir: str, experiment: str, model: str, name: str) -> str:
    return f"{results_dir}/{experiment}/logs/chunks/{model}/{name}.json"


def model_jobs(plan: Plan, experiment: str, model: str) -> list[ImageJob]:
    """The (experiment, model)'s images in plan order: cell, prompt, seed."""
    return [j for j in plan.jobs if (j.experiment, j.model) == (experiment, model)]


def chunk_jobs(plan: Plan, experiment: str, model: str, index: int, size: int) -> list[ImageJob]:
    """Chunk `index` (0-based) of the (experiment, model)'s images."""
    jobs = model_jobs(plan, experiment, model)
    if index * size >= len(jobs):
        raise KeyError(f"{experiment}/{model}: no chunk {index} of {size} images")
    return jobs[index * size : (index + 1) * size]


def experiment_chunks(
    plan: Plan, experiment: str, size: int, fresh: Freshness | None = None
) -> list[Chunk]:
    """The chunks of the experiment that have images to make, in plan order."""
    fresh = fresh or Freshness(plan)
    chunks = []
    for model in plan.experiments[experiment].models:
        jobs = model_jobs(plan, experiment, model)
        for index in range(0, (len(jobs) + size - 1) // size):
            todo = tuple(fresh.todo(jobs[index * size : (index + 1) * size]))
            if todo:
                chunks.append(Chunk(experiment, model, index, size, todo))
    return chunks
