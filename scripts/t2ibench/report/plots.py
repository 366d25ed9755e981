"""Plots of one experiment's summary: metric against each variable, bars, CLIP vs diversity.

Every plot shows each metric's mean with its 95% CI over prompts (the
`M_ci_low` / `M_ci_high` columns of `summary.csv`) and is written as PNG and SVG:

- `<metric>_vs_<axis>`: the mean against the axis's value, the CI as a shaded band.
  Numeric axes (every value parses as a finite number) are a numeric x axis, sorted;
  other axes (named values, blends, `none`) are categories in the experiment's order.
  A one-axis sweep has one panel with one line per model. A grid (two or more axes) has
  one panel per model, and one line per combination of the other axes' values, so
  `clip_score_vs_shift` of a shift x steps grid has a line per `steps` value. The
  reference cell's point is a black star. Axes with fewer than two values are skipped.
- `<metric>_bars`: one bar per model (one cell), or per cell grouped with one bar per
  model (several cells; the reference cell's label says so), with CI error bars.
- `clip_score_vs_diversity`: CLIP score (x) against `lpips_diversity` and/or
  `clip_diversity` (y, one panel each), one labelled point per (model, cell), with CI
  whiskers both ways.

Plots whose data is absent (metric column missing or all NaN) are skipped. Output is
deterministic: the same inputs give byte-identical files (fixed SVG hash salt, no
dates or software versions in the metadata, matplotlib's default style whatever the
user's matplotlibrc says). Figures are made without pyplot, so none is kept alive.
"""

from __future__ import annotations

import functools
import re
import textwrap
import threading
from pathlib import Path

import numpy as np

from t2ibench.metrics import registry
from t2ibench.report.plot_data import (
    BarData,
    LineData,
    ScatterPoint,
    bar_data,
    line_data,
    metric_columns,
    scatter_data,
    summary_frame,
)
from t2ibench.report.results import read_metadata, read_rows

# Known metrics are plotted in their registry order; others in summary.csv follow, sorted.
CI_TEXT = "mean ± 95% CI over prompts"
DPI = 120
FORMATS = ("png", "svg")
SAVE_METADATA = {"png": {"Software": None}, "svg": {"Date": None, "Creator": "t2ibench"}}
# matplotlib's rcParams are global: one experiment is drawn at a time (Snakemake runs
# jobs as threads of one process), so a concurrent job cannot change them mid-save.
_LOCK = threading.Lock()
_RC = {"svg.hashsalt": "t2ibench", "path.simplify": True}


# ---------------------------------------------------------------- drawing


def _wrap(text: str, width: int = 24) -> str:
    """Wrap a label; very long unbroken names are cut into pieces too."""
    return "\n".join(textwrap.wrap(str(text), width, break_on_hyphens=False)) or str(text)


