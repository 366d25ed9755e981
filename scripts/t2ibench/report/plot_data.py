"""What the plots of an experiment show, read from its summary.csv and metadata.json:
the lines of `<metric>_vs_<axis>`, the bars of `<metric>_bars` and the points of
`clip_score_vs_diversity` (t2ibench.report.plots draws them). No matplotlib here."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from t2ibench.report.results import known_metrics

# ---------------------------------------------------------------- inputs


def summary_frame(rows: list[dict]):
    """summary.csv's rows (`results.read_rows`) as a DataFrame of text; empty if none."""
    import pandas as pd

    return pd.DataFrame(rows, dtype=str)


def metric_columns(summary) -> list[str]:
    """Metrics with mean and CI columns and at least one finite mean, in a stable order."""
    found = [
        col[: -len("_ci_low")]
        for col in summary.columns
        if col.endswith("_ci_low")
        and f"{col[: -len('_ci_low')]}_mean" in summary.columns
        and f"{col[: -len('_ci_low')]}_ci_high" in summary.columns
    ]
    found = [m for m in found if np.isfinite(_numbers(summary[f"{m}_mean"])).any()]
    known = known_metrics()
    return [m for m in known if m in found] + sorted(m for m in found if m not in known)


def _numbers(column) -> np.ndarray:
    """A text column as floats (blank or unparsable -> NaN)."""
    import pandas as pd

    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)


def model_order(summary, metadata: dict) -> list[str]:
    """Models in the metadata's order, then any others in summary order."""
    listed = [m["name"] if isinstance(m, dict) else str(m) for m in metadata.get("models", [])]
    present = list(dict.fromkeys(summary["model"]))
    return [m for m in listed if m in present] + [m for m in present if m not in listed]


def cell_order(summary, metadata: dict) -> list[str]:
    """Cells in the metadata's order, then any others in summary order."""
    listed = list(metadata.get("cells", {}))
    present = list(dict.fromkeys(summary["cell"]))
    return [c for c in listed if c in present] + [c for c in present if c not in listed]


def cell_value(summary_row, metadata: dict, axis: str) -> str | None:
    """A cell's value on an axis: the metadata's label, else the summary's column."""
    values = metadata.get("cells", {}).get(summary_row["cell"], {}).get("values")
    if values is not None:
        value = values.get(axis)
        return None if value is None else str(value)
    value = summary_row.get(axis, "")
    return value if value != "" else None


def as_number(text: str) -> float | None:
    """The value as a finite float, or None for names (`none`, `photographer`, ...)."""
    try:
        number = float(text)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def is_numeric(values: list[str]) -> bool:
    """True when every value of the axis is a finite number."""
    return bool(values) and all(as_number(v) is not None for v in values)


# ---------------------------------------------------------------- plot data


@dataclass
class Series:
    """One line: a model (and a combination of the other axes' values) along an axis."""

    label: str
    model: str
    group: str
    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    cells: list[str]


@dataclass
class LineData:
    """What `<metric>_vs_<axis>` draws; `ticks` are the axis's values in x order."""

    metric: str
    axis: str
    numeric: bool
    ticks: list[str]
    tick_positions: list[float]
    series: list[Series]
    reference_cell: str | None
    models: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    label: str = ""  # the y-axis label (plan_figures sets it from the run's metric facts)


def _row_stats(row, metric: str) -> tuple[float, float, float]:
    """(mean, ci_low, ci_high); NaN where blank or not a number."""
    out = []
    for stat in ("mean", "ci_low", "ci_high"):
        number = as_number(row.get(f"{metric}_{stat}", ""))
        out.append(np.nan if number is None else number)
    return tuple(out)


def _axis_values(summary, metadata: dict, axis: str) -> list[str]:
    """The axis's values in the experiment's order (metadata), then any others."""
    listed = [str(v) for v in metadata.get("variables", {}).get(axis, [])]
    present = [
        v for _, row in summary.iterrows() if (v := cell_value(row, metadata, axis)) is not None
    ]
    return listed + [v for v in dict.fromkeys(present) if v not in listed]


