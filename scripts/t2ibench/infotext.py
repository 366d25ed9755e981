"""The `parameters` text of a PNG, as A1111, Forge, ComfyUI and CivitAI read it.

The grammar is A1111's (modules/infotext_utils.py): the prompt, then a line
``Negative prompt: ...``, then one line of ``key: value`` pairs separated by commas; a
value holding a comma, a colon or a newline is written as a JSON string. Every setting
that shapes the image and differs from its family's default is written: with A1111's
field name and convention where A1111 has the field (``Clip skip`` counts one more than
diffusers' ``clip_skip``; a Karras sampler is ``Sampler: DPM++ 2M, Schedule type:
Karras``; ``Noise Schedule: Zero Terminal SNR``), with a readable name otherwise
(``Shift``, ``Hidden layer``, ``System prompt``, ...).
"""

from __future__ import annotations

import json

from t2ibench import __version__
from t2ibench.models.families import FAMILY_DEFAULTS
from t2ibench.samplers import SAMPLER_LABELS

KARRAS = " Karras"


def quote(value) -> str:
    """A1111's quoting: JSON for text with a comma, a colon or a newline."""
    text = str(value)
    if any(c in text for c in ",:\n"):
        return json.dumps(text, ensure_ascii=False)
    return text


def sampler_fields(sampler: str) -> list[tuple[str, str]]:
    """`Sampler` and, for the Karras variants, `Schedule type` (A1111 1.9 and later)."""
    label = SAMPLER_LABELS[sampler]
    if label.endswith(KARRAS):
        return [("Sampler", label[: -len(KARRAS)]), ("Schedule type", "Karras")]
    return [("Sampler", label)]


def _blend(blend: dict) -> str:
    return json.dumps({str(k): v for k, v in blend.items()})


# Family settings: (settings key, field name, value as text). Written when the value
# differs from the family's default (t2ibench.models.families); Shift, always for Z-Image.
FAMILY_FIELDS = {
    "sdxl": [
        ("clip_skip", "Clip skip", lambda v: str(v + 1)),  # A1111 counts the last layer as 1
        ("guidance_rescale", "Guidance rescale", str),
        ("zero_terminal_snr", "Noise Schedule", lambda v: "Zero Terminal SNR"),
    ],
    "zimage": [
        ("shift", "Shift", str),
        ("hidden_layer", "Hidden layer", str),
        ("hidden_layer_blend", "Hidden layer blend", _blend),
        ("system_prompt", "System prompt", str),
        ("think_block", "Think block", str),
        ("thinking_content", "Thinking content", str),
        ("long_prompt_mode", "Long prompt mode", str),
    ],
}
ALWAYS = {"shift"}


def fields(settings: dict, model_sha256: str = "") -> list[tuple[str, str]]:
    """The (field, value) pairs of an image's settings, in A1111's order."""
    out = [("Steps", str(settings["steps"]))]
    out += sampler_fields(settings["sampler"])
    out += [
        ("CFG scale", str(settings["guidance_scale"])),
        ("Seed", str(settings["seed"])),
        ("Size", f"{settings['width']}x{settings['height']}"),
    ]
    if model_sha256:
        out.append(("Model hash", model_sha256[:10]))
    out.append(("Model", settings["model"]))
    if settings.get("vae"):
        out.append(("VAE", settings["vae"]))
    family = settings.get("family", "sdxl")
    defaults = FAMILY_DEFAULTS.get(family, {})
    for key, name, text in FAMILY_FIELDS.get(family, []):
        value = settings.get(key)
        if key in settings and (key in ALWAYS or value != defaults.get(key)):
            if value is not None:
                out.append((name, text(value)))
    if settings.get("prediction_type") == "v_prediction":
        out.append(("Prediction type", "v_prediction"))
    if settings.get("dtype", "fp32") != "fp32":
        out.append(("Precision", settings["dtype"]))
    out.append(("Version", f"t2ibench {__version__}"))
    return out


def format_infotext(settings: dict, model_sha256: str = "") -> str:
    """The whole `parameters` text: prompt, negative prompt, then the fields."""
    line = ", ".join(f"{name}: {quote(value)}" for name, value in fields(settings, model_sha256))
    negative = settings.get("negative_prompt") or ""
    return f"{settings['prompt']}\nNegative prompt: {negative}\n{line}"
