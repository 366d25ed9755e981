"""Bootstrap CIs over prompts and paired permutation tests."""

from __future__ import annotations

import numpy as np

from t2ibench.stats import bootstrap_ci, paired_difference, permutation_p


def test_bootstrap_ci_covers_the_mean_and_resamples_prompts():
    rng = np.random.default_rng(1)
    prompts = np.repeat(np.arange(40), 4)
    values = rng.normal(10.0, 1.0, size=len(prompts))
    low, high = bootstrap_ci(values, prompts)
    assert low < values.mean() < high and high - low < 1.0
    assert (low, high) == bootstrap_ci(values, prompts)  # fixed seed: same numbers
    # Images of one prompt that move together widen the interval: the prompt is the unit.
    shared = values + np.repeat(rng.normal(0, 3.0, size=40), 4)
    low2, high2 = bootstrap_ci(shared, prompts)
    assert high2 - low2 > 2 * (high - low)
    assert np.isnan(bootstrap_ci([1.0, 2.0], [0, 0])[0])  # one prompt: no interval


def test_permutation_p_detects_a_shift_and_not_noise():
    rng = np.random.default_rng(2)
    prompts = np.repeat(np.arange(20), 2)
    assert permutation_p(rng.normal(1.0, 0.5, size=40), prompts) < 0.001
    assert permutation_p(rng.normal(0.0, 0.5, size=40), prompts) > 0.05
    # All 2^3 sign patterns of 3 prompts: the observed one is the most extreme, p = 2/8.
    assert abs(permutation_p([1.0, 1.0, 1.0], [0, 1, 2]) - 0.25) < 0.02


def test_paired_difference_matches_pairs():
    a = np.array([2.0, 3.0, 4.0, 5.0, np.nan])
    b = np.array([1.0, 1.0, 1.0, 1.0, 1.0])
    result = paired_difference(a, b, [0, 1, 2, 3, 4])
    assert result["pairs"] == 4 and result["prompts"] == 4
    assert result["difference"] == 2.5
    assert result["ci_low"] <= 2.5 <= result["ci_high"]
