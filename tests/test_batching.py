"""Images made in batches (t2ibench.batching): a row of a batch is the same whatever the
other rows hold and wherever it sits, so a gap fill, padded to the recorded batch size,
makes an image bit for bit as it was first made; batch_size is in each image's settings
only above 1; what cannot be batched is refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_families import BUILTINS, build, settings_for

from t2ibench import batching
from t2ibench.config import validate_config
from t2ibench.errors import InputError
from t2ibench.models import families
from t2ibench.plan import build_plan

from conftest import with_changes

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BATCHED = [b for b in BUILTINS if families.get(families.builtins()[b].family).batches]


@pytest.fixture(scope="module")
def resources(tmp_path_factory):
    return str(tmp_path_factory.mktemp("resources"))


def rows(family, spec, seeds, prompts=None, size=4):
    prompts = prompts or ["a red cube on a table"] * len(seeds)
    base = settings_for(family, spec) | {"batch_size": size}
    return [base | {"seed": s, "prompt": p} for s, p in zip(seeds, prompts, strict=True)]


def made(family, pipe, batch):
    from t2ibench.generate import Generator, LoadedModel

    loaded = LoadedModel(pipe, dict(pipe.scheduler.config), "")
    images, _ = Generator._run(loaded, batch, "cpu")
    return [np.asarray(i) for i in images]


@pytest.mark.parametrize("builtin_id", BATCHED)
def test_a_row_is_the_same_whatever_its_batch_holds(builtin_id, resources):
    """Each family that batches: seed 11 first in a full batch, last in another with
    other prompts and seeds, and alone (padded, as a gap fill makes it): the same bytes;
    one at a time (batch_size 1) is another image, close to it."""
    import torch

    family, spec = build(builtin_id, resources)
    pipe = family.load(spec, torch.float32)
    pipe.set_progress_bar_config(disable=True)
    first = made(family, pipe, rows(family, spec, [11, 12, 13, 14]))
    other = ["a blue sphere", "two cats", "a city at night", "a red cube on a table"]
    last = made(family, pipe, rows(family, spec, [21, 22, 23, 11], other))
    alone = made(family, pipe, rows(family, spec, [11]))
    assert len(first) == 4 and len(alone) == 1
    assert (first[0] == last[3]).all() and (first[0] == alone[0]).all()
    assert not (first[0] == first[1]).all()  # another seed, another image
    single = made(family, pipe, rows(family, spec, [11], size=1))[0]
    assert np.abs(single.astype(int) - first[0].astype(int)).max() <= 2


def test_batches_are_runs_of_one_cell_up_to_its_size():
    def settings(cell, seed, size=3):
        return {"cell": cell, "seed": seed, "prompt": f"p{seed}", "prompt_id": "x",
                "batch_size": size}  # fmt: skip

    items = [settings("a", s) for s in range(5)] + [settings("b", s) for s in range(2)]
    got = batching.batches(items, lambda s: s)
    assert [[(s["cell"], s["seed"]) for s in b] for b in got] == [
        [("a", 0), ("a", 1), ("a", 2)], [("a", 3), ("a", 4)], [("b", 0), ("b", 1)]
    ]  # fmt: skip
    assert [s["seed"] for s in batching.padded(got[1])] == [3, 4, 4]
    assert batching.settings_of({"batch_size": 1}) == {} and batching.settings_of({}) == {}
    assert batching.settings_of({"batch_size": 4}) == {"batch_size": 4}


def test_batch_size_is_in_the_settings_only_above_one(base_config):
    plain = build_plan(validate_config({**base_config, "images_per_job": 4}))
    job = plain.jobs[0]
    assert "batch_size" not in plain.settings(job)
    gen = {**base_config["generation"], "batch_size": 4}
    batched = build_plan(validate_config({**base_config, "images_per_job": 4, "generation": gen}))
    assert batched.settings(batched.jobs[0])["batch_size"] == 4
    assert json.dumps(batched.settings(batched.jobs[0])) != json.dumps(plain.settings(job))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"images_per_job": 2}, "key 'batch_size': 4, but images_per_job is 2; a batch is"),
        ({"images_per_job": 1}, "images_per_job must be at least 4"),
        ({"sampler": "dpmpp_sde"}, "sampler 'dpmpp_sde' draws its noise from one seed"),
        ({"one_at_a_time": True}, "SDXL images are made one at a time (model 'tiny')"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": "four"}, "batch_size"),
    ],
)
def test_what_cannot_be_batched_is_one_line(base_config, changes, message, monkeypatch):
    if changes.get("one_at_a_time"):  # a family that makes one image at a time
        monkeypatch.setattr(families.get("sdxl"), "batches", False)
    gen = {**base_config["generation"], "batch_size": 4}
    config = {**base_config, "images_per_job": changes.get("images_per_job", 8)}
    if "sampler" in changes:
        gen["sampler"] = changes["sampler"]
    if "batch_size" in changes:
        gen["batch_size"] = changes["batch_size"]
    with pytest.raises(InputError) as err:
        build_plan(validate_config(with_changes(config, generation=gen)))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_gap_fill_in_a_batched_chunk_is_the_first_run(base_config, tmp_path):
    """A chunk of 6 images in batches of 4 (a full batch and a padded one); two images
    removed and the chunk made again: the same bytes, and the records say the batch
    size."""
    from pathlib import Path

    from t2ibench.chunks import chunk_jobs, experiment_chunks
    from t2ibench.generation_steps import generate_chunk
    from t2ibench.models.registry import builtin_paths

    gen = {**base_config["generation"], "batch_size": 4, "images_per_prompt": 2}
    config = validate_config(
        with_changes(
            base_config,
            images_per_job=6,
            generation=gen,
            prompts={**base_config["prompts"], "num_prompts": 3},
        )
    )
    plan = build_plan(config)
    checkpoint, config_dir = builtin_paths(config["resources_dir"], "tiny-sdxl")
    families.get("sdxl").build_builtin(
        families.builtins()["tiny-sdxl"], Path(checkpoint), Path(config_dir)
    )
    experiment = next(iter(plan.experiments))
    chunk = experiment_chunks(plan, experiment, 6)[0]
    record = tmp_path / "chunk.json"
    generate_chunk(plan, experiment, chunk.model, chunk.name, str(record), str(tmp_path / "l"))
    jobs = chunk_jobs(plan, experiment, chunk.model, chunk.index, chunk.size)
    paths = [Path(plan.path(j)) for j in jobs]
    first = {p: p.read_bytes() for p in paths}
    assert len(first) == 6
    meta = json.loads(paths[0].with_suffix(".json").read_text())
    assert meta["settings"]["batch_size"] == 4
    for gone in (paths[1], paths[4]):
        gone.unlink()
    generate_chunk(plan, experiment, chunk.model, chunk.name, str(record), str(tmp_path / "l"))
    assert json.loads(record.read_text())["made"] == [
        f"{j.cell}/{j.filename}" for j in (jobs[1], jobs[4])
    ]
    assert {p: p.read_bytes() for p in paths} == first