def line_data(summary, metadata: dict, metric: str, axis: str) -> LineData | None:
    """The lines of `<metric>_vs_<axis>`, or None when fewer than two x values have data.

    x positions are the numbers themselves (numeric axis) or the index in the
    experiment's order (categorical axis); points with a NaN mean are left out.
    """
    axes = list(metadata.get("variables", {}))
    others = [a for a in axes if a != axis]
    values = _axis_values(summary, metadata, axis)
    numeric = is_numeric(values)
    if numeric:
        ordered = sorted(values, key=lambda v: as_number(v))
        position = {v: as_number(v) for v in ordered}
    else:
        ordered = values
        position = {v: float(i) for i, v in enumerate(ordered)}
    points: dict[tuple[str, str], list] = {}
    for _, row in summary.iterrows():
        value = cell_value(row, metadata, axis)
        mean, low, high = _row_stats(row, metric)
        if value is None or not np.isfinite(mean):
            continue
        group = ", ".join(f"{o}={cell_value(row, metadata, o) or '–'}" for o in others)
        points.setdefault((row["model"], group), []).append(
            (position[value], mean, low, high, row["cell"])
        )
    used = {p[0] for pts in points.values() for p in pts}
    if len(used) < 2:
        return None
    models = model_order(summary, metadata)
    groups = _group_order(summary, metadata, others)
    series = []
    for model in models:
        for group in groups:
            pts = sorted(points.get((model, group), []), key=lambda p: p[0])
            if not pts:
                continue
            x, mean, low, high, cells = (list(c) for c in zip(*pts, strict=True))
            label = model if not group else (group if len(models) == 1 else f"{model}: {group}")
            series.append(
                Series(
                    label, model, group, *(np.array(a, float) for a in (x, mean, low, high)), cells
                )
            )
    ticks = [v for v in ordered if position[v] in used]
    return LineData(
        metric=metric,
        axis=axis,
        numeric=numeric,
        ticks=ticks,
        tick_positions=[position[v] for v in ticks],
        series=series,
        reference_cell=metadata.get("reference_cell"),
        models=[m for m in models if any(s.model == m for s in series)],
        groups=[g for g in groups if any(s.group == g for s in series)],
    )


def _group_order(summary, metadata: dict, others: list[str]) -> list[str]:
    """Combinations of the other axes' values, in the cells' order."""
    groups = []
    for cell in cell_order(summary, metadata):
        row = summary[summary["cell"] == cell].iloc[0]
        groups.append(", ".join(f"{o}={cell_value(row, metadata, o) or '–'}" for o in others))
    return list(dict.fromkeys(groups))


@dataclass
class BarData:
    """What `<metric>_bars` draws: `mean[g, m]` for group g (x) and member m (bar)."""

    metric: str
    groups: list[str]
    members: list[str]
    by_cell: bool
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    reference_cell: str | None
    label: str = ""  # the y-axis label (plan_figures sets it from the run's metric facts)


def bar_data(summary, metadata: dict, metric: str) -> BarData | None:
    """Bars per model (one cell), or per cell grouped by model (several cells)."""
    models = model_order(summary, metadata)
    cells = cell_order(summary, metadata)
    by_cell = len(cells) > 1
    groups, members = (cells, models) if by_cell else (models, cells)
    shape = (len(groups), len(members))
    mean, low, high = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    for _, row in summary.iterrows():
        g, m = (row["cell"], row["model"]) if by_cell else (row["model"], row["cell"])
        i, j = groups.index(g), members.index(m)
        mean[i, j], low[i, j], high[i, j] = _row_stats(row, metric)
    if not np.isfinite(mean).any():
        return None
    return BarData(
        metric, groups, members, by_cell, mean, low, high, metadata.get("reference_cell")
    )


@dataclass
class ScatterPoint:
    """One (model, cell): CLIP score (x) and a diversity (y), each with its CI."""

    model: str
    cell: str
    label: str
    x: float
    x_low: float
    x_high: float
    y: float
    y_low: float
    y_high: float
    reference: bool


def scatter_data(summary, metadata: dict, y_metric: str) -> list[ScatterPoint]:
    """Points with a finite CLIP score mean and `y_metric` mean, in model/cell order."""
    models = model_order(summary, metadata)
    cells = cell_order(summary, metadata)
    reference = metadata.get("reference_cell") if len(cells) > 1 else None
    rows = sorted(
        (row for _, row in summary.iterrows()),
        key=lambda r: (models.index(r["model"]), cells.index(r["cell"])),
    )
    points = []
    for row in rows:
        x = _row_stats(row, "clip_score")
        y = _row_stats(row, y_metric)
        if not (np.isfinite(x[0]) and np.isfinite(y[0])):
            continue
        # The colour (legend) tells the model, so several cells are labelled by cell.
        label = _shorten(row["model"] if len(cells) == 1 else row["cell"])
        points.append(
            ScatterPoint(row["model"], row["cell"], label, *x, *y, row["cell"] == reference)
        )
    return points


def _shorten(text: str, width: int = 28) -> str:
    """A point label cut to `width` characters."""
    return text if len(text) <= width else text[: width - 1] + "…"
