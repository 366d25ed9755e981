"""Uncertainty for summary.csv, paired tests for comparisons.csv, and what a sample of
prompts can detect.

The images of one prompt are not independent (they share the prompt's difficulty), so
the unit is the prompt: every value is first averaged per prompt (over its seeds), and
the statistics are over those per-prompt means.

- CI of a mean, and of a paired difference (values matched on (prompt, seed), each
  pair's difference averaged per prompt): the union of Student's t-interval and Hall's
  skewness-corrected t-interval (Hall 1992, "On the removal of skewness by
  transformation", JRSS B 54:221-228), both over prompts with df = prompts - 1.
- p-value: the larger of the two tests' (a difference is declared only when the t-test
  and its skewness-corrected form both find it). For symmetric scores the two agree.
- Equivalence within a margin: two one-sided tests (TOST; Schuirmann 1987), each the
  larger p of the two forms.
- Power: the smallest difference a paired t-test over prompts detects with 80% power at
  a level, and the prompts needed for a given difference (the noncentral t).

Why: at 10 prompts (the demo's default) a percentile bootstrap over prompts covers the
true mean 85-91% of the time, and a plain t-interval 91-93% for skewed prompt effects;
Hall's correction fixes skewness but undercovers for heavy tails (92-93%), the t-interval
the reverse; their union covers 94-97% for normal, skewed and heavy-tailed effects at 10
to 30 prompts (`python tools/sim_stats.py`). Below FEW_PROMPTS prompts the tables say
the sample is small (`few_prompts`): skewed scores there may cover a point or two less.
Below SKEW_FROM (6) prompts the sample skewness is mostly noise: at 4 prompts the union's
lower end fell below the smallest prompt mean by more than the prompts' whole range in
9-20% of simulated runs (normal, skewed and heavy-tailed effects; at 6 prompts in 0.1%),
so there Student's t is used alone (it covered 92-96% at 4 prompts).
"""

from __future__ import annotations

import functools
import math

import numpy as np

LEVEL = 0.95
POWER = 0.8
FEW_PROMPTS = 20
SKEW_FROM = 6  # fewer prompts: Student's t alone
METHOD = (
    "paired on (prompt, seed), averaged per prompt; 95% CI and p over prompts: Student's t "
    f"and, from {SKEW_FROM} prompts on, Hall's skewness-corrected t (union of the intervals, "
    "larger p)"
)


def prompt_means(values, prompts) -> np.ndarray:
    """The mean of each prompt's values (NaN dropped), one per prompt with a value."""
    values = np.asarray(values, dtype=float)
    prompts = np.asarray(prompts)
    keep = ~np.isnan(values)
    values, prompts = values[keep], prompts[keep]
    if len(values) == 0:
        return np.empty(0)
    _, index = np.unique(prompts, return_inverse=True)
    sums = np.bincount(index, weights=values)
    counts = np.bincount(index)
    return sums / counts


def _moments(means: np.ndarray) -> tuple[int, float, float, float]:
    """n, mean, sd (ddof 1) and sample skewness of the per-prompt means."""
    n = len(means)
    mean = float(means.mean())
    sd = float(means.std(ddof=1)) if n > 1 else float("nan")
    spread = float(means.std(ddof=0)) if n > 1 else 0.0
    skew = float(((means - mean) ** 3).mean() / spread**3) if spread > 0 else 0.0
    return n, mean, sd, skew


def _hall(t: float, skew: float, n: int) -> float:
    """Hall's transformation of a standardised mean t = (mean - mu) / sd."""
    return t + skew * t**2 / 3 + skew**2 * t**3 / 27 + skew / (6 * n)


def _hall_inverse(x: float, skew: float, n: int) -> float:
    if abs(skew) < 1e-12:
        return x - skew / (6 * n)
    return float((np.cbrt(1 + skew * (x - skew / (6 * n))) - 1) * 3 / skew)


def _correction(skew: float, n: int) -> float:
    """The skewness Hall's correction uses: none below SKEW_FROM prompts, where a sample
    skewness is mostly noise and the corrected interval can reach far past the data."""
    return skew if n >= SKEW_FROM else 0.0


def _statistics(mean: float, mu: float, sd: float, skew: float, n: int) -> tuple[float, float]:
    """The t statistic and its skewness-corrected form for H0: mean = mu."""
    skew = _correction(skew, n)
    t = (mean - mu) / sd
    return math.sqrt(n) * t, math.sqrt(n) * _hall(t, skew, n)


