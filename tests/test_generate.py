"""Generation helpers that need no workflow run."""

from __future__ import annotations

import pytest

from t2ibench.devices import resolve_device
from t2ibench.errors import InputError
from t2ibench.infotext import format_infotext


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
    text = format_infotext(settings, "0123456789abcdef")
    lines = text.split("\n")
    assert lines[0] == "a cat"
    assert lines[1] == "Negative prompt: blurry"
    assert lines[2].startswith(
        "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 5.0, Seed: 218, "
        "Size: 832x1216, "
        "Model hash: 0123456789, Model: my-model, Version: t2ibench "
    )


def test_sdxl_options_change_the_image():
    import numpy as np
    import torch

    from t2ibench.models import families
    from t2ibench.models.tiny import build_tiny_sdxl_pipeline

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pipe = build_tiny_sdxl_pipeline("tiny-sdxl")
        pipe.set_progress_bar_config(disable=True)
        base = {
            "sampler": "euler",
            "prediction_type": "epsilon",
            "seed": 7,
            "prompt": "a cat",
            "negative_prompt": "",
            "steps": 2,
            "guidance_scale": 5.0,
            "width": 64,
            "height": 64,
            "clip_skip": None,
            "guidance_rescale": 0.0,
            "zero_terminal_snr": False,
        }
        config = dict(pipe.scheduler.config)

        def image(**changes):
            settings = {**base, **changes}
            return np.asarray(families.get("sdxl").make_image(pipe, config, settings, "cpu"))

        reference = image()
        assert (reference == image()).all()
        assert not (reference == image(clip_skip=1)).all()
        assert not (reference == image(guidance_rescale=0.7)).all()
        # Zero terminal SNR matters where sampling starts at the last timestep: v-prediction
        # with trailing spacing, its intended use.
        vpred = image(prediction_type="v_prediction")
        assert not (vpred == image(prediction_type="v_prediction", zero_terminal_snr=True)).all()
    finally:
        torch.set_num_threads(threads)


def test_memory_options_on_cpu():
    from t2ibench.devices import place_pipeline
    from t2ibench.models import families
    from t2ibench.models.tiny import build_tiny_sdxl_pipeline

    pipe = build_tiny_sdxl_pipeline("tiny-sdxl")
    sdxl = families.get("sdxl")
    memory = {"cpu_offload": "none", "vae_tiling": True, "vae_slicing": True}
    place_pipeline(pipe, "cpu", memory, sdxl)
    assert pipe.vae.use_tiling and pipe.vae.use_slicing
    with pytest.raises(InputError, match="'memory.cpu_offload': 'model' needs a CUDA device"):
        place_pipeline(pipe, "cpu", {"cpu_offload": "model"}, sdxl)


def test_zimage_text_encoder_placed_on_its_own_device():
    import numpy as np

    from t2ibench.devices import place_pipeline
    from t2ibench.models import families
    from t2ibench.models.zimage import build_tiny_zimage_pipeline

    zimage = families.get("zimage")
    pipe = build_tiny_zimage_pipeline()
    pipe.set_progress_bar_config(disable=True)
    place_pipeline(pipe, "cpu", {"text_encoder_device": "cpu"}, zimage)
    assert pipe.text_encoder.device.type == "cpu"
    settings = {
        "prompt": "a cat",
        "negative_prompt": "",
        "steps": 2,
        "guidance_scale": 2.0,
        "width": 64,
        "height": 64,
        "seed": 3,
        "shift": 3.0,
        "hidden_layer": -2,
        "hidden_layer_blend": None,
        "system_prompt": None,
        "think_block": True,
        "thinking_content": None,
        "long_prompt_mode": "interpolate",
    }
    first = np.asarray(zimage.make_image(pipe, {}, settings, "cpu"))
    assert (first == np.asarray(zimage.make_image(pipe, {}, settings, "cpu"))).all()


def test_attention_backend_is_applied():
    from t2ibench import speed
    from t2ibench.models.zimage import build_tiny_zimage_pipeline

    pipe = build_tiny_zimage_pipeline()
    speed.apply(pipe, {"attention": "_native_math"}, "cpu", "z")
    backends = {
        str(getattr(m.processor, "_attention_backend", ""))
        for m in pipe.transformer.modules()
        if getattr(m, "processor", None)
    }
    assert backends == {"AttentionBackendName._NATIVE_MATH"}
    with pytest.raises(InputError, match="'attention': backend 'xformers' is not usable"):
        speed.apply(pipe, {"attention": "xformers"}, "cpu", "z")


def test_a_model_folder_that_does_not_load_is_one_line_naming_the_model(tmp_path, base_config):
    """A component missing from a diffusers folder: diffusers' words, under the model's
    name, as bad input (not a file-system error on the image being written)."""
    import shutil

    from t2ibench.config import validate_config
    from t2ibench.generate import Generator
    from t2ibench.models.zimage import save_tiny_zimage
    from t2ibench.plan import build_plan

    folder = tmp_path / "zfolder"
    save_tiny_zimage(folder)
    shutil.rmtree(folder / "vae")
    config = {**base_config, "models": [{"name": "z", "source": str(folder)}]}
    (folder / "vae").mkdir()  # there, not empty, without its config: loading finds it out
    (folder / "vae" / "notes.txt").write_text("a VAE goes here")
    spec = build_plan(validate_config(config)).models["z"]
    with pytest.raises(
        InputError, match=r"model 'z' \(.+zfolder\): it does not load: .*no file named config.json"
    ):
        Generator()._load(spec, "cpu", "fp32", None, {})


def test_a_model_folder_with_pickled_weights_is_not_loaded(tmp_path, base_config):
    """Only safetensors are loaded, in folders too: a component whose weights are a
    pickle (.bin) is refused in one line naming the model, not unpickled."""
    import torch
    from safetensors.torch import load_file

    from t2ibench.config import validate_config
    from t2ibench.generate import Generator
    from t2ibench.models.zimage import save_tiny_zimage
    from t2ibench.plan import build_plan

    folder = tmp_path / "zfolder"
    save_tiny_zimage(folder)
    [weights] = (folder / "vae").glob("*.safetensors")
    torch.save(load_file(weights), folder / "vae" / "diffusion_pytorch_model.bin")
    weights.unlink()
    config = {**base_config, "models": [{"name": "z", "source": str(folder)}]}
    spec = build_plan(validate_config(config)).models["z"]
    with pytest.raises(
        InputError, match=r"^model 'z' \(.+zfolder\): it does not load: .*safetensors"
    ):
        Generator()._load(spec, "cpu", "fp32", None, {})
