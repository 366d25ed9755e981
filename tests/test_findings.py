"""Findings (t2ibench.report.findings): verdicts under multiple comparisons, checked on
simulated experiments, and their wording."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from t2ibench import stats
from t2ibench.report import findings

CELLS, METRICS, PROMPTS, SEEDS = 20, 5, 20, 2


def simulated_comparisons(rng, planted: float = 0.0) -> pd.DataFrame:
    """One experiment: 20 cells x 5 correlated metrics on one model, paired over 20
    prompts x 2 seeds with prompt effects; cell 1 of metric 0 raised by `planted`."""
    labels = np.repeat(np.arange(PROMPTS), SEEDS)
    prompt = rng.normal(0, 1, (METRICS, PROMPTS))  # a prompt's difficulty, per metric
    rows = []
    scores = {}
    for cell in range(CELLS):
        shared = rng.normal(0, 1, PROMPTS * SEEDS)  # the image: all metrics see it
        for metric in range(METRICS):
            own = rng.normal(0, 1, PROMPTS * SEEDS)
            value = np.repeat(prompt[metric], SEEDS) + 0.7 * shared + 0.7 * own
            if cell == 1 and metric == 0:
                value = value + planted
            scores[cell, metric] = value
    for metric in range(METRICS):
        for cell in range(1, CELLS):
            result = stats.paired_difference(scores[cell, metric], scores[0, metric], labels)
            kind = "cell vs reference cell"
            where = {"model": "a", "cell": f"c{cell}", "reference": "c0"}
            rows.append({"metric": f"m{metric}", "comparison": kind, **where, **result})
    return pd.DataFrame(rows)


def decided(frame) -> pd.DataFrame:
    verdicts = findings.classify(frame, {}, {}, 0.05, "holm")
    return verdicts[verdicts["verdict"].isin(["better", "worse"])]


@pytest.mark.slow
def test_null_experiments_rarely_have_any_finding():
    """200 experiments with no difference anywhere (95 comparisons each): the share with
    any "better" or "worse" is the family-wise error Holm controls, at most 5%."""
    rng = np.random.default_rng(17)
    with_any = sum(len(decided(simulated_comparisons(rng))) > 0 for _ in range(200))
    assert 0.01 <= with_any / 200 <= 0.07, with_any
    # Unadjusted, about 5% of the 95 comparisons of each would be "significant".
    frame = simulated_comparisons(rng)
    assert (frame["p_value"] < 0.05).sum() >= 1


@pytest.mark.slow
def test_an_effect_of_the_detectable_size_is_found_80_percent_of_the_time():
    """The difference the findings say the run could detect (80% power at the adjusted
    level), planted in one comparison, is found in 70-90% of 200 experiments."""
    rng = np.random.default_rng(23)
    frame = simulated_comparisons(rng)
    detectable = float(findings.classify(frame, {}, {}, 0.05, "holm")["detectable"].median())
    found = 0
    for _ in range(200):
        hits = decided(simulated_comparisons(rng, planted=detectable))
        found += ((hits["metric"] == "m0") & (hits["cell"] == "c1")).any()
    assert 0.70 <= found / 200 <= 0.90, found


def row(**changes) -> dict:
    base = {"metric": "clip_score", "comparison": "cell vs reference cell", "model": "m",
            "cell": "shift-4.0", "reference": "shift-3.0", "pairs": 100, "prompts": 50,
            "difference": 0.12, "ci_low": 0.05, "ci_high": 0.19, "p_value": 0.001,
            "sd": 0.2, "skewness": 0.0, "few_prompts": False}  # fmt: skip
    return {**base, **changes}


META = {
    "experiment": "shift",
    "seeds": [1, 2],
    "cells": {"shift-3.0": {"values": {"shift": 3.0}}, "shift-4.0": {"values": {"shift": 4.0}}},
}
SETTINGS = {"adjust": "holm", "alpha": 0.05, "margins": {"hps": 0.5}}


def test_verdicts_and_their_sentences():
    frame = pd.DataFrame(
        [
            row(),
            row(metric="lpips_ref", difference=0.1, p_value=0.0001),  # lower is better
            row(metric="hps", difference=0.01, ci_low=-0.05, ci_high=0.07, p_value=0.7),
            row(metric="pickscore", difference=0.02, ci_low=-0.1, ci_high=0.14, p_value=0.6),
        ]
    )
    found = findings.build(frame, META, SETTINGS, {"lpips_ref": False}, "")
    by = {f["metric"]: f for f in found["findings"]}
    assert by["clip_score"]["verdict"] == "better" and by["lpips_ref"]["verdict"] == "worse"
    assert by["hps"]["verdict"] == "equivalent"  # within the margin of 0.5
    assert by["pickscore"]["verdict"] == "no difference detected"  # no margin given
    assert by["clip_score"]["sentence"] == (
        "shift=4.0 raises clip_score by 0.12 [0.05, 0.19] over shift=3.0 on m "
        "(better; Holm p = 0.003; 50 prompts x 2 seeds)."
    )
    assert by["clip_score"]["p_adjusted"] == pytest.approx(0.003)  # Holm: 0.001 x 3
    assert "could have detected" in by["pickscore"]["sentence"]
    assert by["pickscore"]["detectable"] == pytest.approx(
        stats.detectable_difference(0.2, 50, 0.05 / 4)
    )
    [disagreement] = found["disagreements"]
    assert disagreement["better"] == ["clip_score"] and disagreement["worse"] == ["lpips_ref"]
    text = findings.markdown(found)
    assert "## Metrics that disagree" in text and "## Equivalent within the margin" in text


def test_no_spread_and_skew_are_said_not_a_detectable_difference_of_0():
    """Scores the same on every prompt have no spread to detect with: the sentence says so
    (not "could have detected 0"). A difference as large as the detectable one that the
    skewness-corrected test does not declare says why. Missing pairs are counted."""
    frame = pd.DataFrame(
        [
            row(difference=0.0, ci_low=0.0, ci_high=0.0, p_value=1.0, sd=0.0),
            row(metric="hps", difference=0.3, ci_low=0.3, ci_high=0.3, p_value=0.06, sd=0.0,
                pairs=6, prompts=4),
            row(metric="pickscore", difference=0.7, ci_low=-0.14, ci_high=0.94, p_value=0.1,
                sd=0.25, skewness=-1.3, prompts=6, pairs=12),
        ]
    )  # fmt: skip
    found = findings.build(frame, META, {**SETTINGS, "margins": {}}, {}, "")
    same, constant, skewed = found["findings"]
    assert {f["verdict"] for f in found["findings"]} == {"no difference detected"}
    assert same["sentence"] == (
        "No difference in clip_score detected between shift=4.0 and shift=3.0 on m: the same "
        "score on every prompt (50 prompts x 2 seeds)."
    )
    assert "every prompt differs by 0.3" in constant["sentence"]
    assert "(6 pairs over 4 prompts)" in constant["sentence"]
    assert "could have detected" not in same["sentence"] + constant["sentence"]
    assert same["detectable"] is None and constant["detectable"] is None  # NaN in JSON: null
    assert skewed["detectable"] < 0.7
    assert "as large as the" in skewed["sentence"] and "skewness -1.3" in skewed["sentence"]


def test_benjamini_hochberg_is_named_and_used():
    frame = pd.DataFrame([row(p_value=0.02), row(metric="hps", p_value=0.04)])
    found = findings.build(frame, META, {**SETTINGS, "adjust": "bh"}, {}, "")
    assert found["method"]["adjustment"] == "Benjamini-Hochberg"
    assert [f["p_adjusted"] for f in found["findings"]] == pytest.approx([0.04, 0.04])
    assert "Benjamini-Hochberg p = 0.04" in found["findings"][0]["sentence"]


@pytest.mark.slow
def test_one_checkpoint_under_two_names_gives_no_finding(tmp_path):
    """The same built-in model twice: every comparison is "no difference detected"."""
    import json

    from workflow_helpers import make_workdir, metrics_only, snakemake, write_config

    work = make_workdir(tmp_path)
    write_config(
        work,
        {
            "models": [
                {"name": "one", "source": "builtin:tiny-sdxl"},
                {"name": "two", "source": "builtin:tiny-sdxl"},
            ],
            "generation": {"steps": 2, "width": 64, "height": 64, "images_per_prompt": 2},
            "prompts": {"sources": ["prompts/simple.json"], "num_prompts": 4},
            "metrics": metrics_only("clip", "image_reward"),
            "torch_threads": 1,
        },
    )
    snakemake(work, "--configfile", "test-config.yaml")
    found = json.loads((work / "results" / "baseline" / "findings.json").read_text())
    assert len(found["findings"]) == 2  # clip_score and image_reward, two vs one
    assert {f["verdict"] for f in found["findings"]} == {"no difference detected"}
    assert all(f["difference"] == 0 and f["p_value"] == 1 for f in found["findings"])
    assert all("the same score on every prompt" in f["sentence"] for f in found["findings"])
    [same] = found["same_images"]  # the same pixels (the PNGs' metadata names the model)
    assert (same["model"], same["reference"], same["pairs"]) == ("two", "one", 8)
    text = (work / "results" / "baseline" / "findings.md").read_text()
    assert "## Same images" in text and "two and one made the same images: all 8" in text
    assert "Same images" in (work / "results" / "baseline" / "index.html").read_text()


def test_one_prompt_is_not_tested_and_old_tables_are_refused(tmp_path):
    frame = pd.DataFrame([row(prompts=1, p_value=float("nan"), ci_low=float("nan"),
                              ci_high=float("nan"), sd=float("nan"))])  # fmt: skip
    found = findings.build(frame, META, SETTINGS, {}, "")
    [only] = found["findings"]
    assert only["verdict"] == "not tested" and "fewer than 2 prompts" in only["sentence"]
    assert "## Not tested" in findings.markdown(found)


def test_cost_varies_by_the_cells_settings():
    from t2ibench.report import cost

    size = {"cells": {"sd": {"settings": {"width": 512, "height": 512}},
                      "hd": {"settings": {"width": 1024, "height": 1024}}}}  # fmt: skip
    assert cost.varies_cost(size)
    assert not cost.varies_cost(
        {"cells": {"a": {"settings": {"shift": 3}}, "b": {"settings": {"shift": 4}}}}
    )


def test_findings_md_keeps_config_text_as_text_and_the_banner_names_the_experiments_models():
    """A cell value with HTML in it (prompt_sr text) is not HTML in findings.md; "p < 0.05"
    stays readable. The demo banner of an experiment names only its own models."""
    from t2ibench.report.html import demo_reasons, experiment_models

    meta = {**META, "cells": {**META["cells"], "shift-4.0": {"values": {"shift": "<img src=x>"}}}}
    found = findings.build(pd.DataFrame([row()]), meta, SETTINGS, {}, "")
    text = findings.markdown(found)
    assert "<img" not in text and "shift=&lt;img src=x>" in text
    assert "p < 0.05" in text
    meta["cells"]["shift-4.0"]["values"]["shift"] = "*a* `b`"  # no emphasis, no code
    text = findings.markdown(findings.build(pd.DataFrame([row()]), meta, SETTINGS, {}, "w"))
    assert "shift=\\*a\\* \\`b\\`" in text and text.count("**") == 2  # the warning's
    config = {"models": [{"name": "a", "source": "builtin:tiny-sdxl"},
                         {"name": "b", "source": "builtin:tiny-sd15"}],
              "metrics": {}}  # fmt: skip
    meta = {"config": config, "models": [{"name": "a"}]}
    reasons = demo_reasons(config, experiment_models(meta))
    assert reasons == ["model a is a built-in tiny model"]
    assert len(demo_reasons(config)) == 2 and experiment_models({}) is None


def test_arms_with_the_same_images_are_said_first():
    same = [{"comparison": "cell vs reference cell", "model": "m", "cell": "shift-4.0",
             "reference": "shift-3.0", "pairs": 12}]  # fmt: skip
    found = findings.build(pd.DataFrame([row()]), META, SETTINGS, {}, "", same=same)
    [item] = found["same_images"]
    assert item["sentence"] == (
        "shift=4.0 and shift=3.0 on m made the same images: all 12 pairs (prompt, seed) have "
        "the same pixels, so every metric scores them the same; the setting changes nothing "
        "here."
    )
    text = findings.markdown(found)
    assert text.index("## Same images") < text.index("## Differences")
    assert findings.build(pd.DataFrame([row()]), META, SETTINGS, {}, "")["same_images"] == []


def test_metrics_no_image_has_a_score_of_are_said_not_tested(base_config):
    """One image per prompt: the diversity metrics have no value anywhere, so no
    comparison of them exists; the findings say so instead of leaving them out."""
    from t2ibench.config import validate_config
    from t2ibench.plan import build_plan
    from t2ibench.verdict_steps import unscored_columns

    base_config["generation"]["images_per_prompt"] = 1
    plan = build_plan(validate_config(base_config))
    results = pd.DataFrame({"image_flag": ["", ""], "clip_score": [20.0, 21.0],
                            "lpips_diversity": [float("nan")] * 2})  # fmt: skip
    unscored = unscored_columns(plan, "baseline", results)
    assert unscored["lpips_diversity"] == "one image per prompt: it compares a prompt's images"
    assert "clip_diversity" in unscored and "clip_score" not in unscored
    assert "Similarity to the prompt's reference image" in unscored["clip_ref_cosine"]
    found = findings.build(pd.DataFrame([row()]), META, SETTINGS, {}, "", unscored=unscored)
    text = findings.markdown(found)
    assert "## Not tested" in text
    assert "- lpips_diversity: no image has a score (one image per prompt: it compares a " in text
    assert found["headline"].startswith("1 of 1 comparisons")
    from t2ibench.report.html import findings_section

    assert f"<summary>Not tested ({len(unscored)})</summary>" in findings_section(found)
