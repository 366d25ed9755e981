"""Results on disk: the one reader of a results folder, for the viewer, grids, compare
and plots.

A results folder (`results/`, or the `results_dir` of the config) holds one folder per
experiment, `<name>/`, with its metadata.json, results.csv, summary.csv,
comparisons.csv and images (`<model>/<cell>/<file>.png`). The results of a custom
prompt (`--config prompt=...`) are experiments too, in `prompt-<hash>/<name>/`; their
name here is that path, `prompt-1a2b3c4d/baseline`. Besides its experiments a results
folder holds `report/` (the viewer) and `quick/`: a quick run's tables, plots and pages,
`quick/<name>/`. `quick/` is a results folder of its own, with its own viewer in
`quick/report/`, so its experiments are found by reading `<results>/quick`, never
`<results>`; their images are the full run's, in `<results>/<name>/`.

results.csv's image_path is relative to the working directory of the run that wrote it;
`find_image` finds the file when the folder has moved or the working directory is
another.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from t2ibench.errors import InputError
from t2ibench.experiments import RESULTS_FOLDERS
from t2ibench.metrics import registry

# A prompt may be longer than the csv module's default field limit (128 KiB); pandas,
# which writes the tables, has none.
csv.field_size_limit(2**31 - 1)

QUICK = "quick"
# Columns shown as text in the viewer's tables even when they look like numbers.
TEXT_COLUMNS = {
    "experiment", "model", "cell", "reference", "comparison", "metric", "method",
    "warning", "extractor", "against", "variable_name", "prompt_id", "prompt_text",
    "image_path", "image_flag",
}  # fmt: skip


# ---------------------------------------------------------------- experiments


def find_experiments(results_dir: Path) -> list[str]:
    """The experiments of a results folder, sorted: `<name>` and `prompt-<hash>/<name>`
    for each such folder holding a metadata.json. `report/` and `quick/` are never
    experiments (`quick/` is a results folder of its own). [] when there is no folder."""
    results_dir = Path(results_dir)
    found = [*results_dir.glob("*/metadata.json"), *results_dir.glob("prompt-*/*/metadata.json")]
    names = {p.parent.relative_to(results_dir).as_posix() for p in found if p.is_file()}
    return sorted(n for n in names if not set(n.split("/")) & RESULTS_FOLDERS)


def known_list(items, limit: int = 12) -> str:
    """`a, b, c` or, past `limit` items, `a, b, ... (40 in all)`."""
    items = [str(i) for i in items]
    if len(items) <= limit:
        return ", ".join(items) or "none"
    return ", ".join(items[:limit]) + f", ... ({len(items)} in all)"


def read_metadata(path: Path) -> dict:
    """metadata.json as a dict; a one-line InputError naming the file when it cannot be
    read or is not a JSON object."""
    path = Path(path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        why = " ".join(str(err).split())
        raise InputError(f"{path}: cannot read the experiment's metadata ({why})") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: cannot read the experiment's metadata (not a JSON object)")
    return meta


# ---------------------------------------------------------------- tables


def number(text):
    """A CSV field as int or float when it is one (NaN and empty as None), else the text."""
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return text
    if math.isnan(value):
        return None
    if math.isinf(value):
        return text
    if value.is_integer() and re.fullmatch(r"[+-]?\d+", text.strip()):
        return int(value)
    return value


def read_rows(path: Path) -> list[dict]:
    """A CSV file as dicts of strings (a missing field is ""), skipping empty rows; a
    UTF-8 byte order mark is dropped. [] when the file is missing."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return [row for row in csv.DictReader(handle, restval="") if any(row.values())]


def read_table(path: Path) -> dict | None:
    """A CSV table for the viewer: {columns, rows}, numbers as numbers (TEXT_COLUMNS
    stay text), empty rows skipped; None when the file is missing."""
    path = Path(path)
    if not path.is_file():
        return None
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        columns = next(reader, [])
        rows = [
            [
                value if name in TEXT_COLUMNS else number(value)
                for name, value in zip(columns, row, strict=False)
            ]
            for row in reader
            if any(row)
        ]
    return {"columns": columns, "rows": rows}


def known_metrics() -> list[str]:
    """The metric columns results.csv may hold, in their order: the registered metrics'
    per-image, then per-prompt columns (t2ibench.metrics.registry)."""
    return registry.columns("image") + registry.columns("prompt")


