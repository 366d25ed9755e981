"""The HTML page."""

from __future__ import annotations


def test_demo_warning_only_for_random_weights():
    from t2ibench.config import validate_config
    from t2ibench.report.html import demo_warning

    demo = validate_config({})
    warning = demo_warning(demo)
    assert "built-in tiny model" in warning
    for name in [
        "CLIP",
        "LPIPS",
        "siglip",
        "image_reward",
        "pickscore",
        "hps",
        "vqascore",
        "FID/KID",
    ]:
        assert name in warning, name
    from t2ibench.metrics import registry

    off = {section: {"enabled": False} for section in registry.sections()}
    real = validate_config(
        {
            "models": [{"name": "m", "source": "builtin:tiny-sdxl"}],
            "metrics": {**off, "clip": {"model": "ViT-L-14", "pretrained": "openai"}},
        }
    )
    real["models"][0]["source"] = "/models/real.safetensors"  # as resolved for a user
    assert demo_warning(real) == ""
    real["metrics"]["hps"]["enabled"] = True  # its default weights are the tiny model
    assert "hps uses a tiny random model" in demo_warning(real)
