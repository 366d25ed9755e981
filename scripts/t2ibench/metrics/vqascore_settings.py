"""VQAScore's settings, checked without torch: reading a config imports this module, not
t2ibench.metrics.vqascore."""

from __future__ import annotations

from t2ibench.errors import InputError


def check_vqascore_settings(question: str, min_pixels: int, max_pixels: int) -> None:
    """What the schema cannot say of VQAScore's settings (checked when the config is
    read, and by the scorer for callers of its own)."""
    if min_pixels and max_pixels and min_pixels > max_pixels:
        raise InputError(
            f"config key 'metrics.vqascore.min_pixels': {min_pixels} is above max_pixels "
            f"{max_pixels}; expected min_pixels <= max_pixels"
        )
    if question.count("{}") != 1:
        raise InputError(
            f"config key 'metrics.vqascore.question': expected one '{{}}' for the prompt, "
            f"got {question!r}"
        )
