"""models[].vae: a replacement VAE from a file or folder, loaded offline."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from t2ibench.config import validate_config
from t2ibench.errors import InputError
from t2ibench.generate import Generator
from t2ibench.models.single_file import vae_to_original
from t2ibench.models.tiny import build_tiny_sdxl_pipeline, materialise_builtin
from t2ibench.plan import build_plan


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vae")
    materialise_builtin("tiny-sdxl", tmp / "model.safetensors", tmp / "model.config")
    other = build_tiny_sdxl_pipeline("tiny-sdxl", seed=5).vae
    # A standalone VAE file, as distributed: original layout without the model prefix.
    state = {
        k.removeprefix("first_stage_model."): v.contiguous()
        for k, v in vae_to_original(other).items()
    }
    save_file(state, tmp / "other-vae.safetensors")
    other.save_pretrained(tmp / "other-vae-folder")
    return tmp, other


def _config(base_config, tmp, vae):
    entry = {
        "name": "m",
        "source": str(tmp / "model.safetensors"),
        "config": str(tmp / "model.config"),
    }
    if vae:
        entry["vae"] = str(vae)
    return validate_config({**base_config, "models": [entry]})


@pytest.mark.parametrize("vae_name", ["other-vae.safetensors", "other-vae-folder"])
def test_replacement_vae_is_loaded(base_config, files, vae_name):
    tmp, other = files
    plan = build_plan(_config(base_config, tmp, tmp / vae_name))
    spec = plan.models["m"]
    assert spec.vae.endswith(vae_name)
    assert str(tmp / vae_name) in spec.input_files
    assert plan.settings(plan.jobs[0])["vae"] == spec.vae
    loaded = Generator()._load(spec, "cpu", "fp32", None, {})
    for (name, a), b in zip(
        loaded.pipe.vae.state_dict().items(), other.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_no_vae_keeps_params_unchanged(base_config, files):
    tmp, _ = files
    plan = build_plan(_config(base_config, tmp, None))
    assert "vae" not in plan.settings(plan.jobs[0])


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing.safetensors", "does not exist"),
        ("vae.pt", "pickle"),
    ],
)
def test_bad_vae_paths(base_config, files, name, message):
    tmp, _ = files
    (tmp / "vae.pt").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(InputError, match=message):
        build_plan(_config(base_config, tmp, tmp / name))


def test_a_vae_of_another_family_is_refused_before_the_run(base_config, files):
    """A FLUX.1 VAE (16 latent channels) on an SDXL model (4) would fail at the first
    decode, after the denoising: its latent channels are compared when the plan is made,
    for a folder (config.json) and a file (its encoder's output)."""
    tmp, other = files
    flux = type(other)(**{**other.config, "latent_channels": 16})
    flux.save_pretrained(tmp / "flux-vae-folder")
    state = {
        k.removeprefix("first_stage_model."): v.contiguous()
        for k, v in vae_to_original(flux).items()
    }
    save_file(state, tmp / "flux-vae.safetensors")
    for name in ("flux-vae-folder", "flux-vae.safetensors"):
        with pytest.raises(
            InputError,
            match=rf"'models\[0\].vae': .+{name} makes latents of 16 channels, and model 'm'",
        ):
            build_plan(_config(base_config, tmp, tmp / name))
