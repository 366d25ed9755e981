"""Labelled image grids of an experiment's results: any two axes, paged above a size cap.

Axes: ``prompts``, ``values`` (the experiment's cells, labelled by their variable values;
the baseline's single cell is ``default``), ``cells`` (the same cells labelled by name),
``models`` and ``seeds``. A grid shows two axes of different dimensions (``values`` and
``cells`` are one dimension). Filters restrict any dimension to chosen keys, in the
order given.

Hidden axes: a dimension not shown is fixed to one key. When it has several candidates
(all of the experiment's, or the filtered ones) the grid shows the first and says so in
a caption line above the grid ("model: a (first of 3; ...)").

The results are read by t2ibench.report.results; labels, wrapping, paging and drawing
are t2ibench.report.grid_render's. Missing images (not in results.csv, or the file is
gone or unreadable) are drawn as a grey tile with a cross and the word "missing".
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from t2ibench.errors import InputError
from t2ibench.report.grid_render import MAX_SIDE, Grid, count_pages, page_paths, write_grid
from t2ibench.report.results import Results, known_list, load_results, tile_caption

AXES = ("prompts", "values", "models", "cells", "seeds")
AXIS_DIMENSION = {
    "prompts": "prompt",
    "values": "cell",
    "cells": "cell",
    "models": "model",
    "seeds": "seed",
}
DIMENSIONS = ("prompt", "model", "cell", "seed")
OPTION = {"prompt": "--prompt", "cell": "--values", "model": "--model", "seed": "--seed"}


def _fixed_dimensions(results: Results, shown: set[str], filters: dict) -> tuple[dict, list]:
    """Fix each dimension not shown to its first candidate; caption lines saying which."""
    fixed, notes = {}, []
    for dim in DIMENSIONS:
        if dim in shown:
            continue
        candidates = filters.get(dim) or results.keys(dim)
        if not candidates:
            raise InputError(f"experiment '{results.name}' has no {dim}s")
        fixed[dim] = candidates[0]
        note = f"{dim}: {results.short_label(dim, candidates[0])}"
        if len(candidates) > 1:
            note += f" (first of {len(candidates)}; pick one with compare {OPTION[dim]})"
        notes.append(note)
    return fixed, notes


def check_axes(rows: str, cols: str) -> None:
    for axis in (rows, cols):
        if axis not in AXES:
            raise InputError(f"unknown axis '{axis}'; axes: {', '.join(AXES)}")
    if AXIS_DIMENSION[rows] == AXIS_DIMENSION[cols]:
        raise InputError(f"rows '{rows}' and columns '{cols}' are the same dimension")


def default_columns(results: Results) -> str:
    """`values`, or `models` when there is one cell and several models (the baseline)."""
    if len(results.keys("cell")) == 1 and len(results.keys("model")) > 1:
        return "models"
    return "values"


def axis_grid(
    results: Results,
    rows: str = "prompts",
    cols: str | None = None,
    filters: dict | None = None,
    metric: str | None = None,
) -> Grid:
    """The grid of two axes: keys of each shown axis (filtered), the others fixed."""
    cols = cols or default_columns(results)
    check_axes(rows, cols)
    filters = filters or {}
    if metric is not None and metric not in results.metrics:
        raise InputError(
            f"unknown metric '{metric}' for experiment '{results.name}'; "
            f"metrics: {known_list(results.metrics)}"
        )
    row_dim, col_dim = AXIS_DIMENSION[rows], AXIS_DIMENSION[cols]
    row_keys = filters.get(row_dim) or results.keys(row_dim)
    col_keys = filters.get(col_dim) or results.keys(col_dim)
    fixed, notes = _fixed_dimensions(results, {row_dim, col_dim}, filters)
    title = f"{results.name}: {rows} (rows) x {cols} (columns)"
    if metric:
        title += f"; under each image: {metric}"
    grid = Grid(
        [results.label(rows, k) for k in row_keys],
        [results.label(cols, k) for k in col_keys],
        notes=[title, *notes],
    )
    for (r, row_key), (c, col_key) in itertools.product(enumerate(row_keys), enumerate(col_keys)):
        key = dict(fixed, **{row_dim: row_key, col_dim: col_key})
        found = results.row(key["prompt"], key["cell"], key["model"], key["seed"])
        grid.tiles[(r, c)] = results.image(found)
        if metric:
            grid.captions[(r, c)] = tile_caption(metric, found, grid.tiles[(r, c)])
    return grid


_PAGE_NAME = re.compile(r"^grid(-models)?-p\d+\.png$")


def experiment_grid_pages(
    results_dir: Path,
    experiment: str,
    out_dir: Path,
    cell_size: int = 256,
    metric: str | None = "clip_score",
    max_side: int = MAX_SIDE,
) -> list[Path]:
    """The workflow's grids, from results on disk, as numbered pages in `out_dir`.

    `grid-p1.png`, ...: prompts x values (the baseline: prompts x models), first seed;
    `grid-models-p1.png`, ...: models x values, first prompt and seed, when the
    experiment has several models and several cells. `metric` is drawn under each
    image when results.csv has it (a caption line says when it does not). Earlier
    pages of these names that this run does not write are removed. Returns the paths.
    """
    results = load_results(Path(results_dir), experiment, require_images=False)
    out_dir = Path(out_dir)
    if metric is not None and metric not in results.metrics:
        note, metric = f"{metric}: not in results.csv", None
    else:
        note = None
    figures = [("grid", axis_grid(results, "prompts", None, {}, metric))]
    if len(results.keys("model")) > 1 and len(results.keys("cell")) > 1:
        figures.append(("grid-models", axis_grid(results, "models", "values", {}, metric)))
    written = []
    for stem, grid in figures:
        if note:
            grid.notes.append(note)
        if not results.rows:
            grid.notes.append("no images yet: results.csv is missing or empty")
        paths = page_paths(out_dir / f"{stem}.png", count_pages(grid, cell_size, max_side), True)
        written += write_grid(grid, paths, cell_size, max_side)
    if out_dir.is_dir():
        for stale in sorted(out_dir.iterdir()):
            if _PAGE_NAME.match(stale.name) and stale not in written:
                stale.unlink()
    return written
