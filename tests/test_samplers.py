"""Sampler names map to the right diffusers schedulers and settings."""

from __future__ import annotations

import json

import pytest

from t2ibench.errors import InputError
from t2ibench.samplers import SAMPLER_LABELS, SAMPLERS, ZERO_SNR, make_scheduler

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


def test_zero_snr_flag():
    scheduler = make_scheduler("ddim", SDXL_SCHEDULER, "v_prediction", zero_snr=True)
    assert scheduler.config.rescale_betas_zero_snr is True
    with pytest.raises(InputError, match="'heun' does not support zero terminal SNR"):
        make_scheduler("heun", SDXL_SCHEDULER, "v_prediction", zero_snr=True)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_overrides_apply_to_a_config_read_from_disk(tmp_path, name):
    """A saved scheduler config lists missing keys in _use_default_values; overrides of
    those keys must still apply."""
    from diffusers import EulerDiscreteScheduler

    # Like real SDXL's scheduler_config.json: only some keys (no use_karras_sigmas, ...).
    (tmp_path / "scheduler_config.json").write_text(
        json.dumps({"_class_name": "EulerDiscreteScheduler", **SDXL_SCHEDULER})
    )
    scheduler = EulerDiscreteScheduler.from_config(EulerDiscreteScheduler.load_config(tmp_path))
    loaded = dict(scheduler.config)  # what the generator keeps for a loaded model
    assert "use_karras_sigmas" in loaded["_use_default_values"]
    scheduler = make_scheduler(name, loaded, "v_prediction", zero_snr=False)
    for key, value in SAMPLERS[name][1].items():
        assert scheduler.config[key] == value, key
    if SAMPLERS[name][0] in ZERO_SNR:
        snr = make_scheduler(name, loaded, "v_prediction", zero_snr=True)
        assert snr.config.rescale_betas_zero_snr is True
