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
# Named presets (the seed tool's values); any other string is used as the text itself.
# The settings record the text, so results show what was really applied.
SYSTEM_PROMPT_PRESETS = {
    "photographer": "You are a professional photographer. Compose the described scene as a "
    "well-lit, sharply focused photograph with natural colours and a clear subject.",
    "painter": "You are a fine-art painter. Render the described scene as a painting with "
    "deliberate brushwork, a harmonious palette and a strong composition.",
    "illustrator": "You are an illustrator. Depict the described scene as a clean, detailed "
    "illustration with clear shapes, readable forms and consistent style.",
    "generic": "You are an assistant that creates images. Follow the description closely "
    "and render every object, attribute and relation it mentions.",
}
THINKING_PRESETS = {
    "quality": "The image should be high quality: sharp details, clean edges, accurate "
    "anatomy and no artifacts.",
    "mood": "Focus on the mood and atmosphere: lighting, colour temperature and emotional "
    "tone that fit the scene.",
    "technical": "Plan the composition: camera angle, focal length, depth of field and the "
    "placement of each subject in the frame.",
}
# SDXL call options: CLIP skip (diffusers' count: None reads hidden state -2, k reads
# -(k + 2); A1111 writes k + 1) and guidance rescale (0 = off; 0.7 is the usual value for
# v-prediction models).
SDXL_DEFAULTS = {"clip_skip": None, "guidance_rescale": 0.0, "zero_terminal_snr": False}
FAMILY_DEFAULTS = {"sdxl": SDXL_DEFAULTS, "zimage": ZIMAGE_DEFAULTS}
# Steps when generation.steps is null: SDXL's usual 28; Z-Image-Turbo's 9 (DiffSynth).
DEFAULT_STEPS = {"sdxl": 28, "zimage": 9}


def family_settings(family: str, generation: dict) -> dict:
    """The family's own settings for one image, with defaults filled in."""
    settings = {
        k: generation[k] if generation.get(k) is not None else v
        for k, v in FAMILY_DEFAULTS[family].items()
    }
    if settings.get("system_prompt") in SYSTEM_PROMPT_PRESETS:
        settings["system_prompt"] = SYSTEM_PROMPT_PRESETS[settings["system_prompt"]]
    if settings.get("thinking_content") in THINKING_PRESETS:
        settings["thinking_content"] = THINKING_PRESETS[settings["thinking_content"]]
    if settings.get("hidden_layer_blend"):
        settings["hidden_layer_blend"] = {
            int(layer): float(w) for layer, w in settings["hidden_layer_blend"].items()
        }
    return settings


def check_family_settings(generation: dict, families: dict[str, str]) -> None:
    """A family's own setting is an error while a model of another family is configured:
    it would silently not apply to that model."""
    for family, defaults in FAMILY_DEFAULTS.items():
        set_keys = [k for k in defaults if generation.get(k) is not None]
        others = [name for name, f in families.items() if f != family]
        if set_keys and others:
            label = {"sdxl": "an SDXL", "zimage": "a Z-Image"}[family]
            raise InputError(
                f"config key 'generation.{set_keys[0]}': {label} setting, but model "
                f"'{others[0]}' is {families[others[0]]}; remove it or run the "
                f"{family} models alone"
            )


def check_text_layers(
    generation: dict,
    models: dict[str, tuple[str, int | None]],
    where: str = "config key 'generation.",
) -> None:
    """Settings that pick a text-encoder layer must exist in each model they apply to.

    `models` maps a model name to (family, layer count or None when unknown). Z-Image's
    `hidden_layer` and blend layers are hidden-state indices, -(n + 1) to n for n layers
    (0 = token embeddings); SDXL's `clip_skip` (diffusers' count) reads hidden state
    -(clip_skip + 2), so 1 to n - 1.
    """
    layers = []
    if generation.get("hidden_layer") is not None:
        layers.append(("hidden_layer", int(generation["hidden_layer"])))
    for layer in generation.get("hidden_layer_blend") or {}:
        layers.append(("hidden_layer_blend", int(layer)))
    clip_skip = generation.get("clip_skip")
    for model, (family, n) in models.items():
        if n is None:
            continue
        if family == "zimage":
            for key, layer in layers:
                if not -(n + 1) <= layer <= n:
                    raise InputError(
                        f"{where}{key}': layer {layer} is out of range for model "
                        f"'{model}', whose text encoder has {n} layers "
                        f"(valid: {-(n + 1)} to {n})"
                    )
        if family == "sdxl" and clip_skip is not None and not 1 <= clip_skip <= n - 1:
            raise InputError(
                f"{where}clip_skip': {clip_skip} is out of range for model '{model}', whose "
                f"text encoders have {n} layers (valid: 1 to {n - 1}, or null for none)"
            )
