"""Finished images on disk, as generation leaves them, without running a model."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

from PIL import Image


def png_bytes(colour=(200, 30, 30), size=(16, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def write_image(plan, job, settings=None, colour=(200, 30, 30), record=True) -> Path:
    """A PNG at the job's path and (unless `record` is false) its record, the record
    last, as Snakemake leaves a job's outputs (it touches them in that order)."""
    path = Path(plan.path(job))
    path.parent.mkdir(parents=True, exist_ok=True)
    png = png_bytes(colour)
    path.write_bytes(png)
    if record:
        made_with = plan.settings(job) if settings is None else settings
        done = {
            "settings": made_with,
            "png_bytes": len(png),
            "png_sha256": hashlib.sha256(png).hexdigest(),
        }
        path.with_suffix(".json").write_text(json.dumps(done))
    return path
