"""How the statistics of summary.csv, comparisons.csv and the findings hold, by simulation.

Paired differences with a true mean of 0 (or a planted effect), 3 seeds per prompt:
difference = prompt effect + seed noise, the prompt effects normal, skewed (exponential
minus its mean) or heavy-tailed (t with 3 degrees of freedom), each scaled to sd 1, the
seed noise normal with sd 0.5 or 1. For each shape, noise and number of prompts it
prints the share of runs whose 95% CI covers the true mean and the share with p < 0.05
under the null, for t2ibench.stats and, for comparison, the percentile bootstrap and
sign-flip test it replaced.

    python tools/sim_stats.py            # 1,000 runs per shape and size (about 1 min)
    python tools/sim_stats.py --runs 200
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from t2ibench import stats  # noqa: E402

SHAPES = ("normal", "skewed", "heavy")


def prompt_effects(rng, shape: str, n: int) -> np.ndarray:
    if shape == "normal":
        return rng.normal(0, 1, n)
    if shape == "skewed":
        return rng.exponential(1.0, n) - 1.0  # sd 1, mean 0
    return rng.standard_t(3, n) / np.sqrt(3.0)  # t3 has variance 3


def differences(rng, shape: str, prompts: int, seeds=3, effect=0.0, noise=0.5):
    """Paired differences of one simulated comparison and their prompt labels."""
    labels = np.repeat(np.arange(prompts), seeds)
    values = effect + np.repeat(prompt_effects(rng, shape, prompts), seeds)
    return values + rng.normal(0, noise, len(labels)), labels


def _old_method(diff, labels, rng, boot=2000, flips=2000):
    """The percentile bootstrap CI and sign-flip p over prompts (the method replaced)."""
    means = stats.prompt_means(diff, labels)
    n = len(means)
    draws = means[rng.integers(0, n, size=(boot, n))].mean(axis=1)
    low, high = np.percentile(draws, [2.5, 97.5])
    signs = rng.choice([-1.0, 1.0], size=(flips, n))
    null = np.abs((signs * means).mean(axis=1))
    p = (np.sum(null >= abs(means.mean()) - 1e-12) + 1) / (flips + 1)
    return low, high, p


def run(runs: int, sizes=(10, 20, 30), noises=(0.5, 1.0), seed: int = 20261202) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for noise, prompts, shape in [(u, n, s) for u in noises for n in sizes for s in SHAPES]:
        cover = positive = old_cover = old_positive = 0
        for _ in range(runs):
            diff, labels = differences(rng, shape, prompts, noise=noise)
            result = stats.paired_difference(diff, np.zeros_like(diff), labels)
            cover += result["ci_low"] <= 0 <= result["ci_high"]
            positive += result["p_value"] < 0.05
            low, high, p = _old_method(diff, labels, rng)
            old_cover += low <= 0 <= high
            old_positive += p < 0.05
        rows.append(
            {
                "noise": noise,
                "prompts": prompts,
                "shape": shape,
                "coverage": cover / runs,
                "false_positive": positive / runs,
                "bootstrap_coverage": old_cover / runs,
                "signflip_false_positive": old_positive / runs,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    print(f"{args.runs} runs each; 3 seeds per prompt; true difference 0")
    print("noise prompts   shape  coverage  p<0.05 | bootstrap coverage  sign-flip p<0.05")
    for row in run(args.runs):
        print(
            f"{row['noise']:>5} {row['prompts']:>7} {row['shape']:>7}  {row['coverage']:>8.1%} "
            f"{row['false_positive']:>7.1%} | {row['bootstrap_coverage']:>18.1%} "
            f"{row['signflip_false_positive']:>17.1%}"
        )


if __name__ == "__main__":
    main()
