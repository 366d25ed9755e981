"""Settings that belong to one model family, and their defaults.

Light on purpose (no torch): the plan uses it while the Snakefile is parsed.
"""

from __future__ import annotations

from t2ibench.errors import InputError

# Z-Image defaults follow DiffSynth-Studio (the seed tool's table): think block on,
# interpolate long prompts, penultimate hidden layer, shift 3.0.
ZIMAGE_DEFAULTS = {
    "shift": 3.0,
    "hidden_layer": -2,
    "hidden_layer_blend": None,
    "system_prompt": None,
    "think_block": True,
    "thinking_content": None,
    "long_prompt_mode": "interpolate",
}
ZIMAGE_SAMPLER = "flow_match_euler"


def family_settings(family: str, generation: dict) -> dict:
    """The family's own settings for one image, with defaults filled in."""
    if family != "zimage":
        return {}
    settings = {
        k: generation[k] if generation.get(k) is not None else v for k, v in ZIMAGE_DEFAULTS.items()
    }
    if settings["hidden_layer_blend"]:
        settings["hidden_layer_blend"] = {
            int(layer): float(w) for layer, w in settings["hidden_layer_blend"].items()
        }
    return settings


def check_family_settings(generation: dict, families: dict[str, str]) -> None:
    """A Z-Image setting is an error while an SDXL model is configured (it would not apply)."""
    set_keys = [k for k in ZIMAGE_DEFAULTS if generation.get(k) is not None]
    sdxl = [name for name, family in families.items() if family != "zimage"]
    if set_keys and sdxl:
        raise InputError(
            f"config key 'generation.{set_keys[0]}': a Z-Image setting, but model "
            f"'{sdxl[0]}' is {families[sdxl[0]]}; remove it or run the Z-Image models alone"
        )
