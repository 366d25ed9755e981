"""The conda env file and the pip requirements pin the same versions."""

from __future__ import annotations

import re

import yaml


def _pins(lines):
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip()
        match = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)", line)
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_conda_env_matches_requirements(repo):
    requirements = _pins((repo / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((repo / "envs" / "t2ibench.yaml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip_section) == requirements
    assert len(requirements) >= 10
    for package in [
        "torch",
        "diffusers",
        "transformers",
        "open-clip-torch",
        "lpips",
        "snakemake",
        "pandas",
        "matplotlib",
        "pyyaml",
        "pillow",
    ]:
        assert package in requirements, package


def test_every_requirement_is_pinned(repo):
    for name in ["requirements.txt", "requirements-dev.txt"]:
        for line in (repo / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-r"):
                assert "==" in line, f"{name}: {line} is not pinned"


def test_builtin_ids_agree_with_the_model_builders():
    from t2ibench.models import families
    from t2ibench.models.tiny import BUILTIN_MODELS

    sdxl = {b.id: b.prediction_type or "epsilon" for b in families.get("sdxl").builtins}
    assert sdxl == BUILTIN_MODELS


def test_tiny_text_layer_counts_agree():
    from t2ibench.models import families, tiny, zimage

    [tiny_zimage] = families.get("zimage").builtins
    assert tiny_zimage.text_layers == zimage.TEXT_LAYERS
    assert {b.text_layers for b in families.get("sdxl").builtins} == {tiny.TEXT_LAYERS}
    pipe = tiny.build_tiny_sdxl_pipeline("tiny-sdxl")
    assert pipe.text_encoder.config.num_hidden_layers == tiny.TEXT_LAYERS
    assert pipe.text_encoder_2.config.num_hidden_layers == tiny.TEXT_LAYERS
