"""Statistics over prompts (t2ibench.stats): CIs, paired tests, equivalence, multiple
comparisons and power, each checked by simulation against its nominal level."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from t2ibench import stats


def effects(rng, shape: str, n: int) -> np.ndarray:
    if shape == "normal":
        return rng.normal(0, 1, n)
    if shape == "skewed":
        return rng.exponential(1.0, n) - 1.0
    return rng.standard_t(3, n) / np.sqrt(3.0)


def simulated(rng, shape: str, prompts: int, seeds: int = 3, effect: float = 0.0, noise=0.5):
    """Paired differences with prompt effects of a shape, seed noise, a true mean."""
    labels = np.repeat(np.arange(prompts), seeds)
    values = effect + np.repeat(effects(rng, shape, prompts), seeds)
    return values + rng.normal(0, noise, len(labels)), labels


@pytest.mark.parametrize("prompts", [10, 30])
@pytest.mark.parametrize("shape", ["normal", "skewed", "heavy"])
def test_coverage_and_false_positives_hold_at_the_sample_sizes_people_use(shape, prompts):
    """1,000 null comparisons, 3 seeds per prompt: 95% CIs cover the true difference
    93-97% of the time and p < 0.05 comes 3-7% of the time (skewed at 10 prompts: at
    least 90% and at most 9%), for two levels of seed noise."""
    rng = np.random.default_rng(1000 + prompts)
    for noise in (0.5, 1.0):
        cover = positive = 0
        for _ in range(1000):
            diff, labels = simulated(rng, shape, prompts, noise=noise)
            result = stats.paired_difference(diff, np.zeros_like(diff), labels)
            cover += result["ci_low"] <= 0 <= result["ci_high"]
            positive += result["p_value"] < 0.05
        low, high, most = (0.90, 0.97, 0.09) if (shape, prompts) == ("skewed", 10) else (
            0.93, 0.97, 0.07)  # fmt: skip
        assert low <= cover / 1000 <= high, (noise, cover)
        assert 0.03 <= positive / 1000 <= most, (noise, positive)


def test_symmetric_scores_give_students_t():
    """Without skewness the interval and p are the paired t-test's over prompt means."""
    labels = np.repeat(np.arange(6), 2)
    per_prompt = 0.8 + np.array([-3.0, -1.0, -0.5, 0.5, 1.0, 3.0])  # symmetric: no skewness
    diff = np.repeat(per_prompt, 2) + np.tile([-0.1, 0.1], 6)
    result = stats.paired_difference(diff, np.zeros_like(diff), labels)
    reference = scipy_stats.ttest_1samp(per_prompt, 0.0)
    low, high = reference.confidence_interval(0.95)
    assert result["p_value"] == pytest.approx(reference.pvalue, abs=1e-3)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((low, high), abs=1e-2)
    assert result["prompts"] == 6 and result["pairs"] == 12 and result["few_prompts"]


def test_below_six_prompts_skewness_is_not_corrected():
    """At 4 or 5 prompts a sample skewness is mostly noise: skewed per-prompt means get
    the paired t-test's interval and p; from 6 prompts the skewness-corrected form is
    joined to them and widens the interval."""
    for per_prompt in ([10.4, 10.6, 11.0, 25.0], [10.4, 10.5, 10.6, 11.0, 25.0]):
        per_prompt = np.array(per_prompt)
        result = stats.paired_difference(
            per_prompt, np.zeros(len(per_prompt)), range(len(per_prompt))
        )
        reference = scipy_stats.ttest_1samp(per_prompt, 0.0)
        assert result["skewness"] > 1.0
        assert result["p_value"] == pytest.approx(reference.pvalue, rel=1e-6)
        low, high = reference.confidence_interval(0.95)
        assert (result["ci_low"], result["ci_high"]) == pytest.approx((low, high), rel=1e-6)
        assert stats.mean_ci(per_prompt, range(len(per_prompt))) == pytest.approx((low, high))
    six = np.array([10.4, 10.5, 10.6, 10.8, 11.0, 25.0])
    result = stats.paired_difference(six, np.zeros(6), range(6))
    low, high = scipy_stats.ttest_1samp(six, 0.0).confidence_interval(0.95)
    assert result["ci_low"] <= low and result["ci_high"] > high + 1.0


