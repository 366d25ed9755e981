"""Encoded prompts are reused (t2ibench.prompt_cache): one encoding per prompt and
encoder settings across seeds and cells, and the images are the same bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_families import BUILTINS, build, image, settings_for

from t2ibench import prompt_cache
from t2ibench.config import validate_config
from t2ibench.generate import GENERATOR
from t2ibench.generation_steps import _make_image
from t2ibench.models import families
from t2ibench.models.registry import builtin_paths
from t2ibench.plan import build_plan

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def resources(tmp_path_factory):
    return str(tmp_path_factory.mktemp("resources"))


@pytest.mark.parametrize("builtin_id", BUILTINS)
def test_a_cached_encoding_gives_the_same_image(builtin_id, resources):
    """Seed 11 encodes, seed 12 reuses; seed 12 equals an image made without the cache,
    and another prompt or negative prompt is encoded anew."""
    import torch

    family, spec = build(builtin_id, resources)
    pipe = family.load(spec, torch.float32)
    pipe.set_progress_bar_config(disable=True)
    plain = image(family, pipe, settings_for(family, spec) | {"seed": 12})
    cache = prompt_cache.install(pipe, 16)
    image(family, pipe, settings_for(family, spec))
    encoded = cache.encoded
    assert encoded >= 1
    cached = image(family, pipe, settings_for(family, spec) | {"seed": 12})
    assert cache.encoded == encoded and cache.reused >= 1  # nothing encoded again
    assert (cached == plain).all()
    image(family, pipe, settings_for(family, spec) | {"prompt": "a blue sphere"})
    assert cache.encoded > encoded


def test_a_sweep_encodes_each_prompt_once(base_config):
    """2 prompts x 2 seeds x 3 cells that differ in call-time settings (steps) on one
    model: 2 encodings (CFG on in every cell) and 10 reuses; guidance off (no negative
    prompt to encode) is another key."""
    config = validate_config(
        {**base_config, "prompts": {**base_config["prompts"], "num_prompts": 2}}
    )
    plan = build_plan(config)
    spec = plan.models["tiny"]
    checkpoint, config_dir = builtin_paths(config["resources_dir"], "tiny-sdxl")
    families.get("sdxl").build_builtin(
        families.builtins()["tiny-sdxl"], Path(checkpoint), Path(config_dir)
    )
    out = Path(config["results_dir"])
    out.mkdir(parents=True)

    def make(settings, n):
        _make_image(plan, "tiny", settings, str(out / f"{n}.png"), str(out / f"{n}.json"))

    for n, (steps, job) in enumerate((s, j) for s in (1, 2, 3) for j in plan.jobs):
        make({**plan.settings(job), "steps": steps}, n)
    loaded = next(m for key, m in GENERATOR._models.items() if key[1] == spec.checkpoint)
    cache = prompt_cache.of(loaded.pipe)
    assert (cache.encoded, cache.reused) == (2, 10)
    make({**plan.settings(plan.jobs[0]), "guidance_scale": 1.0}, 99)
    assert cache.encoded == 3