def _t_sf(t: float, df: int) -> float:
    """P(T > t) for Student's t with df degrees of freedom (scipy.special: fast)."""
    from scipy import special

    return float(special.stdtr(df, -t))


def _t_quantile(level: float, df: int) -> float:
    from scipy import special

    return float(special.stdtrit(df, 0.5 + level / 2))


def _interval(means: np.ndarray, level: float) -> tuple[float, float]:
    n, mean, sd, skew = _moments(means)
    if n < 2:
        return float("nan"), float("nan")
    if sd == 0:
        return mean, mean
    q = _t_quantile(level, n - 1) / math.sqrt(n)
    skew = _correction(skew, n)
    low = min(mean - q * sd, mean - sd * _hall_inverse(q, skew, n))
    high = max(mean + q * sd, mean - sd * _hall_inverse(-q, skew, n))
    return low, high


def mean_ci(values, prompts, level: float = LEVEL) -> tuple[float, float]:
    """CI of the mean over prompts; NaN when fewer than 2 prompts."""
    means = prompt_means(values, prompts)
    return _interval(means, level) if len(means) >= 2 else (float("nan"), float("nan"))


def _two_sided_p(means: np.ndarray, mu: float = 0.0) -> float:

    n, mean, sd, skew = _moments(means)
    if n < 2:
        return float("nan")
    if sd == 0:  # every prompt the same difference: the exact sign test's p
        return 1.0 if mean == mu else min(1.0, 2 * 0.5**n)
    return float(max(2 * _t_sf(abs(s), n - 1) for s in _statistics(mean, mu, sd, skew, n)))


def paired_difference(a, b, prompts, level: float = LEVEL) -> dict:
    """a - b over matched pairs: mean, CI and p over prompts, the per-prompt sd.

    Differences within rounding of the scores (1e-9 of their size: a scorer's float
    noise between batches) count as 0, so that the same images score the same."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = a - b
    scale = max([1.0, *(float(np.nanmax(np.abs(x))) for x in (a, b) if np.isfinite(x).any())])
    diff[np.abs(diff) <= 1e-9 * scale] = 0.0
    keep = ~np.isnan(diff)
    diff, prompts = diff[keep], np.asarray(prompts)[keep]
    means = prompt_means(diff, prompts)
    n = len(means)
    nan = float("nan")
    low, high = _interval(means, level) if n else (nan, nan)
    return {
        "pairs": int(len(diff)),
        "prompts": n,
        "difference": float(means.mean()) if n else nan,
        "ci_low": low,
        "ci_high": high,
        "p_value": _two_sided_p(means) if n else nan,
        "sd": float(means.std(ddof=1)) if n > 1 else nan,
        "skewness": _moments(means)[3] if n > 1 else nan,
        "few_prompts": n < FEW_PROMPTS,
    }


def tost_p(difference: float, sd: float, prompts: int, margin: float, skew: float = 0.0):
    """p of "the difference is within +-margin": two one-sided tests over prompts, each
    the larger p of the t-test and its skewness-corrected form."""

    if prompts < 2 or math.isnan(sd) or math.isnan(difference):
        return float("nan")
    if sd == 0:  # every prompt the same difference: the exact sign test's p
        return 0.5**prompts if abs(difference) < margin else 1.0
    df = prompts - 1
    above = _statistics(difference, -margin, sd, skew, prompts)  # H0: diff <= -margin
    below = _statistics(difference, margin, sd, skew, prompts)  # H0: diff >= margin
    p_above = max(_t_sf(s, df) for s in above)
    p_below = max(1.0 - _t_sf(s, df) for s in below)
    return max(p_above, p_below)


def noninferiority_p(differences, prompts, margin: float) -> float:
    """p of "a - b is not below -margin" from paired differences a - b (H0: the mean
    difference <= -margin; one-sided, the larger p of the t-test and its
    skewness-corrected form)."""

    means = prompt_means(differences, prompts)
    n, mean, sd, skew = _moments(means) if len(means) else (0, 0.0, 0.0, 0.0)
    if n < 2:
        return float("nan")
    if sd == 0:  # every prompt the same difference: the exact sign test's p
        return 0.5**n if mean > -margin else 1.0
    return max(_t_sf(s, n - 1) for s in _statistics(mean, -margin, sd, skew, n))


def adjust(p_values, method: str = "holm") -> np.ndarray:
    """p-values adjusted for multiple comparisons: "holm" (Holm 1979: family-wise error)
    or "bh" (Benjamini & Hochberg 1995: false discovery rate); NaN stays NaN and is not
    counted."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    present = np.flatnonzero(~np.isnan(p))
    m = len(present)
    if not m:
        return out
    order = present[np.argsort(p[present], kind="stable")]
    ranked = p[order]
    if method == "holm":
        adjusted = np.maximum.accumulate((m - np.arange(m)) * ranked)
    elif method == "bh":
        adjusted = np.minimum.accumulate((m * ranked / np.arange(1, m + 1))[::-1])[::-1]
    else:
        raise ValueError(f"unknown adjustment {method!r}")
    out[order] = np.minimum(adjusted, 1.0)
    return out


