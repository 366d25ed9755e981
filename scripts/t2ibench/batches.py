"""Bundled generation: one job makes many images and loads its model once.

With ``images_per_job`` above 1 the images of each (experiment, model) are cut, in plan
order (cell, prompt, seed), into fixed chunks of that size. A chunk whose images are all
made and up to date needs no job. Otherwise one ``generate_batch`` job makes the chunk's
images that are missing or outdated, and only those.

The images are not outputs of the batch job: Snakemake deletes every output of a job
before it runs it again (and after it fails), so a batch owning its images would remake
a whole chunk for one deleted image, and lose the images a crashed batch had already
made. Each image is still written atomically (record first, PNG last), so an interrupted
batch leaves only finished images, and the next run makes the rest.

A batch job's output is a small JSON record, its marker, named
``chunk<k>-of<size>.<run>.json``: the image list depends on one marker per chunk. A chunk
with images to make gets the next run number (a marker not on disk yet, so Snakemake
runs the job); a finished chunk keeps its latest marker. The list of markers the image
list depends on is then the same before and after the job, and Snakemake's "set of input
files has changed" trigger does not remake the image list (and everything scored from
it) on the run after a batch.

What is outdated mirrors what Snakemake checks for a per-image job: the image's record
(written beside it) was made with other settings than the plan's now, or the model's
files are newer than the image. An image with no record (made elsewhere) is kept, as
Snakemake keeps an output it has no metadata for. Images newer than the chunk's latest
marker (made by a batch that stopped before its marker, or by a per-image job) also give
the chunk a new marker, so that the image list is made again.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from t2ibench.plan import ImageJob, Plan

MARKER = re.compile(r"^chunk(?P<index>\d{3,})-of(?P<size>\d+)\.(?P<run>\d+)$")
# The same for Snakemake's wildcard (which reads "{3,}" as a wildcard: spelled out).
MARKER_WILDCARD = r"chunk\d\d\d+-of\d+\.\d+"


@dataclass(frozen=True)
class Chunk:
    """A chunk of an (experiment, model)'s images and the marker the image list needs."""

    experiment: str
    model: str
    index: int
    size: int
    marker: str  # file name without .json
    todo: tuple[ImageJob, ...]  # images to make (empty for a finished chunk)
    runs: bool  # its marker is not on disk: Snakemake will run the batch job


def marker_name(index: int, size: int, run: int) -> str:
    return f"chunk{index:03d}-of{size}.{run}"


def parse_marker(name: str) -> tuple[int, int, int]:
    """(chunk index, chunk size, run) of a marker name."""
    match = MARKER.match(name)
    if not match:
        raise ValueError(f"not a batch marker name: {name!r} (expected chunk<k>-of<size>.<run>)")
    return int(match["index"]), int(match["size"]), int(match["run"])


def marker_path(results_dir: str, experiment: str, model: str, name: str) -> str:
    return f"{results_dir}/{experiment}/logs/batches/{model}/{name}.json"


def model_jobs(plan: Plan, experiment: str, model: str) -> list[ImageJob]:
    """The (experiment, model)'s images in plan order: cell, prompt, seed."""
    return [j for j in plan.jobs if (j.experiment, j.model) == (experiment, model)]


def chunk_jobs(plan: Plan, experiment: str, model: str, index: int, size: int) -> list[ImageJob]:
    """Chunk `index` (0-based) of the (experiment, model)'s images."""
    jobs = model_jobs(plan, experiment, model)
    if index * size >= len(jobs):
        raise KeyError(f"{experiment}/{model}: no chunk {index} of {size} images")
    return jobs[index * size : (index + 1) * size]


class Freshness:
    """Tells which images need making. Caches the model files' times; remembers the
    newest image (or record) time it saw per job."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self._model_mtime: dict[str, float] = {}
        self.mtime: dict[ImageJob, float] = {}

    def model_mtime(self, model: str) -> float:
        """The newest of the model's files (0 for files not there yet)."""
        if model not in self._model_mtime:
            files = self.plan.models[model].input_files
            times = [os.stat(f).st_mtime for f in files if os.path.exists(f)]
            self._model_mtime[model] = max(times, default=0.0)
        return self._model_mtime[model]

    def state(self, job: ImageJob) -> str:
        """'missing', 'outdated' or 'done'."""
        image = Path(self.plan.path(job))
        try:
            image_mtime = image.stat().st_mtime
        except (FileNotFoundError, NotADirectoryError):  # a file where a folder goes
            return "missing"
        self.mtime[job] = image_mtime
        record = image.with_suffix(".json")
        try:
            self.mtime[job] = max(image_mtime, record.stat().st_mtime)
            made_with = json.loads(record.read_text(encoding="utf-8"))["settings"]
        except FileNotFoundError:
            return "done"  # made elsewhere: kept, as Snakemake keeps it
        except (ValueError, KeyError, TypeError, OSError):
            return "outdated"  # a record we cannot read says nothing we can trust
        if made_with != json.loads(json.dumps(self.plan.settings(job))):
            return "outdated"
        if self.model_mtime(job.model) > image_mtime:
            return "outdated"
        return "done"

    def todo(self, jobs: list[ImageJob]) -> list[ImageJob]:
        return [j for j in jobs if self.state(j) != "done"]


def _latest_markers(folder: Path, size: int) -> dict[int, tuple[int, float]]:
    """chunk index -> (latest run, its marker's mtime) among the markers in `folder`."""
    latest: dict[int, tuple[int, float]] = {}
    if not folder.is_dir():
        return latest
    for path in folder.glob("chunk*.json"):
        try:
            index, chunk_size, run = parse_marker(path.name[: -len(".json")])
        except ValueError:
            continue
        if chunk_size == size and run >= latest.get(index, (-1, 0.0))[0]:
            latest[index] = (run, path.stat().st_mtime)
    return latest


def experiment_chunks(plan: Plan, experiment: str, size: int) -> list[Chunk]:
    """The chunks the experiment's image list depends on, in plan order.

    A chunk with images to make, or with images newer than its latest marker, gets the
    next run's marker (not on disk: its job runs). A finished chunk gives its latest
    marker; a finished chunk with no marker (made per image, or by hand) is left out.
    """
    fresh = Freshness(plan)
    chunks = []
    for model in plan.experiments[experiment].models:
        jobs = model_jobs(plan, experiment, model)
        folder = Path(marker_path(plan.results_dir, experiment, model, "x")).parent
        latest = _latest_markers(folder, size)
        for index in range(0, (len(jobs) + size - 1) // size):
            members = jobs[index * size : (index + 1) * size]
            todo = tuple(fresh.todo(members))
            run, marked = latest.get(index, (-1, 0.0))
            newer = any(fresh.mtime.get(j, 0.0) > marked for j in members)
            if not todo and run < 0:
                continue
            runs = bool(todo) or newer
            name = marker_name(index, size, run + 1 if runs else run)
            chunks.append(Chunk(experiment, model, index, size, name, todo, runs))
    return chunks
