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


def test_values_that_are_not_there_are_not_nan_on_the_page():
    """A metric with nothing to score (a reference metric without reference images, a
    KID spread of one set) is a dash; a column with no values at all is named instead."""
    import math

    import pandas as pd

    from t2ibench.report.html import _summary_table

    table = pd.DataFrame(
        {
            "model": ["a", "b"],
            "clip_score_mean": [21.5, 22.25],
            "kid_std": [0.01, math.nan],
            "clip_ref_cosine_mean": [math.nan, math.nan],
        }
    )
    page = _summary_table(table)
    assert "nan" not in page.lower()
    assert "<td>\u2013</td>" in page and "<td>21.5</td>" in page
    assert "clip_ref_cosine_mean</th>" not in page
    assert "No values: clip_ref_cosine_mean." in page
