"""The HTML page."""

from __future__ import annotations


def test_demo_warning_only_for_random_weights():
    from t2ibench.config import validate_config
    from t2ibench.report.html import demo_warning

    demo = validate_config({})
    warning = demo_warning(demo)
    assert "built-in tiny model" in warning
    for name in ["CLIP", "LPIPS", "siglip", "image_reward", "pickscore", "hps", "FID/KID"]:
        assert name in warning, name
    off = {"enabled": False}
    real = validate_config(
        {
            "models": [{"name": "m", "source": "builtin:tiny-sdxl"}],
            "metrics": {
                "clip": {"model": "ViT-L-14", "pretrained": "openai"},
                "lpips": off,
                "reference": off,
                "siglip": off,
                "image_reward": off,
                "pickscore": off,
                "hps": off,
                "fid": off,
            },
        }
    )
    real["models"][0]["source"] = "/models/real.safetensors"  # as resolved for a user
    assert demo_warning(real) == ""
    real["metrics"]["hps"]["enabled"] = True  # its default weights are the tiny model
    assert "hps uses a tiny random model" in demo_warning(real)