def test_the_prompt_is_the_unit():
    """Seeds of one prompt that move together widen the interval; NaN pairs drop out;
    one prompt gives no interval."""
    rng = np.random.default_rng(1)
    prompts = np.repeat(np.arange(40), 4)
    values = rng.normal(10.0, 1.0, size=len(prompts))
    low, high = stats.mean_ci(values, prompts)
    assert low < values.mean() < high and high - low < 1.0
    shared = values + np.repeat(rng.normal(0, 3.0, size=40), 4)
    low2, high2 = stats.mean_ci(shared, prompts)
    assert high2 - low2 > 2 * (high - low)
    assert np.isnan(stats.mean_ci([1.0, 2.0], [0, 0])[0])
    a = np.array([2.0, 3.0, 4.0, 5.0, np.nan])
    result = stats.paired_difference(a, np.ones(5), [0, 1, 2, 3, 4])
    assert (result["pairs"], result["prompts"], result["difference"]) == (4, 4, 2.5)
    same = stats.paired_difference(np.ones(6), np.ones(6), [0, 0, 1, 1, 2, 2])
    assert same["p_value"] == 1.0 and same["ci_low"] == same["ci_high"] == 0.0


def test_equivalence_is_two_one_sided_tests():
    """TOST: a difference well inside the margin is equivalent, one near its edge is not;
    for symmetric data each one-sided p is a t-test's."""
    per_prompt = np.array([-0.2, -0.1, 0.0, 0.05, 0.1, 0.15])
    n, mean, sd = 6, per_prompt.mean(), per_prompt.std(ddof=1)
    p = stats.tost_p(mean, sd, n, margin=0.5, skew=0.0)
    lower = scipy_stats.ttest_1samp(per_prompt, -0.5, alternative="greater").pvalue
    upper = scipy_stats.ttest_1samp(per_prompt, 0.5, alternative="less").pvalue
    assert p == pytest.approx(max(lower, upper), rel=1e-6)
    assert p < 0.01 and stats.tost_p(mean, sd, n, margin=0.05) > 0.1
    assert stats.tost_p(0.0, 0.0, 10, margin=0.1) == 0.5**10  # the exact sign test's


def test_adjusted_p_values_are_holm_and_benjamini_hochberg():
    p = [0.01, 0.04, 0.03, np.nan, 0.2]
    holm = stats.adjust(p, "holm")
    # Holm by hand: sorted 0.01, 0.03, 0.04, 0.2 times 4, 3, 2, 1, made monotone.
    np.testing.assert_allclose(holm[[0, 2, 1, 4]], [0.04, 0.09, 0.09, 0.2])
    assert np.isnan(holm[3])
    bh = stats.adjust(p, "bh")
    # BH by hand: p * m / rank, made monotone from the top: 0.04, 0.0533, 0.0533, 0.2.
    np.testing.assert_allclose(bh[[0, 2, 1, 4]], [0.04, 0.16 / 3, 0.16 / 3, 0.2])


def test_the_detectable_difference_is_detected_80_percent_of_the_time():
    """A planted difference of the size detectable_difference gives (prompts, level) is
    found in about 80% of 1,000 simulated comparisons; prompts_needed inverts it."""
    rng = np.random.default_rng(5)
    prompts, alpha = 20, 0.01
    sd = np.sqrt(1 + 0.5**2 / 3)  # of the per-prompt mean differences simulated below
    delta = stats.detectable_difference(sd, prompts, alpha)
    found = 0
    for _ in range(1000):
        diff, labels = simulated(rng, "normal", prompts, effect=delta)
        found += stats.paired_difference(diff, np.zeros_like(diff), labels)["p_value"] < alpha
    assert 0.74 <= found / 1000 <= 0.86, found
    assert stats.prompts_needed(sd, delta, alpha) == prompts
    assert stats.prompts_needed(sd, delta / 2, alpha) > 3 * prompts