def t_power(effect: float, prompts: int, alpha: float) -> float:
    """Power of a two-sided one-sample t-test over `prompts` at level `alpha` for a true
    standardised effect (mean / sd): the noncentral t's tails (scipy's nct; where it
    gives NaN, integrated over the chi-square of the sd: T = (Z + ncp) / sqrt(V / df))."""
    from scipy import integrate, stats

    df = prompts - 1
    critical = stats.t.ppf(1 - alpha / 2, df)
    ncp = effect * math.sqrt(prompts)
    power = stats.nct.sf(critical, df, ncp) + stats.nct.cdf(-critical, df, ncp)
    if not math.isnan(power):
        return float(min(max(power, 0.0), 1.0))

    def tails(v: float) -> float:
        scale = critical * math.sqrt(v / df)
        return (stats.norm.cdf(ncp - scale) + stats.norm.cdf(-scale - ncp)) * stats.chi2.pdf(v, df)

    power, _ = integrate.quad(tails, 0, math.inf, limit=200)
    return float(min(max(power, 0.0), 1.0))


@functools.lru_cache(maxsize=1024)
def _detectable_effect(prompts: int, alpha: float, power: float) -> float:
    """The standardised effect a t-test over `prompts` detects with `power` (root of
    t_power on an expanding bracket)."""
    from scipy.optimize import brentq

    high = 1.0
    while t_power(high, prompts, alpha) < power:
        high *= 2
        if high > 1e6:
            return float("nan")
    return float(brentq(lambda e: t_power(e, prompts, alpha) - power, 0.0, high, xtol=1e-10))


def detectable_difference(sd: float, prompts: int, alpha: float, power: float = POWER) -> float:
    """The smallest paired difference a two-sided t-test over `prompts` detects with
    `power` at level `alpha`, for per-prompt differences of this sd."""
    if prompts < 2 or math.isnan(sd) or sd == 0:  # no spread: nothing to scale by
        return float("nan")
    return _detectable_effect(int(prompts), float(alpha), float(power)) * sd


LARGE_N = 100_000


def prompts_needed(sd: float, difference: float, alpha: float, power: float = POWER) -> int:
    """The fewest prompts a paired t-test needs to detect `difference` with `power` at
    `alpha` (from the normal approximation, then stepped to the exact answer; past
    LARGE_N prompts the t-test is the z-test to within a prompt, and the approximation is
    the answer)."""
    from scipy import stats

    if not sd > 0:
        return 2
    effect = abs(difference) / sd
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    n = max(2, math.ceil((z / effect) ** 2))
    if n > LARGE_N:
        return n
    enough = power - 1e-9  # the detectable difference's own n reaches `power` exactly
    while n > 2 and t_power(effect, n - 1, alpha) >= enough:
        n -= 1
    while t_power(effect, n, alpha) < enough:
        n += 1
    return n


def seed_variance(values, prompts) -> tuple[float, float]:
    """(between-prompt variance, within-prompt variance) of values over prompts and their
    seeds (a one-way random-effects split, method of moments; the first at least 0):
    per-prompt means of k seeds vary by between + within / k."""
    values = np.asarray(values, dtype=float)
    prompts = np.asarray(prompts)
    keep = ~np.isnan(values)
    values, prompts = values[keep], prompts[keep]
    labels, index = np.unique(prompts, return_inverse=True)
    counts = np.bincount(index)
    means = np.bincount(index, weights=values) / counts
    residual = values - means[index]
    df_within = len(values) - len(labels)
    within = float((residual**2).sum() / df_within) if df_within > 0 else 0.0
    if len(labels) < 2:
        return float("nan"), within
    k = float(np.mean(counts))
    between = max(0.0, float(means.var(ddof=1)) - within / k)
    return between, within
