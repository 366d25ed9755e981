"""Sample-size planning (t2ibench.planning, `cli.py plan --power`) from earlier scores."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from t2ibench import planning, stats
from t2ibench.config import validate_config
from t2ibench.plan import build_plan
from t2ibench.report import findings

BETWEEN, WITHIN = 0.5, 2.0  # variance of the paired differences: between prompts, seeds


@pytest.fixture
def planned(tmp_path):
    """A planned 2-cell sweep of 20 prompts x 2 seeds on one model."""
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps({f"p{i}": {"text": f"prompt {i}"} for i in range(20)}))
    (tmp_path / "sweep.yaml").write_text(
        "name: sweep\ndescription: x\nvariables:\n  steps: [2, 3]\n"
    )
    config = {
        "models": [{"name": "m", "source": "builtin:tiny-sdxl"}],
        "prompts": {"sources": [str(prompts)]},
        "experiments": [str(tmp_path / "sweep.yaml")],
        "generation": {"steps": 2, "width": 64, "height": 64, "images_per_prompt": 2},
        "results_dir": str(tmp_path / "results"),
        "resources_dir": str(tmp_path / "resources"),
    }
    return build_plan(validate_config(config))


def earlier_run(plan, rng, prompts: int, seeds: int, folder: str = "") -> None:
    """results.csv of an earlier run: clip_score with prompt effects; the two cells'
    paired differences vary by BETWEEN across prompts and WITHIN across seeds."""
    exp = plan.experiments["sweep"].experiment
    ref, other = exp.reference, next(c for c in exp.cell_names if c != exp.reference)
    rows = []
    effect = rng.normal(0, 1, prompts)
    shift = rng.normal(0, np.sqrt(BETWEEN), prompts)  # the cell's per-prompt difference
    for p in range(prompts):
        for s in range(seeds):
            base = effect[p] + rng.normal(0, 0.3)
            for cell, value in [
                (ref, base),
                (other, base + shift[p] + rng.normal(0, np.sqrt(WITHIN))),
            ]:  # noqa: E501
                rows.append({"experiment": "sweep", "model": "m", "cell": cell, "prompt_index": p,
                             "seed": 100 + s, "image_flag": "", "clip_score": value})  # fmt: skip
    out = plan.results_dir + (f"/{folder}" if folder else "") + "/sweep"
    import os

    os.makedirs(out, exist_ok=True)
    pd.DataFrame(rows).to_csv(f"{out}/results.csv", index=False)


def test_without_earlier_scores_it_says_so(planned):
    found = planning.power(planned, "sweep")
    assert found["rows"] == [] and "no earlier scores" in found["reason"]
    assert "nothing to plan from" in planning.report_lines(found)[0]
    assert planning.startup_line(planned, "sweep") == ""


def test_the_quick_runs_scores_give_the_detectable_difference(planned):
    """The variance split of an earlier (here quick, 3 seeds) run carries over to the
    planned 2 seeds; the detectable difference is the t-test's at alpha / comparisons."""
    earlier_run(planned, np.random.default_rng(3), prompts=400, seeds=3, folder="quick")
    found = planning.power(planned, "sweep", {"clip_score": 0.5})
    [row] = found["rows"]
    expected_sd = np.sqrt(BETWEEN + WITHIN / 2)
    assert row["sd"] == pytest.approx(expected_sd, rel=0.1)
    assert row["detectable"] == pytest.approx(stats.detectable_difference(row["sd"], 20, 0.05 / 1))
    assert row["prompts_needed"] == stats.prompts_needed(row["sd"], 0.5, 0.05)
    assert "quick" in str(found["source"]) and "over 1 comparisons" in found["method"]
    line = planning.startup_line(planned, "sweep")
    assert line.startswith("power: sweep (20 prompts x 2 seeds) can detect clip_score ")


def test_an_effect_of_the_size_power_gives_is_found_about_80_percent_of_the_time(planned):
    """The planned run (20 prompts x 2 seeds), simulated 200 times with the difference
    --power called detectable: the findings find it 70-90% of the time."""
    rng = np.random.default_rng(4)
    earlier_run(planned, rng, prompts=400, seeds=3)
    detectable = planning.power(planned, "sweep")["rows"][0]["detectable"]
    labels = np.repeat(np.arange(20), 2)
    found = 0
    for _ in range(200):
        diff = detectable + np.repeat(rng.normal(0, np.sqrt(BETWEEN), 20), 2)
        diff = diff + rng.normal(0, np.sqrt(WITHIN), len(labels))
        result = stats.paired_difference(diff, np.zeros_like(diff), labels)
        found += result["p_value"] < 0.05 and result["difference"] > 0  # one comparison
    assert 0.70 <= found / 200 <= 0.90, found
    # The findings decide the same way (one comparison: Holm's p is the p).
    row = {"metric": "clip_score", "comparison": "cell vs reference cell", **result}
    verdict = findings.classify(pd.DataFrame([row]), {}, {}, 0.05, "holm")["verdict"][0]
    assert (verdict == "better") == (result["p_value"] < 0.05 and result["difference"] > 0)


