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
from t2ibench.models import families
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
    # The family's own settings (t2ibench.models.families): each family names its fields.
    out += families.get(settings.get("family", "sdxl")).infotext_fields(settings)
    if settings.get("loras"):  # A1111's field: each LoRA's name and short (addnet) hash
        from t2ibench.lora import short_hash

        hashes = ", ".join(
            f"{lo['name']}: {short_hash(lo['file'], lo['sha256'])}" for lo in settings["loras"]
        )
        out.append(("Lora hashes", hashes))
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
    # A1111 users write LoRAs into the prompt as <lora:name:weight>; readers expect them.
    tags = "".join(f" <lora:{lo['name']}:{lo['weight']:g}>" for lo in settings.get("loras", []))
    return f"{settings['prompt']}{tags}\nNegative prompt: {negative}\n{line}"