def test_seed_variance_splits_prompt_and_seed_noise():
    rng = np.random.default_rng(9)
    labels = np.repeat(np.arange(400), 4)
    values = np.repeat(rng.normal(0, 2.0, 400), 4) + rng.normal(0, 1.0, len(labels))
    between, within = stats.seed_variance(values, labels)
    assert between == pytest.approx(4.0, rel=0.15) and within == pytest.approx(1.0, rel=0.1)


def test_power_is_exact_at_few_prompts_and_strict_levels():
    """The detectable difference has 80% power by simulation where a root-finder on
    scipy's noncentral t gave wrong answers (3 prompts at 0.001, 5 at 0.05 / 40), and
    prompts_needed is the fewest prompts with 80%."""
    rng = np.random.default_rng(8)
    for prompts, alpha in [(3, 0.001), (5, 0.05 / 40), (12, 0.01)]:
        effect = stats.detectable_difference(1.0, prompts, alpha)
        x = rng.normal(effect, 1.0, (200_000, prompts))
        t = x.mean(1) / (x.std(1, ddof=1) / np.sqrt(prompts))
        critical = scipy_stats.t.ppf(1 - alpha / 2, prompts - 1)
        assert np.mean(np.abs(t) > critical) == pytest.approx(0.8, abs=0.01), prompts
    for difference in (0.1, 0.5, 3.0, 6.0, 10.0, 20.0):
        n = stats.prompts_needed(1.0, difference, 0.05 / 40)
        assert stats.t_power(difference, n, 0.05 / 40) >= 0.8
        assert n == 2 or stats.t_power(difference, n - 1, 0.05 / 40) < 0.8


def test_identical_differences_give_the_sign_tests_p():
    """Every prompt +1: not p = 0 from two prompts, but the exact sign test's p."""
    two = stats.paired_difference(np.ones(2), np.zeros(2), [0, 1])
    assert two["p_value"] == 0.5
    ten = stats.paired_difference(np.ones(10), np.zeros(10), range(10))
    assert ten["p_value"] == pytest.approx(2 * 0.5**10)


def test_adjustment_and_power_agree_with_statsmodels():
    """An independent implementation: statsmodels' multipletests and TTestPower."""
    from statsmodels.stats.multitest import multipletests
    from statsmodels.stats.power import TTestPower

    rng = np.random.default_rng(12)
    p = rng.uniform(0, 0.2, 40)
    for ours, theirs in [("holm", "holm"), ("bh", "fdr_bh")]:
        np.testing.assert_allclose(stats.adjust(p, ours), multipletests(p, method=theirs)[1])
    for prompts, alpha in [(10, 0.05), (30, 0.01), (50, 0.001)]:
        effect = stats.detectable_difference(1.0, prompts, alpha)
        assert TTestPower().power(effect, prompts, alpha) == pytest.approx(0.8, abs=1e-6)


def test_a_scorers_float_noise_is_no_difference():
    """The same images scored in other batches differ by float noise (1e-11): that is
    no difference (sd 0, p 1), as exactly equal scores are; 1e-6 is a difference."""
    rng = np.random.default_rng(2)
    scores = rng.uniform(0.2, 0.9, 12)
    labels = np.repeat(np.arange(6), 2)
    noisy = stats.paired_difference(scores + rng.normal(0, 1e-11, 12), scores, labels)
    assert noisy["difference"] == 0 and noisy["sd"] == 0 and noisy["p_value"] == 1.0
    real = stats.paired_difference(scores + rng.normal(0, 1e-6, 12), scores, labels)
    assert real["sd"] > 0
