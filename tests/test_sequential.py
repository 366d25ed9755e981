"""Group-sequential stopping (t2ibench.sequential): alpha spending keeps the error rate
under optional stopping, and a clear effect stops early."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from t2ibench import looks, rounds, sequential

PROMPTS, ROUND, SEEDS, CELLS, MARGIN = 40, 10, 2, 6, 0.3


def test_obrien_fleming_spending():
    assert sequential.spent(1.0, 0.05) == pytest.approx(0.05)
    assert sequential.spent(0.25, 0.05) < 0.0001  # almost nothing at the first quarter
    levels = sequential.look_levels([10, 20, 30, 40], 40, 0.05)
    assert sum(levels) == pytest.approx(0.05) and levels == sorted(levels)
    assert sequential.rounds(45, 10) == [10, 20, 30, 40, 45]
    assert sequential.rounds(45, 10, maximum=25) == [10, 20, 25]


def toy_experiment(cells: int, models=("m",)):
    """An experiment plan's shape as t2ibench.rounds reads it: cells "0".."n-1" (the
    reference "0"), the models, the prompts in order."""
    return SimpleNamespace(
        models=list(models),
        cells=[SimpleNamespace(name=str(c)) for c in range(cells)],
        experiment=SimpleNamespace(reference="0"),
        prompts=[SimpleNamespace(index=i) for i in range(PROMPTS)],
    )


def toy_design(margin=MARGIN, metrics=("score",)):
    looks = sequential.rounds(PROMPTS, ROUND)
    return rounds.Design(
        metrics=tuple(metrics),
        margins=dict.fromkeys(metrics, margin),
        round=ROUND,
        looks=tuple(looks),
        levels=tuple(sequential.look_levels(looks, PROMPTS, 0.05)),
        alpha=0.05,
    )


def run(rng, effects: dict[int, float]):
    """One sequential experiment through the workflow's looks (t2ibench.looks.evaluate):
    (any wrong claim, images made, {cell: (look, verdict)})."""
    labels_all = np.repeat(np.arange(PROMPTS), SEEDS)
    prompt = np.repeat(rng.normal(0, 1, PROMPTS), SEEDS)
    scores = {
        c: prompt + effects.get(c, 0.0) + rng.normal(0, 1, PROMPTS * SEEDS) for c in range(CELLS)
    }
    exp, design = toy_experiment(CELLS), toy_design()
    previous, made, before = None, 0, 0
    for k, n in enumerate(design.looks, start=1):
        still = rounds.open_arms(previous, exp)
        made += len(still) * (n - before) * SEEDS
        before, upto = n, n * SEEDS
        values = {"score": {a: (scores[int(a[1])][:upto], labels_all[:upto]) for a in still}}
        previous = looks.evaluate(design, exp, k, previous, values, {"score": True})
        if previous["finished"]:
            break
    stopped = {}
    for arm in previous["arms"].values():
        for record in arm["verdicts"].get("score", {}).values():
            stopped[int(arm["cell"])] = (record["look"] - 1, record["verdict"])
    wrong = any(
        (verdict in ("better", "worse") and effects.get(cell, 0.0) == 0)
        or (
            verdict == "beaten"
            and max(effects.values(), default=0) - effects.get(cell, 0.0) <= MARGIN
        )  # fmt: skip
        for cell, (_, verdict) in stopped.items()
    )
    return wrong, made, stopped


@pytest.mark.slow
def test_no_more_false_findings_than_the_level_under_the_null():
    """1,000 null runs, 4 looks, 5 cells against a reference: any false better / worse /
    beaten in at most 7% of runs (the level, 5%, plus 2 points)."""
    rng = np.random.default_rng(31)
    results = [run(rng, {}) for _ in range(1000)]
    wrong = sum(r[0] for r in results)
    assert wrong / 1000 <= 0.07, wrong
    saved = 1 - np.mean([r[1] for r in results]) / (CELLS * PROMPTS * SEEDS)
    print(f"null: any false finding in {wrong / 1000:.1%} of runs, images saved {saved:.1%}")


@pytest.mark.slow
def test_a_clear_effect_stops_early_and_saves_images():
    """One cell 1.0 better (per-prompt sd about 1): it is found before the last look in
    most runs, and the images saved against the fixed design are counted."""
    rng = np.random.default_rng(37)
    fixed = CELLS * PROMPTS * SEEDS
    early, saved = 0, []
    for _ in range(200):
        wrong, made, stopped = run(rng, {3: 1.0})
        look, verdict = stopped.get(3, (None, None))
        early += verdict == "better" and look is not None and look < 3
        saved.append(1 - made / fixed)
    assert early / 200 >= 0.5, early
    assert 0.0 < np.mean(saved) < 1.0
    print(f"early {early / 200:.2f}, images saved {np.mean(saved):.1%}")
