"""Group-sequential decisions: after each round of prompts, which cells are decided.

A sequential experiment makes its prompts in rounds (the planned prompt order), and
after each round (a "look") stops the cells whose comparisons are decided. The error
rate under this optional stopping is kept by alpha spending (Lan & DeMets 1983,
"Discrete sequential boundaries for clinical trials", Biometrika 70:659-663) with the
O'Brien-Fleming-type spending function alpha(t) = 2 - 2 Phi(z_{1 - alpha/2} / sqrt(t)),
t the share of the maximum prompts seen so far: little alpha early, most at the end.
Each look tests at the alpha spent since the previous look, split over the look's open
comparisons (Bonferroni), so by the union bound the chance of any false finding over all
looks and comparisons stays under alpha (conservative: the looks' correlation is not
used, unlike the exact boundaries).

At a look, a comparison (a cell against the reference cell, per model and deciding
metric) is decided when its paired test (t2ibench.stats) is below the look's level
(better or worse), or when two one-sided tests at that level put it within the margin
(equivalent). A cell stops when every comparison it is in is decided, or when it is
worse, at that level, than the best open cell by more than the margin (clearly beaten).
"""

from __future__ import annotations

import math

import numpy as np

from t2ibench import stats


def spent(fraction: float, alpha: float) -> float:
    """O'Brien-Fleming-type alpha spent by information fraction `fraction` (0..1]."""
    from scipy.stats import norm

    if fraction <= 0:
        return 0.0
    z = norm.ppf(1 - alpha / 2)
    return float(min(alpha, 2 - 2 * norm.cdf(z / math.sqrt(min(fraction, 1.0)))))


def look_levels(prompts_at_looks: list[int], maximum: int, alpha: float) -> list[float]:
    """The alpha each look tests at: what is spent between it and the look before."""
    levels, before = [], 0.0
    for n in prompts_at_looks:
        now = spent(n / maximum, alpha)
        levels.append(max(now - before, 0.0))
        before = now
    return levels


def rounds(prompts: int, size: int, maximum: int | None = None) -> list[int]:
    """Prompts seen at each look: size, 2 size, ..., up to the maximum (or all)."""
    if size < 1 or prompts < 1 or (maximum is not None and maximum < 1):
        raise ValueError("rounds need at least one prompt each")
    top = min(prompts, maximum or prompts)
    looks = list(range(size, top, size))
    return [*looks, top]


def decide(values: dict, reference: str, margin: float, level: float, higher: bool = True):
    """One look over one model and metric. `values` maps each open cell (the reference
    among them) to (scores, prompt labels, seeds) of the same images so far, paired by
    position. Returns {cell: verdict} for the cells decided at this look: "better",
    "worse", "equivalent" (against the reference) or "beaten" (by the best open cell)."""
    others = [c for c in values if c != reference]
    # Bonferroni over each cell against the reference and against every cell that could
    # be the best (the best is chosen from the data: all pairs are counted).
    tests = max(1, len(others) * len(values))
    at = level / tests
    base, labels = values[reference][0], values[reference][1]
    decided = {}
    for cell in others:
        diff = np.asarray(values[cell][0], float) - np.asarray(base, float)
        result = stats.paired_difference(diff, np.zeros_like(diff), labels)
        if result["p_value"] < at:
            decided[cell] = "better" if (result["difference"] > 0) == higher else "worse"
        elif (
            margin
            and stats.tost_p(
                result["difference"], result["sd"], result["prompts"], margin, result["skewness"]
            )
            < at
        ):
            decided[cell] = "equivalent"
    means = {c: float(np.nanmean(v[0])) for c, v in values.items()}
    best = (max if higher else min)(means, key=means.get)
    for cell in others:
        if cell in decided or cell == best:
            continue
        diff = np.asarray(values[cell][0], float) - np.asarray(values[best][0], float)
        diff = diff if higher else -diff
        # H0: the cell is within the margin of the best (not beaten); reject: beaten.
        if stats.noninferiority_p(-diff, labels, -(margin or 0.0)) < at:
            decided[cell] = "beaten"
    return decided