def _errors(mean: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Non-negative (below, above) error lengths for errorbar; NaN CI -> no whisker."""
    below = np.nan_to_num(mean - low, nan=0.0).clip(min=0)
    above = np.nan_to_num(high - mean, nan=0.0).clip(min=0)
    return np.vstack([below, above])


def _metric_label(metric: str, facts: dict | None = None) -> str:
    """The axis label: the metric, the CI, and its note when lower is better."""
    about = (facts or registry.column_facts()).get(metric, {})
    note = about.get("note") if about.get("higher_is_better") is False else ""
    return f"{metric}\n({CI_TEXT}{'; ' + note if note else ''})"


def _set_category_ticks(ax, positions, labels, axis: str = "x") -> None:
    """Category ticks, wrapped, rotated when many or long."""
    wrapped = [_wrap(label) for label in labels]
    rotate = len(labels) > 5 or any(len(str(label)) > 10 for label in labels)
    set_ticks = ax.set_xticks if axis == "x" else ax.set_yticks
    set_ticks(
        positions,
        wrapped,
        rotation=30 if rotate else 0,
        ha="right" if rotate else "center",
        fontsize=8,
    )


def _colors(count: int, sequential: bool):
    """Distinct colours: tab10 for models, viridis for ordered axis values."""
    from matplotlib import colormaps

    if sequential and count > 1:
        cmap = colormaps["viridis"]
        return [cmap(i / (count - 1) * 0.9) for i in range(count)]
    cmap = colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(count)]


def draw_line_plot(data: LineData, experiment: str):
    """Figure of `<metric>_vs_<axis>`: one panel, or one per model for a grid."""
    from matplotlib.figure import Figure

    faceted = bool(data.groups and data.groups != [""])
    panels = data.models if faceted else [None]
    width = min(24.0, max(6.4, 0.5 * len(data.ticks) + 3.0)) * (1 if not faceted else 0.8)
    fig = Figure(figsize=(width * len(panels) if faceted else width, 4.8))
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, model in zip(axes, panels, strict=True):
        series = [s for s in data.series if model is None or s.model == model]
        colors = _colors(len(data.groups) if faceted else len(data.models), sequential=faceted)
        for s in series:
            color = colors[data.groups.index(s.group) if faceted else data.models.index(s.model)]
            ax.fill_between(s.x, s.low, s.high, color=color, alpha=0.18, linewidth=0)
            ax.plot(
                s.x,
                s.mean,
                marker="o",
                markersize=4,
                color=color,
                label=s.group if faceted else s.label,
            )
            if data.reference_cell in s.cells:
                i = s.cells.index(data.reference_cell)
                _reference_star(ax, s.x[i], s.mean[i], data.reference_cell)
        _finish_line_axes(ax, data, model)
    axes[0].set_ylabel(data.label or _metric_label(data.metric), fontsize=9)
    _dedupe_legend(axes[-1], axes, title=", ".join(_others(data)) or "model")
    fig.suptitle(f"{experiment}: {data.metric} vs {data.axis} ({CI_TEXT})", fontsize=11)
    return fig


def _others(data: LineData) -> list[str]:
    return sorted({part.split("=")[0] for g in data.groups for part in g.split(", ") if g})


def _finish_line_axes(ax, data: LineData, model: str | None) -> None:
    ax.set_xlabel(data.axis)
    if model is not None:
        ax.set_title(_wrap(model, 40), fontsize=9)
    if data.numeric:
        if len(data.ticks) <= 12:
            ax.set_xticks(data.tick_positions, data.ticks, fontsize=8)
    else:
        _set_category_ticks(ax, data.tick_positions, data.ticks)
    ax.grid(True, alpha=0.3)


def _dedupe_legend(target, axes, title: str) -> None:
    """One legend for every panel, each label once, right of the last panel."""
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    reference = [label for label in seen if label.startswith("reference cell")]
    seen = {
        label: seen[label] for label in [*(lbl for lbl in seen if lbl not in reference), *reference]
    }
    if seen:
        target.legend(
            list(seen.values()),
            [_wrap(lbl, 32) for lbl in seen],
            title=title,
            fontsize=7,
            title_fontsize=8,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
        )


def draw_bar_plot(data: BarData, experiment: str):
    """Figure of `<metric>_bars`: grouped bars with CI error bars."""
    from matplotlib.figure import Figure

    n_groups, n_members = data.mean.shape
    width = min(24.0, max(6.4, n_groups * (0.35 * n_members + 0.4) + 2.5))
    fig = Figure(figsize=(width, 4.8))
    ax = fig.subplots()
    bar = 0.8 / n_members
    colors = _colors(n_members, sequential=False)
    base = np.arange(n_groups, dtype=float)
    for j, member in enumerate(data.members):
        x = base - 0.4 + bar * (j + 0.5)
        ax.bar(
            x,
            data.mean[:, j],
            bar,
            color=colors[j] if data.by_cell else "C0",
            yerr=_errors(data.mean[:, j], data.low[:, j], data.high[:, j]),
            capsize=3,
            label=member if data.by_cell else None,
            error_kw={"linewidth": 1},
        )
    labels = [
        f"{g} (reference)" if data.by_cell and g == data.reference_cell else g for g in data.groups
    ]
    _set_category_ticks(ax, base, labels)
    ax.set_xlabel("cell" if data.by_cell else "model")
    ax.set_ylabel(data.label or _metric_label(data.metric), fontsize=9)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.grid(True, axis="y", alpha=0.3)
    _dedupe_legend(ax, [ax], title="model")
    ax.set_title(f"{experiment}: {data.metric} ({CI_TEXT})", fontsize=11)
    return fig


def draw_scatter(panels: dict[str, list[ScatterPoint]], experiment: str):
    """Figure of `clip_score_vs_diversity`: one panel per diversity metric."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4 * len(panels), 5.2))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    models = list(dict.fromkeys(p.model for pts in panels.values() for p in pts))
    colors = _colors(len(models), sequential=False)
    for ax, (metric, points) in zip(axes, panels.items(), strict=True):
        for model, color in zip(models, colors, strict=True):
            pts = [p for p in points if p.model == model]
            if not pts:
                continue
            x, y = (np.array([getattr(p, k) for p in pts]) for k in ("x", "y"))
            xl, xh, yl, yh = (
                np.array([getattr(p, k) for p in pts])
                for k in ("x_low", "x_high", "y_low", "y_high")
            )
            ax.errorbar(
                x,
                y,
                xerr=_errors(x, xl, xh),
                yerr=_errors(y, yl, yh),
                fmt="o",
                color=color,
                markersize=5,
                capsize=2,
                linewidth=0.8,
                label=model,
            )
        for p in points:
            if p.reference:
                _reference_star(ax, p.x, p.y, p.cell)
            ax.annotate(p.label, (p.x, p.y), xytext=(4, 4), textcoords="offset points", fontsize=6)
        ax.set_xlabel(_metric_label("clip_score"), fontsize=9)
        ax.set_ylabel(_metric_label(metric), fontsize=9)
        ax.grid(True, alpha=0.3)
    _dedupe_legend(axes[-1], axes, title="model")
    fig.suptitle(f"{experiment}: CLIP score vs diversity ({CI_TEXT})", fontsize=11)
    return fig


# ---------------------------------------------------------------- writing


def _file_part(name: str) -> str:
    """A name as a file-name part."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "axis"


def save_figure(fig, out_dir: Path, stem: str) -> list[Path]:
    """Write `stem.png` and `stem.svg` atomically and deterministically."""
    from t2ibench.io import atomic_write

    paths = []
    for fmt in FORMATS:
        path = out_dir / f"{stem}.{fmt}"
        atomic_write(
            path,
            lambda tmp, fmt=fmt: fig.savefig(
                tmp, format=fmt, dpi=DPI, bbox_inches="tight", metadata=SAVE_METADATA[fmt]
            ),
        )
        paths.append(path)
    return paths


def plan_figures(summary, metadata: dict, experiment: str) -> list[tuple[str, object]]:
    """(file stem, figure-making callable) for every plot the data supports, in order."""
    figures = []
    metrics = metric_columns(summary)
    facts = registry.facts_of(metadata.get("metrics"))
    for metric in metrics:
        label = _metric_label(metric, facts)
        for axis in metadata.get("variables", {}):
            data = line_data(summary, metadata, metric, axis)
            if data is not None:
                data.label = label
                figures.append(
                    (
                        f"{metric}_vs_{_file_part(axis)}",
                        lambda d=data: draw_line_plot(d, experiment),
                    )
                )
        bars = bar_data(summary, metadata, metric)
        if bars is not None:
            bars.label = label
            figures.append((f"{metric}_bars", lambda d=bars: draw_bar_plot(d, experiment)))
    from t2ibench.report import cost
    from t2ibench.report.findings import cell_label

    if cost.varies_cost(metadata) and "generation_seconds_mean" in summary:
        label_of = functools.partial(cell_label, metadata)
        for metric in metrics:
            higher = (facts.get(metric) or {}).get("higher_is_better", True)
            figures.append(
                (
                    f"{metric}_vs_seconds",
                    lambda m=metric, h=higher: cost.draw_pareto(
                        summary, metadata, m, h, label_of, experiment
                    ),
                )
            )
    if "clip_score" in metrics:
        diversity = registry.columns("prompt")  # per-prompt columns: the diversities
        panels = {m: scatter_data(summary, metadata, m) for m in diversity if m in metrics}
        panels = {m: pts for m, pts in panels.items() if pts}
        if panels:
            figures.append(("clip_score_vs_diversity", lambda: draw_scatter(panels, experiment)))
    return figures


def experiment_plots(
    summary_csv: Path, results_csv: Path, metadata_json: Path, out_dir: Path
) -> list[Path]:
    """Write an experiment's plots (PNG and SVG) to `out_dir`; return their paths.

    Everything plotted comes from `summary_csv` (means and CIs) and
    `metadata_json` (axes, their order, cells, reference cell, models); `results_csv` is
    taken so the caller can declare it as an input, and is not read. An experiment with
    no rows in its summary writes nothing and returns [].
    """
    import matplotlib
    import matplotlib.style

    del results_csv  # the per-image table is not needed: CIs come from summary.csv
    summary = summary_frame(read_rows(Path(summary_csv)))
    if summary.empty or "model" not in summary.columns:
        return []
    metadata = read_metadata(Path(metadata_json))
    experiment = metadata.get("experiment") or Path(summary_csv).parent.name
    written: list[Path] = []
    with _LOCK, matplotlib.style.context("default"), matplotlib.rc_context(_RC):
        for stem, make in plan_figures(summary, metadata, experiment):
            fig = make()
            written += save_figure(fig, Path(out_dir), stem)
            fig.clear()
    return written


def _reference_star(ax, x, y, cell: str) -> None:
    """Mark the reference cell's point with a black star."""
    ax.plot([x], [y], marker="*", markersize=13, color="black", linestyle="none", zorder=5,
            label=f"reference cell ({cell})")  # fmt: skip