def test_the_cli_plans_and_refuses_a_bad_difference(planned, tmp_path, capsys):
    from t2ibench import cli

    config = tmp_path / "c.yaml"
    import yaml

    config.write_text(yaml.safe_dump(planned.config))
    assert cli.main(["plan", "--configfile", str(config), "--power"]) == 0
    assert "nothing to plan from" in capsys.readouterr().out
    earlier_run(planned, np.random.default_rng(5), prompts=50, seeds=2)
    args = ["plan", "--configfile", str(config), "--power", "--difference", "clip_score=0.4"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "clip_score: detectable difference" in out and "0.4 needs" in out
    assert cli.main([*args[:-1], "clip_score=-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("t2ibench: error: --difference 'clip_score=-1': expected")
        and "\n" not in err
    )
    # A metric the run does not compare (a typo) is named, not left out in silence.
    assert cli.main([*args[:-1], "clip_scor=0.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "t2ibench: error: --difference 'clip_scor=0.5': clip_scor is not a compared metric "
        "column of this run; expected one of: "
    )
    assert "clip_score" in err and "\n" not in err


def test_comparisons_of_the_same_images_do_not_dilute_the_noise(planned):
    """A third cell that made the reference's images (paired differences all 0) leaves
    the pooled sd as the one real comparison's."""
    earlier_run(planned, np.random.default_rng(3), prompts=400, seeds=3, folder="quick")
    alone = planning.power(planned, "sweep")["rows"][0]["sd"]
    path = f"{planned.results_dir}/quick/sweep/results.csv"
    table = pd.read_csv(path)
    exp = planned.experiments["sweep"].experiment
    same = table[table["cell"] == exp.reference].assign(cell="copy-of-reference")
    pd.concat([table, same]).to_csv(path, index=False)
    import unittest.mock as mock

    from t2ibench.report import tables

    real = tables.comparison_pairs

    def with_copy(results, plan, experiment):
        found = list(real(results, plan, experiment))
        ref = results[results["cell"] == exp.reference]
        copy = results[results["cell"] == "copy-of-reference"]
        for metric, keys, *_ in found[:1]:
            found.append((metric, keys, copy, ref, "copy-of-reference vs reference"))
        return found

    with mock.patch.object(tables, "comparison_pairs", with_copy):
        pooled = planning.power(planned, "sweep")["rows"][0]["sd"]
    assert pooled == pytest.approx(alone)


def test_prompts_needed_for_a_tiny_difference_is_quick_and_the_normal_answer():
    """A difference far below the noise needs an astronomical number of prompts: given at
    once (the z-test's count), not stepped to one prompt at a time."""
    from scipy import stats as scipy_stats

    z = scipy_stats.norm.ppf(1 - 0.05 / 2) + scipy_stats.norm.ppf(stats.POWER)
    assert stats.prompts_needed(0.2, 1e-7, 0.05) == int(np.ceil((z * 0.2 / 1e-7) ** 2))
    # Near the switch to the z-test, the exact count is within a prompt of it.
    for n in (2_000, 90_000):
        difference = z / np.sqrt(n)
        assert abs(stats.prompts_needed(1.0, difference, 0.05) - n) <= 2


def test_scores_with_no_spread_are_not_a_detectable_difference_of_0():
    """Earlier paired scores that are the same on every prompt (the same images) give no
    sd to plan with: said in words, left out of the start-up line."""

    found = {"experiment": "e", "prompts": 4, "seeds": 2, "source": "r.csv", "reason": "",
             "method": "80% power", "rows": [
                 {"metric": "clip_score", "sd": 0.0, "detectable": float("nan")},
                 {"metric": "hps", "sd": 0.5, "detectable": 1.2}]}  # fmt: skip
    lines = planning.report_lines(found)
    assert lines[1] == (
        "  clip_score: every paired score the same in the earlier run (no spread): nothing "
        "to plan from"
    )
    assert lines[2].startswith("  hps: detectable difference 1.2 ")
    assert all("nan" not in line for line in lines)
    # One planned prompt: nothing is detectable, said in words, not in the start-up line.
    one = {
        **found,
        "prompts": 1,
        "rows": [{"metric": "hps", "sd": 0.5, "detectable": float("nan")}],
    }
    [_, line] = planning.report_lines(one)
    assert line.startswith("  hps: no difference detectable with 1 prompt(s)") and "nan" not in line


def test_a_sequential_experiments_power_says_it_is_the_fixed_designs(planned, tmp_path):
    """plan --power of a `sequential:` experiment gives the fixed design's figures and
    says so (its looks test at their own levels); a fixed one has no such line."""
    rng = np.random.default_rng(4)
    earlier_run(planned, rng, prompts=20, seeds=2)
    assert planning.power(planned, "sweep")["note"] == ""
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        sweep.read_text() + "sequential: {metrics: [clip_score], margin: 0.5, round: 10}\n"
    )
    config = {**planned.config, "experiments": [str(sweep)]}
    found = planning.power(build_plan(validate_config(config)), "sweep")
    assert found["rows"] and found["note"].startswith("sequential: these are the fixed design's")
    assert planning.report_lines(found)[-1] == f"  {found['note']}"