def metric_names(summary: dict | None, columns: list[str]) -> list[str]:
    """The metrics of an experiment: summary.csv's `<metric>_mean` columns (a table from
    `read_table`), else the known metrics, that results.csv (`columns`) has."""
    names = []
    if summary:
        names = [c[: -len("_mean")] for c in summary["columns"] if c.endswith("_mean")]
    return [name for name in names or known_metrics() if name in columns]


def format_metric(name: str, value) -> str:
    """`clip_score 23.41`; values below 1 keep four decimals; an empty value is n/a."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return f"{name} n/a"
    if math.isnan(value):
        return f"{name} n/a"
    return f"{name} {value:.2f}" if abs(value) >= 1 or not value else f"{name} {value:.4f}"


def tile_caption(metric: str, row: dict | None, path: Path | None) -> str:
    """What goes under a tile: the metric of its results row, or why the row's value is
    not this file's: "missing", "unreadable" or "changed since it was scored" (the PNG
    is not the one its record describes, the one the tables scored)."""
    problem = image_problem(path)
    return problem if problem else format_metric(metric, (row or {}).get(metric))


def image_problem(path: Path | None) -> str:
    """Why an image file is not the one its scores are of, or "" (a readable image that
    is the one its record, if any, describes)."""
    import json

    from t2ibench.freshness import decodes, file_sha256

    if path is None:
        return "missing"
    if not decodes(path):
        return "unreadable"
    try:
        recorded = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))["png_sha256"]
    except (OSError, ValueError, KeyError, TypeError):  # no record: made elsewhere
        return ""
    return "changed since it was scored" if recorded != file_sha256(path) else ""


# ---------------------------------------------------------------- images


def image_folders(results_dir: Path, experiment: str) -> list[Path]:
    """Where an experiment's images are: its folder, and for a quick results folder
    (`<results>/quick`) the full run's folder of the same name, which holds them."""
    results_dir = Path(results_dir)
    folders = [results_dir / experiment]
    if results_dir.name == QUICK:
        folders.append(results_dir.parent / experiment)
    return folders


def find_image(
    image_path: str | None, results_dir: Path, experiment: str, row: dict | None = None
) -> Path | None:
    """The file behind results.csv's image_path (relative to the run's working
    directory), or None when no candidate is a file.

    Tried in order: the path as given (absolute, or from the current directory); from
    the results folder's parent; the part of the path after the experiment folder's
    name (any of its occurrences, first to last) under the experiment's folder; and
    `<experiment>/<model>/<cell>/<file name>` from the row. For a quick results folder
    the last two look in the full run's experiment folder too (`image_folders`).
    """
    if not image_path:
        return None
    path, row = Path(image_path), row or {}
    results_dir = Path(results_dir)
    folders = image_folders(results_dir, experiment)
    leaf = PurePosixPath(experiment).name
    candidates = [path, results_dir.parent / path]
    for folder in folders:
        for i, part in enumerate(path.parts):
            if part == leaf:
                candidates.append(folder.joinpath(*path.parts[i + 1 :]))
    for folder in folders:
        candidates.append(folder / row.get("model", "") / row.get("cell", "") / path.name)
    return next((c for c in dict.fromkeys(candidates) if c.is_file()), None)


# ---------------------------------------------------------------- one experiment


