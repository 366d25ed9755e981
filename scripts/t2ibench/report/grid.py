"""A labelled grid image: prompts (rows) by model and cell (columns).

Each column shows image 0 of every prompt, so every column uses the same seed and the
columns are directly comparable. Missing images are drawn as an empty, marked tile.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from t2ibench.plan import Plan

LABEL_WIDTH = 260
HEADER_HEIGHT = 48
PADDING = 6


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def fit(image, size: int):
    """Scale to fit a size x size tile, keeping the aspect ratio.

    Small images are enlarged with nearest-neighbour, so pixels stay visible rather than
    blurred; large ones are reduced with Lanczos.
    """
    from PIL import Image

    scale = size / max(image.size)
    new_size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    method = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS
    return image.resize(new_size, method)


def make_grid(
    rows: list[str], columns: list[str], tiles: dict[tuple[int, int], str | None], cell_size: int
):
    """Draw the grid; `tiles[(row, col)]` is an image path or None for a missing image."""
    from PIL import Image, ImageDraw

    width = LABEL_WIDTH + len(columns) * (cell_size + PADDING) + PADDING
    height = HEADER_HEIGHT + len(rows) * (cell_size + PADDING) + PADDING
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = _font(14)
    chars = max(8, cell_size // 8)
    for c, label in enumerate(columns):
        x = LABEL_WIDTH + PADDING + c * (cell_size + PADDING)
        draw.multiline_text(
            (x, 6), "\n".join(textwrap.wrap(label, chars)[:2]), fill="black", font=font
        )
    lines = max(1, cell_size // 18)
    for r, label in enumerate(rows):
        y = HEADER_HEIGHT + PADDING + r * (cell_size + PADDING)
        wrapped = textwrap.wrap(label, 32)
        if len(wrapped) > lines:
            wrapped = wrapped[: lines - 1] + [wrapped[lines - 1][:29] + "..."]
        draw.multiline_text((PADDING, y), "\n".join(wrapped), fill="black", font=font)
        for c in range(len(columns)):
            x = LABEL_WIDTH + PADDING + c * (cell_size + PADDING)
            path = tiles.get((r, c))
            if path and Path(path).exists():
                with Image.open(path) as img:
                    tile = fit(img.convert("RGB"), cell_size)
                canvas.paste(
                    tile, (x + (cell_size - tile.width) // 2, y + (cell_size - tile.height) // 2)
                )
            else:
                draw.rectangle([x, y, x + cell_size, y + cell_size], outline="grey")
                draw.text((x + 8, y + 8), "missing", fill="grey", font=font)
    return canvas


def experiment_grid(plan: Plan, experiment: str, cell_size: int, output: str) -> None:
    from t2ibench.io import atomic_write

    exp = plan.experiments[experiment]
    columns = [(m, c.name) for m in exp.models for c in exp.cells]
    single_cell = len(exp.cells) == 1
    labels = [m if single_cell else f"{m} / {c}" for m, c in columns]
    rows = [f"{p.id}: {p.text}" for p in exp.prompts]
    row_of = {p.index: r for r, p in enumerate(exp.prompts)}
    tiles = {}
    for job in plan.jobs:
        if job.experiment == experiment and job.image_index == 0:
            tiles[(row_of[job.prompt_index], columns.index((job.model, job.cell)))] = plan.path(job)
    canvas = make_grid(rows, labels, tiles, cell_size)
    atomic_write(output, lambda tmp: canvas.save(tmp, format="PNG"))
