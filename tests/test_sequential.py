"""Group-sequential stopping (t2ibench.sequential): alpha spending keeps the error rate
under optional stopping, and a clear effect stops early."""

from __future__ import annotations

import numpy as np
import pytest

from t2ibench import sequential

PROMPTS, ROUND, SEEDS, CELLS, MARGIN = 40, 10, 2, 6, 0.3


def test_obrien_fleming_spending():
    assert sequential.spent(1.0, 0.05) == pytest.approx(0.05)
    assert sequential.spent(0.25, 0.05) < 0.0001  # almost nothing at the first quarter
    levels = sequential.look_levels([10, 20, 30, 40], 40, 0.05)
    assert sum(levels) == pytest.approx(0.05) and levels == sorted(levels)
    assert sequential.rounds(45, 10) == [10, 20, 30, 40, 45]
    assert sequential.rounds(45, 10, maximum=25) == [10, 20, 25]


def run(rng, effects: dict[int, float]):
    """One sequential experiment: (any wrong claim, images made, {cell: (look, verdict)})."""
    labels_all = np.repeat(np.arange(PROMPTS), SEEDS)
    prompt = np.repeat(rng.normal(0, 1, PROMPTS), SEEDS)
    scores = {
        c: prompt + effects.get(c, 0.0) + rng.normal(0, 1, PROMPTS * SEEDS) for c in range(CELLS)
    }
    looks = sequential.rounds(PROMPTS, ROUND)
    levels = sequential.look_levels(looks, PROMPTS, 0.05)
    open_cells, stopped, made = set(range(CELLS)), {}, 0
    previous = 0
    for k, (n, level) in enumerate(zip(looks, levels, strict=True)):
        made += len(open_cells) * (n - previous) * SEEDS
        previous = n
        upto = n * SEEDS
        values = {c: (scores[c][:upto], labels_all[:upto], SEEDS) for c in open_cells}
        for cell, verdict in sequential.decide(values, 0, MARGIN, level).items():
            stopped[cell] = (k, verdict)
            open_cells.discard(cell)
        if open_cells == {0}:
            break
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
    wrong = sum(run(rng, {})[0] for _ in range(1000))
    assert wrong / 1000 <= 0.07, wrong


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