@dataclass
class Results:
    """An experiment's results.csv and metadata.json, indexed by dimension.

    `name` is the experiment's name in its results folder (`sweep`,
    `prompt-1a2b3c4d/baseline`); `directory` is `<results folder>/<name>`.
    """

    name: str
    directory: Path
    metadata: dict
    rows: list[dict]

    def __post_init__(self):
        self._index = {}
        for row in self.rows:
            key = (int(row["prompt_index"]), row["cell"], row["model"], int(row["seed"]))
            self._index.setdefault(key, row)

    @property
    def results_dir(self) -> Path:
        """The results folder the experiment was read from."""
        return self.directory.parents[len(PurePosixPath(self.name).parts) - 1]

    @property
    def metrics(self) -> list[str]:
        """Metric (and time) columns of results.csv with at least one value."""
        # What a grid or compare may print under an image: metrics and generation time.
        values = [*known_metrics(), "generation_seconds"]
        return [m for m in values if any(row.get(m) for row in self.rows)]

    @functools.cached_property
    def prompts(self) -> dict[int, dict]:
        """Prompt index -> {"id", "text"}: metadata's, then any others in results.csv."""
        found = {int(p["index"]): p for p in self.metadata.get("prompts", [])}
        for row in self.rows:
            found.setdefault(
                int(row["prompt_index"]), {"id": row["prompt_id"], "text": row["prompt_text"]}
            )
        return found

    @functools.cached_property
    def cells(self) -> dict[str, dict]:
        """Cell name -> {"values", "reference"}, in the order of the variables' values."""
        cells = dict(self.metadata.get("cells", {}))
        for row in self.rows:
            cells.setdefault(row["cell"], {"values": {}})
        variables = self.metadata.get("variables", {})

        def order(name):
            values = cells[name].get("values", {})
            ranks = []
            for axis, options in variables.items():
                options = [str(o) for o in options]
                value = str(values.get(axis))
                ranks.append(options.index(value) if value in options else len(options))
            return (ranks, name)

        return {name: cells[name] for name in sorted(cells, key=order)}

    def keys(self, dimension: str) -> list:
        """Every key of a dimension, in the experiment's order."""
        if dimension == "prompt":
            return sorted(self.prompts)
        if dimension == "cell":
            return list(self.cells)
        if dimension == "model":
            names = [m["name"] for m in self.metadata.get("models", [])]
            return list(dict.fromkeys(names + [row["model"] for row in self.rows]))
        seeds = [int(s) for s in self.metadata.get("seeds", [])]
        return list(dict.fromkeys(seeds + sorted(int(row["seed"]) for row in self.rows)))

    @property
    def reference_cell(self) -> str | None:
        return self.metadata.get("reference_cell")

    def cell_values(self, cell: str) -> str:
        """`shift=1.0, steps=4`; the cell's name when it has no values (the baseline)."""
        values = self.cells.get(cell, {}).get("values") or {}
        return ", ".join(f"{k}={v}" for k, v in values.items()) or cell

    def label(self, axis: str, key) -> str:
        """A key as shown on an axis of the grid."""
        if axis == "prompts":
            prompt = self.prompts[key]
            return f"{prompt['id']}: {prompt['text']}"
        if axis in ("values", "cells"):
            text = self.cell_values(key) if axis == "values" else key
            if len(self.cells) > 1 and key == self.reference_cell:
                text += " (reference)"
            return text
        if axis == "seeds":
            return f"seed {key}"
        return str(key)

    def short_label(self, dimension: str, key) -> str:
        """A key named in a caption line."""
        if dimension == "prompt":
            return f"{self.prompts[key]['id']} (#{key})"
        if dimension == "cell":
            values = self.cell_values(key)
            return key if values == key else f"{key} ({values})"
        return str(key)

    def row(self, prompt: int, cell: str, model: str, seed: int) -> dict | None:
        return self._index.get((prompt, cell, model, seed))

    def image(self, row: dict | None) -> Path | None:
        """The image file of a results row (see `find_image`), or None."""
        if not row:
            return None
        return find_image(row.get("image_path"), self.results_dir, self.name, row)


def load_results(results_dir: Path, experiment: str, require_images: bool = True) -> Results:
    """Read `<results_dir>/<experiment>/metadata.json` and results.csv.

    An experiment that `find_experiments` does not list, and (with `require_images`) no
    images yet, are InputErrors.
    """
    results_dir, experiment = Path(results_dir), PurePosixPath(experiment).as_posix()
    if not results_dir.is_dir():
        raise InputError(f"results directory '{results_dir}' not found; run snakemake first")
    known = find_experiments(results_dir)
    if experiment not in known:
        if not known:
            raise InputError(f"no experiments in '{results_dir}' yet (no */metadata.json)")
        hint = ""
        if PurePosixPath(experiment).parts[:1] == (QUICK,):
            hint = f" (a quick run's results are their own folder: '{results_dir / QUICK}')"
        raise InputError(
            f"unknown experiment '{experiment}' in '{results_dir}'; known: "
            f"{known_list(known)}{hint}"
        )
    directory = results_dir / experiment
    metadata = read_metadata(directory / "metadata.json")
    table = directory / "results.csv"
    rows = read_rows(table)
    if require_images and not rows:
        why = "is missing" if not table.exists() else "has no rows"
        raise InputError(f"experiment '{experiment}' has no images yet: {table} {why}")
    try:
        return Results(experiment, directory, metadata, rows)
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"{table}: unreadable row (column {err}); rerun the workflow") from None
