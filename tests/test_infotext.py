"""PNG infotext: every setting that shapes an image reads back through A1111's grammar."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from t2ibench.config import validate_config
from t2ibench.experiments import catalogue
from t2ibench.infotext import format_infotext
from t2ibench.plan import build_plan
from t2ibench.writer import encode_png

from a1111_infotext import parse
from conftest import with_changes

MODELS = [
    {"name": "tiny-sdxl", "source": "builtin:tiny-sdxl"},
    {"name": "tiny-sdxl-vpred", "source": "builtin:tiny-sdxl-vpred"},
    {"name": "tiny-zimage", "source": "builtin:tiny-zimage"},
    {"name": "tiny-sd15", "source": "builtin:tiny-sd15"},
    {"name": "tiny-sd2-vpred", "source": "builtin:tiny-sd2-vpred"},
    {"name": "tiny-flux-dev", "source": "builtin:tiny-flux-dev"},
    {"name": "tiny-chroma", "source": "builtin:tiny-chroma"},
    {"name": "tiny-sd3", "source": "builtin:tiny-sd3"},
]
UNET_FAMILIES = ("sdxl", "sd15")
# A1111's sampler names (1.9 and later: the Karras variants as a schedule type).
A1111_SAMPLERS = {
    ("Euler a", None): "euler_a",
    ("Euler", None): "euler",
    ("DPM++ 2M", None): "dpmpp_2m",
    ("DPM++ 2M", "Karras"): "dpmpp_2m_karras",
    ("DPM++ 2M SDE", None): "dpmpp_2m_sde",
    ("DPM++ 2M SDE", "Karras"): "dpmpp_2m_sde_karras",
    ("DPM++ SDE", None): "dpmpp_sde",
    ("DPM++ SDE", "Karras"): "dpmpp_sde_karras",
    ("DDIM", None): "ddim",
    ("UniPC", None): "unipc",
    ("Heun", None): "heun",
    ("LMS", None): "lms",
    ("LMS", "Karras"): "lms_karras",
    ("Euler FlowMatch", None): "flow_match_euler",
    ("Default", None): "scheduler",  # a generic pipeline's own scheduler
}


def read_back(text: str, family: str) -> dict:
    """The settings an A1111-style reader gets from `text` (the family's defaults for
    fields not written)."""
    f = parse(text)
    settings = {
        "prompt": f["Prompt"],
        "negative_prompt": f["Negative prompt"],
        "steps": int(f["Steps"]),
        "sampler": A1111_SAMPLERS[(f["Sampler"], f.get("Schedule type"))],
        "guidance_scale": float(f["CFG scale"]),
        "seed": int(f["Seed"]),
        "width": int(f["Size-1"]),
        "height": int(f["Size-2"]),
        "model": f["Model"],
        "prediction_type": f.get(
            "Prediction type", "epsilon" if family in UNET_FAMILIES else "flow_matching"
        ),
        "dtype": f.get("Precision", "fp32"),
    }
    if family in UNET_FAMILIES:
        clip_skip = int(f["Clip skip"])  # A1111 counts one more than diffusers
        settings["clip_skip"] = None if clip_skip == 1 else clip_skip - 1
        settings["guidance_rescale"] = float(f.get("Guidance rescale", 0.0))
        settings["zero_terminal_snr"] = f.get("Noise Schedule") == "Zero Terminal SNR"
    elif family == "diffusers":
        pass  # no settings of its own
    elif family == "sd3":
        settings["t5"] = f.get("T5", "True") == "True"
        settings["max_sequence_length"] = int(f.get("Max sequence length", 256))
        settings["shift"] = float(f["Shift"]) if "Shift" in f else None
    elif family == "flux":  # Forge's field for the distilled guidance
        settings["guidance"] = float(f.get("Distilled CFG Scale", 3.5))
        settings["max_sequence_length"] = int(f.get("Max sequence length", 512))
        for key, field in [
            ("shift", "Shift"),
            ("base_shift", "Base shift"),
            ("max_shift", "Max shift"),
        ]:
            settings[key] = float(f[field]) if field in f else None
    else:
        blend = f.get("Hidden layer blend")
        settings.update(
            shift=float(f["Shift"]),
            hidden_layer=int(f.get("Hidden layer", -2)),
            hidden_layer_blend=(
                {int(k): v for k, v in json.loads(blend).items()} if blend else None
            ),
            system_prompt=f.get("System prompt"),
            think_block=f.get("Think block", "True") == "True",
            thinking_content=f.get("Thinking content"),
            long_prompt_mode=f.get("Long prompt mode", "interpolate"),
        )
    return settings


def catalogue_plan(base_config):
    names = ["baseline"] + [p.stem for p in catalogue()]
    config = with_changes(base_config, models=MODELS, experiments=names, max_images=100000)
    return build_plan(validate_config(config))


def first_image_of_each_cell(plan):
    seen, jobs = set(), []
    for job in plan.jobs:
        if (job.experiment, job.model, job.cell) not in seen:
            seen.add((job.experiment, job.model, job.cell))
            jobs.append(job)
    return jobs


def test_every_catalogue_cell_reads_back(base_config):
    plan = catalogue_plan(base_config)
    jobs = first_image_of_each_cell(plan)
    assert len({(j.experiment, j.cell) for j in jobs}) > 60
    for job in jobs:
        settings = plan.settings(job)
        text = format_infotext(settings, "0123456789abcdef")
        got = read_back(text, settings["family"])
        wanted = {k: settings[k] for k in got}
        assert got == wanted, f"{job.experiment}/{job.model}/{job.cell}: {text}"


def test_clip_skip_and_zimage_settings_are_written_as_readers_expect(base_config):
    plan = catalogue_plan(base_config)
    by_cell = {(j.experiment, j.model, j.cell): j for j in first_image_of_each_cell(plan)}
    text = format_infotext(plan.settings(by_cell["sdxl_clip_skip", "tiny-sdxl", "clip_skip-2"]))
    assert parse(text)["Clip skip"] == "3"  # diffusers' 2 is A1111's 3
    default = format_infotext(
        plan.settings(by_cell["sdxl_clip_skip", "tiny-sdxl", "clip_skip-none"])
    )
    assert "Clip skip" not in default and parse(default)["Clip skip"] == "1"
    karras = format_infotext(
        plan.settings(by_cell["sdxl_sampler", "tiny-sdxl", "sampler-dpmpp_2m_karras"])
    )
    assert "Sampler: DPM++ 2M, Schedule type: Karras" in karras
    painter = by_cell["system_prompt", "tiny-zimage", "system_prompt-painter"]
    fields = parse(format_infotext(plan.settings(painter)))
    assert fields["System prompt"].startswith("You are a fine-art painter.")
    assert fields["Shift"] == "3.0"
    layer = by_cell["hidden_layer", "tiny-zimage", "hidden_layer--4"]
    assert parse(format_infotext(plan.settings(layer)))["Hidden layer"] == "-4"


@pytest.mark.parametrize("negative", ["", "blurry, low quality: bad"])
def test_the_png_carries_the_text(base_config, negative):
    plan = build_plan(validate_config(with_changes(base_config)))
    settings = {**plan.settings(plan.jobs[0]), "negative_prompt": negative}
    png = encode_png(Image.new("RGB", (8, 8)), settings, "ab" * 32)
    with Image.open(io.BytesIO(png)) as image:
        fields = parse(image.text["parameters"])
    assert fields["Negative prompt"] == negative and fields["Model hash"] == "ab" * 5
    assert read_back(image.text["parameters"], "sdxl")["steps"] == settings["steps"]
