"""Cost per cell, the Pareto front and the cheapest cell not worse than the best."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from t2ibench.report import cost


def test_pareto_front_keeps_the_cells_nothing_beats():
    seconds = [1.0, 2.0, 3.0, 2.5, 1.0]
    values = [0.5, 0.7, 0.9, 0.6, 0.4]
    assert cost.pareto_front(seconds, values) == [0, 1, 2]  # 3 and 4 are beaten
    assert cost.pareto_front(seconds, [-v for v in values], higher_is_better=False) == [0, 1, 2]


def hand_made(rng, gaps: dict[str, float], seconds: dict[str, float]):
    """results and summary of one model, cells with a true gap below the best cell."""
    rows = []
    prompt = rng.normal(0, 1, 30)
    for cell, gap in gaps.items():
        for p in range(30):
            for seed in range(2):
                value = prompt[p] - gap + rng.normal(0, 0.05)
                rows.append({"model": "m", "cell": cell, "prompt_index": p, "seed": seed,
                             "image_flag": "", "clip_score": value,
                             "generation_seconds": seconds[cell]})  # fmt: skip
    results = pd.DataFrame(rows)
    summary = (
        results.groupby(["model", "cell"], sort=False)
        .agg(
            images=("seed", "size"),
            clip_score_mean=("clip_score", "mean"),
            generation_seconds_mean=("generation_seconds", "mean"),
            generation_seconds_total=("generation_seconds", "sum"),
        )  # fmt: skip
        .reset_index()
    )
    return results, summary


def test_the_cheapest_cell_within_the_margin_of_the_best():
    """steps-8 is best; steps-4 is 0.02 below it (within 0.1), steps-2 0.5 below: the
    cheapest not worse than the best by more than 0.1 is steps-4."""
    rng = np.random.default_rng(3)
    gaps = {"steps-2": 0.5, "steps-4": 0.02, "steps-8": 0.0}
    results, summary = hand_made(rng, gaps, {"steps-2": 1.0, "steps-4": 2.0, "steps-8": 4.0})
    [found] = cost.cheapest_not_worse(results, summary, "clip_score", 0.1, True, "holm", 0.05)
    assert (found["best"], found["cheapest"]) == ("steps-8", "steps-4")
    assert found["cheapest_seconds"] == 2.0 and found["p_adjusted"] < 0.05
    # A margin too small for anything but the best: the best is the answer.
    [tight] = cost.cheapest_not_worse(results, summary, "clip_score", 0.001, True, "holm", 0.05)
    assert tight["cheapest"] == "steps-8" and tight["p_adjusted"] is None
    cells = cost.per_cell(summary)
    assert [c["seconds"] for c in cells] == [60.0, 120.0, 240.0]


@pytest.mark.slow
def test_a_steps_sweep_reports_cost_and_its_pareto_plot(tmp_path):
    """End to end: seconds per cell in summary.csv and findings, a metric-against-seconds
    plot, and the cheapest cell within a wide margin is the cheapest cell."""
    from workflow_helpers import make_workdir, metrics_only, snakemake, write_config

    work = make_workdir(tmp_path)
    (work / "steps.yaml").write_text("name: steps\ndescription: x\nvariables:\n  steps: [1, 6]\n")
    write_config(
        work,
        {
            "models": [{"name": "m", "source": "builtin:tiny-sdxl"}],
            "experiments": ["steps.yaml"],
            "generation": {"width": 64, "height": 64, "images_per_prompt": 2},
            "prompts": {"sources": ["prompts/simple.json"], "num_prompts": 3},
            "metrics": metrics_only("clip"),
            "findings": {"margins": {"clip_score": 1000.0}},
            "torch_threads": 1,
        },
    )
    snakemake(work, "--configfile", "test-config.yaml")
    out = work / "results" / "steps"
    summary = pd.read_csv(out / "summary.csv")
    assert (summary["generation_seconds_total"] > 0).all()
    found = json.loads((out / "findings.json").read_text())
    spent = {c["cell"]: c["seconds_per_image"] for c in found["cost"]["per_cell"]}
    [cheapest] = found["cost"]["cheapest"]
    assert cheapest["cheapest"] == min(spent, key=spent.get)
    assert "## Cost" in (out / "findings.md").read_text()
    assert (out / "plots" / "clip_score_vs_seconds.png").is_file()
