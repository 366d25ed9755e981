"""What each cell costs in generation time, and which is the cheapest that is not worse.

Per model and cell: seconds per image and in all, from the images' records (summary.csv's
generation_seconds_mean and generation_seconds_total). For an experiment that varies cost
(its variables include steps, size or sampler), per metric:

- a plot of the metric against seconds per image, each model's cells as points with
  its Pareto front (no other cell is both cheaper and better);
- with a `findings.margins` entry for the metric, the cheapest cell not worse than the
  model's best cell by more than the margin: a one-sided non-inferiority test over
  prompts per cell against the best (t2ibench.stats.noninferiority_p), adjusted over
  the model's cells the same way as the findings.
"""

from __future__ import annotations

import math

import numpy as np

from t2ibench import stats

COST_AXES = ("steps", "width", "height", "sampler")  # settings that change the cost


def varies_cost(metadata: dict) -> bool:
    """Whether the cells differ in a setting that changes the time an image takes (by
    their settings: a `size` axis of width/height pairs counts too)."""
    cells = [c for c in (metadata.get("cells") or {}).values() if isinstance(c, dict)]
    for key in COST_AXES:
        seen = {repr((c.get("settings") or {}).get(key)) for c in cells}
        if len(seen) > 1:
            return True
    return False


def per_cell(summary) -> list[dict]:
    """Seconds per image and in all, per model and cell."""
    out = []
    if "generation_seconds_mean" not in summary:
        return out
    for _, row in summary.iterrows():
        mean = row["generation_seconds_mean"]
        if isinstance(mean, float) and math.isnan(mean):
            continue
        out.append(
            {
                "model": row["model"],
                "cell": row["cell"],
                "images": int(row["images"]),
                "seconds_per_image": float(mean),
                "seconds": float(row.get("generation_seconds_total", mean * row["images"])),
            }
        )
    return out


def pareto_front(seconds, values, higher_is_better: bool = True) -> list[int]:
    """Indices of the points no other point beats on both (cheaper and better, one of
    them strictly), cheapest first."""
    sign = 1 if higher_is_better else -1
    points = [(s, sign * v) for s, v in zip(seconds, values, strict=True)]
    front = []
    for i, (s, v) in enumerate(points):
        if math.isnan(s) or math.isnan(v):
            continue
        beaten = any(
            (s2 <= s and v2 >= v) and (s2 < s or v2 > v)
            for j, (s2, v2) in enumerate(points)
            if j != i and not (math.isnan(s2) or math.isnan(v2))
        )
        if not beaten:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def cheapest_not_worse(results, summary, metric, margin, higher: bool, method: str, alpha):
    """Per model: the cheapest cell whose metric is not worse than the best cell's by more
    than `margin` (non-inferiority, adjusted over the model's other cells)."""
    out = []
    costs = {(c["model"], c["cell"]): c["seconds_per_image"] for c in per_cell(summary)}
    column = f"{metric}_mean"
    if column not in summary or metric not in results:
        return out
    clean = results[results["image_flag"].fillna("") == ""].dropna(subset=[metric])
    for model, rows in summary.groupby("model", sort=False):
        rows = rows.dropna(subset=[column])
        if len(rows) < 2:
            continue
        best = rows.loc[rows[column].idxmax() if higher else rows[column].idxmin(), "cell"]
        mine = clean[clean["model"] == model]
        reference = mine[mine["cell"] == best]
        cells, p_values = [], []
        for cell in rows["cell"]:
            if cell == best:
                continue
            merged = mine[mine["cell"] == cell].merge(
                reference, on=["prompt_index", "seed"], suffixes=("", "_best")
            )
            diff = (merged[metric] - merged[f"{metric}_best"]).to_numpy(float)
            diff = diff if higher else -diff
            cells.append(cell)
            p_values.append(stats.noninferiority_p(diff, merged["prompt_index"].to_numpy(), margin))
        adjusted = stats.adjust(p_values, method) if p_values else np.array([])
        passing = [best] + [c for c, p in zip(cells, adjusted, strict=True) if p < alpha]
        cheapest = min(passing, key=lambda c: costs.get((model, c), math.inf))
        p_of = dict(zip(cells, adjusted, strict=True))
        out.append(
            {
                "model": model,
                "metric": metric,
                "margin": margin,
                "best": best,
                "cheapest": cheapest,
                "best_seconds": costs.get((model, best)),
                "cheapest_seconds": costs.get((model, cheapest)),
                "p_adjusted": None if cheapest == best else float(p_of[cheapest]),
            }
        )
    return out


def section(results, summary, metadata: dict, settings: dict, directions: dict) -> dict:
    """The findings' cost part: per cell seconds, and per metric with a margin the
    cheapest cell not worse than the best (experiments that vary cost)."""
    cheapest = []
    if varies_cost(metadata):
        for metric, margin in (settings.get("margins") or {}).items():
            higher = directions.get(metric, True)
            cheapest += cheapest_not_worse(
                results, summary, metric, margin, higher, settings["adjust"], settings["alpha"]
            )
    return {"per_cell": per_cell(summary), "varies": varies_cost(metadata), "cheapest": cheapest}


def draw_pareto(summary, metadata: dict, metric: str, higher: bool, label_of, experiment: str):
    """The metric against seconds per image, one colour per model, its front a line."""
    import matplotlib.pyplot as plt
    import pandas as pd

    summary = summary.copy()
    for column in (f"{metric}_mean", "generation_seconds_mean"):
        summary[column] = pd.to_numeric(summary[column], errors="coerce")
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for model, rows in summary.groupby("model", sort=False):
        rows = rows.dropna(subset=[f"{metric}_mean", "generation_seconds_mean"])
        if rows.empty:
            continue
        seconds = rows["generation_seconds_mean"].to_numpy(float)
        values = rows[f"{metric}_mean"].to_numpy(float)
        (points,) = ax.plot(seconds, values, "o", label=model)
        front = pareto_front(seconds, values, higher)
        ax.plot(seconds[front], values[front], "-", color=points.get_color(), alpha=0.6)
        for s, v, cell in zip(seconds, values, rows["cell"], strict=True):
            ax.annotate(label_of(cell), (s, v), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")  # fmt: skip
    ax.set_xlabel("seconds per image")
    ax.set_ylabel(metric + ("" if higher else " (lower is better)"))
    ax.set_title(f"{experiment}: {metric} against cost (line: Pareto front)")
    ax.legend(title="model", fontsize=8)
    return fig
