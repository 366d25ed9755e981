"""Per-experiment plots: which files, what they show, and that they repeat byte for byte."""

from __future__ import annotations

import itertools
import json
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from t2ibench.report import plot_data, plots
from t2ibench.report.results import read_rows

SUFFIXES = ("png", "svg")


def cell_name(values: dict[str, str]) -> str:
    return "__".join(f"{axis}-{value}" for axis, value in values.items()) or "default"


def make_experiment(
    tmp_path,
    variables: dict[str, list[str]],
    models=("model-a", "model-b"),
    metrics=("clip_score", "lpips_diversity"),
    reference: str | None = None,
    name: str = "exp",
    shuffle: bool = False,
):
    """Write summary.csv, results.csv and metadata.json of a synthetic experiment.

    Means are 10 * (model index + 1) + the cell's index, CIs mean -/+ 1 and 2, so every
    value is known to the tests.
    """
    folder = tmp_path / name
    folder.mkdir(parents=True)
    combos = [dict(zip(variables, c, strict=True)) for c in itertools.product(*variables.values())]
    cells = {cell_name(v): v for v in combos}
    reference = reference or next(iter(cells))
    rows = []
    for m, model in enumerate(models):
        for c, (cell, values) in enumerate(cells.items()):
            row = {"model": model, "cell": cell, **values, "images": 4, "prompts": 2}
            for metric in metrics:
                mean = 10.0 * (m + 1) + c
                row |= {
                    f"{metric}_mean": mean,
                    f"{metric}_std": 0.5,
                    f"{metric}_n": 4,
                    f"{metric}_ci_low": mean - 1.0,
                    f"{metric}_ci_high": mean + 2.0,
                }
            rows.append(row)
    summary = pd.DataFrame(rows)
    if shuffle:
        summary = summary.sample(frac=1.0, random_state=3)
    summary.to_csv(folder / "summary.csv", index=False)
    results = summary[["model", "cell", *variables]].assign(prompt_index=0, seed=218)
    results.to_csv(folder / "results.csv", index=False)
    metadata = {
        "experiment": name,
        "variables": variables,
        "cells": {
            cell: {"values": values, "settings": {}, "reference": cell == reference}
            for cell, values in cells.items()
        },
        "reference_cell": reference,
        "models": [{"name": model} for model in models],
    }
    (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


def run_plots(folder, out=None):
    out = out or folder / "plots"
    return plots.experiment_plots(
        folder / "summary.csv", folder / "results.csv", folder / "metadata.json", out
    )


def expected(stems):
    return [f"{stem}.{suffix}" for stem in stems for suffix in SUFFIXES]


def load(folder):
    summary = plot_data.summary_frame(read_rows(folder / "summary.csv"))
    metadata = json.loads((folder / "metadata.json").read_text())
    return summary, metadata


def test_one_axis_sweep_two_models_two_metrics(tmp_path):
    folder = make_experiment(tmp_path, {"shift": ["1.0", "2.0", "3.0"]}, reference="shift-2.0")
    paths = run_plots(folder)
    assert [p.name for p in paths] == expected(
        [
            "clip_score_vs_shift",
            "clip_score_bars",
            "lpips_diversity_vs_shift",
            "lpips_diversity_bars",
            "clip_score_vs_diversity",
        ]
    )
    assert sorted(p.name for p in (folder / "plots").iterdir()) == sorted(p.name for p in paths)


def test_grid_sweep_plots_against_each_axis(tmp_path):
    variables = {"shift": ["2.0", "3.0"], "steps": ["6", "9", "12"]}
    folder = make_experiment(tmp_path, variables, metrics=("clip_score",))
    names = [p.name for p in run_plots(folder)]
    assert names == expected(["clip_score_vs_shift", "clip_score_vs_steps", "clip_score_bars"])
    summary, metadata = load(folder)
    data = plot_data.line_data(summary, metadata, "clip_score", "shift")
    # One line per model and steps value, each across both shifts.
    assert [(s.model, s.group) for s in data.series] == [
        (model, f"steps={steps}") for model in ("model-a", "model-b") for steps in ("6", "9", "12")
    ]
    assert all(list(s.x) == [2.0, 3.0] for s in data.series)
    fig = plots.draw_line_plot(data, "exp")
    assert len(fig.axes) == 2  # one panel per model


def test_baseline_has_only_bars_and_scatter(tmp_path):
    folder = make_experiment(tmp_path, {}, models=("a", "b", "c"))
    names = [p.name for p in run_plots(folder)]
    assert names == expected(["clip_score_bars", "lpips_diversity_bars", "clip_score_vs_diversity"])
    summary, metadata = load(folder)
    bars = plot_data.bar_data(summary, metadata, "clip_score")
    assert bars.groups == ["a", "b", "c"] and not bars.by_cell
    assert bars.mean[:, 0].tolist() == [10.0, 20.0, 30.0]


def test_band_equals_the_summary_ci(tmp_path):
    folder = make_experiment(tmp_path, {"shift": ["1.0", "2.0", "3.0"]}, shuffle=True)
    summary, metadata = load(folder)
    data = plot_data.line_data(summary, metadata, "clip_score", "shift")
    csv = pd.read_csv(folder / "summary.csv")
    for series in data.series:
        rows = csv[csv.model == series.model].sort_values("shift")
        assert series.x.tolist() == rows["shift"].tolist()
        np.testing.assert_array_equal(series.mean, rows["clip_score_mean"])
        np.testing.assert_array_equal(series.low, rows["clip_score_ci_low"])
        np.testing.assert_array_equal(series.high, rows["clip_score_ci_high"])
    # The drawn band spans exactly ci_low..ci_high of the first model.
    fig = plots.draw_line_plot(data, "exp")
    band = fig.axes[0].collections[0].get_paths()[0].vertices
    first = data.series[0]
    assert np.isclose(band[:, 1].min(), first.low.min())
    assert np.isclose(band[:, 1].max(), first.high.max())
    title = fig.get_suptitle()
    assert "exp" in title and "clip_score" in title and plots.CI_TEXT in title


def test_numeric_axis_sorted_by_value(tmp_path):
    folder = make_experiment(tmp_path, {"steps": ["10", "2", "5"]}, metrics=("clip_score",))
    summary, metadata = load(folder)
    data = plot_data.line_data(summary, metadata, "clip_score", "steps")
    assert data.numeric
    assert data.ticks == ["2", "5", "10"]  # by number, not as text or in listed order
    assert data.series[0].x.tolist() == [2.0, 5.0, 10.0]
    # The cells' order in the file is 10, 2, 5: means 10, 11, 12, re-ordered with x.
    assert data.series[0].mean.tolist() == [11.0, 12.0, 10.0]


@pytest.mark.parametrize(
    "values",
    [["none", "photographer", "painter"], ["none", "1", "2"], ["L-2", "L-1_L-2", "L-3"]],
)
def test_categorical_axis_keeps_the_experiment_order(tmp_path, values):
    folder = make_experiment(tmp_path, {"v": values}, metrics=("clip_score",), shuffle=True)
    summary, metadata = load(folder)
    data = plot_data.line_data(summary, metadata, "clip_score", "v")
    assert not data.numeric
    assert data.ticks == values
    assert data.series[0].x.tolist() == [0.0, 1.0, 2.0]
    assert data.series[0].cells == [f"v-{v}" for v in values]


def test_missing_or_empty_metric_gives_no_plot(tmp_path):
    folder = make_experiment(tmp_path, {"shift": ["1.0", "2.0"]}, metrics=("clip_score", "hps"))
    summary = pd.read_csv(folder / "summary.csv")
    summary["hps_mean"] = np.nan  # all NaN: nothing to show
    summary.to_csv(folder / "summary.csv", index=False)
    names = [p.name for p in run_plots(folder)]
    assert names == expected(["clip_score_vs_shift", "clip_score_bars"])  # no diversity: no scatter
    assert not any(name.startswith("hps") for name in names)


def test_diversity_without_clip_score_gives_no_scatter(tmp_path):
    folder = make_experiment(tmp_path, {}, metrics=("clip_diversity",))
    assert [p.name for p in run_plots(folder)] == expected(["clip_diversity_bars"])


def test_empty_summary_writes_nothing(tmp_path):
    folder = make_experiment(tmp_path, {"shift": ["1.0", "2.0"]})
    header = (folder / "summary.csv").read_text().splitlines()[0]
    (folder / "summary.csv").write_text(header + "\n")
    assert run_plots(folder) == []
    assert not (folder / "plots").exists()
    (folder / "summary.csv").write_text("")
    assert run_plots(folder) == []


def test_output_is_byte_identical_across_runs(tmp_path):
    folder = make_experiment(tmp_path, {"shift": ["1.0", "2.0", "3.0"]})
    first = run_plots(folder, tmp_path / "one")
    second = run_plots(folder, tmp_path / "two")
    assert [p.name for p in first] == [p.name for p in second]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_files_are_valid_svg_and_png(tmp_path):
    long = "a-very-long-model-name-" * 4
    folder = make_experiment(
        tmp_path,
        {"system_prompt": ["none", "a rather long named value for the system prompt"]},
        models=(long + "1", long + "2"),
    )
    paths = run_plots(folder)
    for path in paths:
        if path.suffix == ".svg":
            root = ET.parse(path).getroot()
            assert root.tag == "{http://www.w3.org/2000/svg}svg"
            assert b"<dc:date>" not in path.read_bytes()
        else:
            with Image.open(path) as image:
                image.verify()
            with Image.open(path) as image:
                assert image.format == "PNG"
                assert 300 <= image.width <= 4000 and 250 <= image.height <= 2000
                assert "Software" not in image.info
    assert not list((folder / "plots").glob(".*.part"))  # no temporary files left


def test_the_plots_step_leaves_no_plot_of_an_earlier_run(tmp_path):
    """A metric turned off or an axis renamed: the plots/ folder holds only this run's
    plots (the viewer lists what is in it)."""
    from t2ibench.steps import plots as plots_step

    first = make_experiment(tmp_path / "a", {"shift": ["1.0", "2.0"]})
    out = tmp_path / "plots"
    inputs = {k: str(first / f"{k}.csv") for k in ("summary", "results")}
    plots_step({**inputs, "metadata": str(first / "metadata.json")}, str(out), str(tmp_path / "l"))
    assert (out / "lpips_diversity_bars.png").is_file() and (
        out / "clip_score_vs_shift.png"
    ).is_file()
    second = make_experiment(tmp_path / "b", {"steps": ["2", "4"]}, metrics=("clip_score",))
    inputs = {k: str(second / f"{k}.csv") for k in ("summary", "results")}
    plots_step({**inputs, "metadata": str(second / "metadata.json")}, str(out), str(tmp_path / "l"))
    assert sorted(p.name for p in out.iterdir()) == sorted(
        expected(["clip_score_vs_steps", "clip_score_bars"])
    )
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
