"""Images made in batches: the generation key ``batch_size``.

A batch is made in one pipeline call: images whose settings are alike but for prompt
and seed (one cell of one model), each with its own seeded generator. In a batch of a
given size, an image's pixels do not depend on what the other rows hold or where it
sits (tests/test_batching.py), but they do depend on the size (a batch of 4 and a batch
of 1 differ by about 1e-6 before rounding to 8 bits). So ``batch_size`` is one of the
image's settings when it is above 1 (its provenance, and what a change remakes), and an
image made again alone (a gap fill) is made in a batch of that size, the rest padded
with copies of it, so it comes out as it was first made.

Batches are made by the jobs that make several images (``images_per_job``, t2ibench.
chunks); a sampler that draws its noise from one seed per scheduler (DPM++ SDE) and a
family that makes one image at a time (a family's `batches`) are refused in one line.

Light on purpose (no torch): the plan checks it.
"""

from __future__ import annotations

import json

from t2ibench.errors import InputError

KEY = "batch_size"
# What differs between the rows of one batch.
ROW_KEYS = ("prompt", "prompt_id", "seed")
# Samplers whose scheduler holds one noise seed (t2ibench.samplers.make_scheduler).
ONE_SEED_SAMPLERS = ("dpmpp_sde", "dpmpp_sde_karras")


def size_of(settings: dict) -> int:
    return int(settings.get(KEY, 1))


def settings_of(gen: dict) -> dict:
    """batch_size in an image's settings only above 1 (images made one at a time keep
    the settings they had)."""
    size = int(gen.get(KEY, 1) or 1)
    return {KEY: size} if size > 1 else {}


def shared(settings: dict) -> str:
    """What the rows of one batch have in common."""
    return json.dumps({k: v for k, v in settings.items() if k not in ROW_KEYS}, sort_keys=True)


def batches(items: list, settings_of_item) -> list[list]:
    """`items` in batches: runs of items alike but for prompt and seed, at most each
    one's batch_size long, in order."""
    out: list[list] = []
    key = None
    for item in items:
        settings = settings_of_item(item)
        this = shared(settings)
        if out and this == key and len(out[-1]) < size_of(settings):
            out[-1].append(item)
        else:
            out.append([item])
            key = this
    return out


def padded(rows: list[dict]) -> list[dict]:
    """A batch's settings filled up to its size with copies of its last row."""
    size = size_of(rows[0])
    return rows + [rows[-1]] * (size - len(rows))


def check(plan) -> None:
    """One line for a batch_size this run cannot use."""
    from t2ibench.models import families

    per_job = plan.config["images_per_job"]
    for name, exp in plan.experiments.items():
        for cell in exp.cells:
            gen = plan.cell_settings(name, cell.name)
            size = int(gen.get(KEY, 1) or 1)
            if size == 1:
                continue
            where = f"experiment '{name}', cell '{cell.name}': key 'batch_size'"
            if size > per_job:
                raise InputError(
                    f"{where}: {size}, but images_per_job is {per_job}; a batch is made by "
                    f"one job, so images_per_job must be at least {size} (run with --config "
                    f"images_per_job={max(size, 16)}), or set batch_size: 1"
                )
            for model in exp.models:
                family = families.get(plan.models[model].family)
                if not family.batches:
                    raise InputError(
                        f"{where}: {size}, but {family.label} images are made one at a "
                        f"time (model '{model}'); set batch_size: 1"
                    )
                sampler = family.sampler(gen)
                if sampler in ONE_SEED_SAMPLERS:
                    raise InputError(
                        f"{where}: {size}, but sampler '{sampler}' draws its noise from one "
                        "seed per call, so the images of a batch would not be their seeds'; "
                        "use another sampler or batch_size: 1"
                    )
