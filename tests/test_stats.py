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


def _synthetic(rng, prompts=40, images=4, mean=0.0):
    """Scores with a per-prompt effect (images of one prompt move together) and noise."""
    labels = np.repeat(np.arange(prompts), images)
    effect = np.repeat(rng.normal(0.0, 1.0, size=prompts), images)
    return mean + effect + rng.normal(0.0, 0.5, size=len(labels)), labels


def test_bootstrap_ci_covers_the_true_mean_95_percent_of_the_time():
    rng = np.random.default_rng(20261124)
    covered = 0
    for _ in range(200):
        values, prompts = _synthetic(rng, mean=3.0)
        low, high = bootstrap_ci(values, prompts)
        covered += low <= 3.0 <= high
    assert 0.92 <= covered / 200 <= 0.98, covered


def test_an_image_level_bootstrap_would_undercover():
    """The reason prompts are resampled: treating images as independent gives CIs that
    cover the true mean far less often than 95% when images of a prompt move together."""
    rng = np.random.default_rng(7)
    covered = 0
    for _ in range(200):
        values, prompts = _synthetic(rng, mean=3.0)
        low, high = bootstrap_ci(values, np.arange(len(values)))  # each image its own unit
        covered += low <= 3.0 <= high
    assert covered / 200 < 0.85, covered


def test_permutation_false_positive_rate_is_about_5_percent():
    rng = np.random.default_rng(11)
    positives = 0
    for _ in range(200):
        a, prompts = _synthetic(rng)
        # b shares a's prompt effects (paired) with its own per-prompt and per-image
        # deviations, symmetric around no difference
        b = a + np.repeat(rng.normal(0.0, 0.3, size=40), 4) + rng.normal(0.0, 0.5, size=len(a))
        positives += paired_difference(a, b, prompts)["p_value"] < 0.05
    assert 0.03 <= positives / 200 <= 0.07, positives
