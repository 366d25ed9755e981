"""Generation helpers that need no workflow run."""

from __future__ import annotations

import pytest

from t2ibench.errors import InputError
from t2ibench.generate import a1111_parameters, resolve_device


def test_device_resolution():
    import torch

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda", "mps")
    missing = f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(InputError, match=rf"'device': {missing} requested, but torch sees"):
        resolve_device(missing)


def test_a1111_parameters_text():
    settings = {
        "prompt": "a cat",
        "negative_prompt": "blurry",
        "steps": 28,
        "sampler": "dpmpp_2m_karras",
        "guidance_scale": 5.0,
        "seed": 218,
        "width": 832,
        "height": 1216,
        "model": "my-model",
    }
    text = a1111_parameters(settings, "0123456789abcdef")
    lines = text.split("\n")
    assert lines[0] == "a cat"
    assert lines[1] == "Negative prompt: blurry"
    assert lines[2].startswith(
        "Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 5.0, Seed: 218, Size: 832x1216, "
        "Model hash: 0123456789, Model: my-model, Version: t2ibench "
    )
