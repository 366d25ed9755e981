"""The HTML page."""

from __future__ import annotations


def test_demo_warning_only_for_random_weights():
    from t2ibench.config import validate_config
    from t2ibench.report.html import demo_warning

    demo = validate_config({})
    assert "built-in tiny model" in demo_warning(demo)
    real = validate_config(
        {
            "models": [{"name": "m", "source": "builtin:tiny-sdxl"}],
            "metrics": {
                "clip": {"model": "ViT-L-14", "pretrained": "openai"},
                "lpips": {"enabled": False},
            },
        }
    )
    real["models"][0]["source"] = "/models/real.safetensors"  # as resolved for a user
    assert demo_warning(real) == ""
