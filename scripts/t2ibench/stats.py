"""Uncertainty for summary.csv and paired tests for comparisons.csv.

The images of one prompt are not independent (they share the prompt's difficulty), so
the unit of resampling is the prompt:

- CI of a mean: percentile bootstrap over prompts (B resamples of the prompts with
  replacement; the statistic is the mean over every value of the drawn prompts).
- Paired difference (a cell against the reference cell, or a model against the first
  model): values are matched on (prompt, seed); the difference of each pair is averaged
  per prompt's pairs as above for its CI, and the p-value is a two-sided sign-flip
  permutation test over prompts (under "no difference" each prompt's paired
  differences are as likely negated).

Resampling uses a fixed seed, so the same results give the same numbers.
"""

from __future__ import annotations

import numpy as np

BOOTSTRAP = 2000
PERMUTATIONS = 10000
SEED = 0
METHOD = (
    f"paired on (prompt, seed); 95% CI: percentile bootstrap over prompts ({BOOTSTRAP} "
    f"resamples); p: two-sided sign-flip permutation test over prompts ({PERMUTATIONS})"
)


def _by_prompt(values, prompts) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt: the sum and the count of its values (NaN dropped)."""
    values = np.asarray(values, dtype=float)
    prompts = np.asarray(prompts)
    keep = ~np.isnan(values)
    values, prompts = values[keep], prompts[keep]
    labels, index = np.unique(prompts, return_inverse=True)
    sums = np.bincount(index, weights=values, minlength=len(labels))
    counts = np.bincount(index, minlength=len(labels)).astype(float)
    return sums, counts


def bootstrap_ci(values, prompts, level: float = 0.95) -> tuple[float, float]:
    """CI of the mean of `values`, resampling prompts; NaN when fewer than 2 prompts."""
    sums, counts = _by_prompt(values, prompts)
    if len(sums) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(SEED)
    draws = rng.integers(0, len(sums), size=(BOOTSTRAP, len(sums)))
    stats = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(stats, [tail, 100 - tail])
    return float(low), float(high)


def permutation_p(differences, prompts) -> float:
    """Two-sided sign-flip permutation p-value of mean(differences) = 0, over prompts."""
    sums, counts = _by_prompt(differences, prompts)
    if len(sums) == 0:
        return float("nan")
    observed = abs(sums.sum() / counts.sum())
    rng = np.random.default_rng(SEED)
    signs = rng.choice([-1.0, 1.0], size=(PERMUTATIONS, len(sums)))
    null = np.abs((signs * sums).sum(axis=1) / counts.sum())
    # Counting the observed statistic itself keeps p > 0 (Phipson & Smyth 2010).
    return float((np.sum(null >= observed - 1e-12) + 1) / (PERMUTATIONS + 1))


def paired_difference(a, b, prompts) -> dict:
    """a - b over matched pairs: mean, 95% CI (bootstrap over prompts), p-value."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    keep = ~np.isnan(diff)
    diff, prompts = diff[keep], np.asarray(prompts)[keep]
    if len(diff) == 0:
        nan = float("nan")
        return {"pairs": 0, "prompts": 0, "difference": nan, "ci_low": nan, "ci_high": nan,
                "p_value": nan}  # fmt: skip
    low, high = bootstrap_ci(diff, prompts)
    return {
        "pairs": int(len(diff)),
        "prompts": int(len(np.unique(prompts))),
        "difference": float(diff.mean()),
        "ci_low": low,
        "ci_high": high,
        "p_value": permutation_p(diff, prompts),
    }
