"""Sampler names map to the right diffusers schedulers and settings."""

from __future__ import annotations

import pytest

from t2ibench.errors import InputError
from t2ibench.samplers import SAMPLER_LABELS, SAMPLERS, make_scheduler

SDXL_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "timestep_spacing": "leading",
}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_builds_its_scheduler(name):
    class_name, overrides = SAMPLERS[name]
    scheduler = make_scheduler(name, SDXL_SCHEDULER, "epsilon")
    assert type(scheduler).__name__ == class_name
    for key, value in overrides.items():
        assert scheduler.config[key] == value
    assert scheduler.config.beta_end == 0.012  # the model's own betas are kept
    assert scheduler.config.prediction_type == "epsilon"
    assert name in SAMPLER_LABELS


def test_v_prediction_sets_trailing_spacing():
    scheduler = make_scheduler("euler", SDXL_SCHEDULER, "v_prediction")
    assert scheduler.config.prediction_type == "v_prediction"
    assert scheduler.config.timestep_spacing == "trailing"


def test_unknown_sampler_lists_the_valid_ones():
    with pytest.raises(InputError, match="unknown sampler 'k_euler'; expected one of: euler, "):
        make_scheduler("k_euler", SDXL_SCHEDULER, "epsilon")


@pytest.fixture(scope="module")
def tiny_pipe():
    import torch

    from t2ibench.models.tiny import build_tiny_sdxl_pipeline

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    pipe = build_tiny_sdxl_pipeline("tiny-sdxl")
    pipe.set_progress_bar_config(disable=True)
    yield pipe
    torch.set_num_threads(threads)


def _image(pipe, name, seed):
    import numpy as np
    import torch

    pipe.scheduler = make_scheduler(name, SDXL_SCHEDULER, "epsilon", seed=seed)
    out = pipe(
        prompt="a red cube",
        num_inference_steps=3,
        guidance_scale=5.0,
        width=64,
        height=64,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="np",
    )
    return np.asarray(out.images[0])


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_repeats_bit_for_bit(tiny_pipe, name):
    first = _image(tiny_pipe, name, 218)
    assert (first == _image(tiny_pipe, name, 218)).all()
    assert not (first == _image(tiny_pipe, name, 219)).all()
