"""Sample-size planning: what a planned run can detect, from the scores of an earlier one.

For each metric the paired differences of an earlier run of the experiment (its full
run, else its quick run) are split into the variance between prompts and the variance
between seeds of a prompt (t2ibench.stats.seed_variance): the per-prompt mean difference
of a run with k seeds varies by between + within / k. With the planned prompts and
seeds that gives, per metric, the smallest difference the findings can detect with 80%
power at the level of their first adjusted step (alpha over the planned number of
comparisons), and the prompts needed for a difference the user names.

`python scripts/cli.py plan --power [--difference clip_score=0.5]`; the start-up line of
a run says the detectable differences too.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from t2ibench import stats
from t2ibench.errors import InputError
from t2ibench.plan import Plan


def earlier_scores(plan: Plan, experiment: str) -> Path | None:
    """results.csv of an earlier full run of the experiment, else of its quick run."""
    for folder in (Path(plan.results_dir), Path(plan.results_dir) / "quick"):
        path = folder / experiment / "results.csv"
        if path.is_file() and path.stat().st_size > 0:
            return path
    return None


def planned_comparisons(plan: Plan, experiment: str, metrics: int) -> int:
    """How many comparisons the findings of the planned experiment adjust for."""
    exp = plan.experiments[experiment]
    cells, models = len(exp.cells), len(exp.models)
    return max(1, metrics * ((cells - 1) * models + (models - 1) * cells))


def variance_of(plan: Plan, experiment: str, results) -> dict[str, tuple[float, float, int]]:
    """Per metric: (between-prompt, within-prompt variance of the paired differences,
    comparisons they come from), pooled over the earlier run's comparisons. A comparison
    whose differences are all zero (two cells or models that made the same images) says
    nothing of the noise and is left out."""
    from t2ibench.report.tables import comparison_pairs, paired

    pooled: dict[str, list[tuple[float, float]]] = {}
    for metric, keys, this, ref, *_ in comparison_pairs(results, plan, experiment):
        merged = paired(metric, keys, this, ref)
        if merged["prompt_index"].nunique() < 2:
            continue
        diff = (merged[metric] - merged[f"{metric}_r"]).to_numpy(float)
        if not np.any(np.nan_to_num(diff)):
            continue
        between, within = stats.seed_variance(diff, merged["prompt_index"].to_numpy())
        if not math.isnan(between):
            pooled.setdefault(metric, []).append((between, within))
    return {
        metric: (
            float(np.mean([b for b, _ in parts])),
            float(np.mean([w for _, w in parts])),
            len(parts),
        )
        for metric, parts in pooled.items()
    }


def power(plan: Plan, experiment: str, differences: dict | None = None) -> dict:
    """What the planned run of an experiment can detect, per metric; `rows` is empty and
    `reason` says why when there are no usable earlier scores."""
    import pandas as pd

    exp = plan.experiments[experiment]
    prompts, seeds = len(exp.prompts), len(exp.seeds)
    source = earlier_scores(plan, experiment)
    out = {"experiment": experiment, "prompts": prompts, "seeds": seeds, "source": source}
    if source is None:
        return {**out, "rows": [], "reason": "no earlier scores (run it, or its quick run)"}
    try:
        results = pd.read_csv(source)
        found = variance_of(plan, experiment, results)
    except (OSError, ValueError, KeyError) as err:
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        return {**out, "rows": [], "reason": f"{source} cannot be read ({why})"}
    if not found:
        return {**out, "rows": [], "reason": f"{source} has no paired scores of 2 or more prompts"}
    settings = plan.config["findings"]
    m = planned_comparisons(plan, experiment, len(found))
    level = settings["alpha"] / m
    rows = []
    for metric, (between, within, n) in found.items():
        sd = math.sqrt(between + within / seeds)
        row = {
            "metric": metric,
            "sd": sd,
            "detectable": stats.detectable_difference(sd, prompts, level),
            "from_comparisons": n,
        }
        wanted = (differences or {}).get(metric)
        if wanted:
            row["difference"] = wanted
            row["prompts_needed"] = stats.prompts_needed(sd, wanted, level)
        rows.append(row)
    method = f"80% power, {settings['adjust']} at {settings['alpha']} over {m} comparisons"
    note = ""
    if plan.sequential(experiment) is not None:
        note = (
            "sequential: these are the fixed design's figures; its looks test the deciding "
            "metrics at each look's spent level, split over that look's tests (stricter "
            "at the first looks)"
        )
    return {**out, "rows": rows, "method": method, "reason": "", "note": note}


def parse_differences(values: list[str] | None, compared: list[str]) -> dict[str, float]:
    """--difference clip_score=0.5 (repeated) as {metric: difference}; each metric one of
    the run's `compared` columns."""
    out = {}
    for value in values or []:
        name, _, number = value.partition("=")
        try:
            difference = float(number)
        except ValueError:
            difference = float("nan")
        if not name or not difference > 0 or math.isinf(difference):
            raise InputError(
                f"--difference {value!r}: expected METRIC=NUMBER with a number > 0, e.g. "
                "clip_score=0.5"
            )
        if name not in compared:
            raise InputError(
                f"--difference {value!r}: {name} is not a compared metric column of this "
                f"run; expected one of: {', '.join(sorted(compared)) or 'none'}"
            )
        out[name] = difference
    return out


def report_lines(found: dict) -> list[str]:
    """The power of one experiment as lines of text (cli.py plan --power)."""
    head = f"{found['experiment']}: {found['prompts']} prompts x {found['seeds']} seeds planned"
    if not found["rows"]:
        return [f"{head}: {found['reason']}; nothing to plan from"]
    lines = [f"{head}; scores of {found['source']} ({found['method']}):"]
    for row in found["rows"]:
        if not row["sd"] > 0:
            lines.append(
                f"  {row['metric']}: every paired score the same in the earlier run (no "
                "spread): nothing to plan from"
            )
            continue
        detectable = row["detectable"]
        said = (
            f"detectable difference {detectable:.3g}"
            if not math.isnan(detectable)
            else f"no difference detectable with {found['prompts']} prompt(s) (a paired test "
            "needs 2)"
        )
        line = f"  {row['metric']}: {said} (sd of a per-prompt difference {row['sd']:.3g})"
        if "prompts_needed" in row:
            line += f"; {row['difference']:g} needs {row['prompts_needed']} prompts"
        lines.append(line)
    if found.get("note"):
        lines.append(f"  {found['note']}")
    return lines


def startup_line(plan: Plan, experiment: str) -> str:
    """One line for the start of a run, or "" without earlier scores."""
    try:
        found = power(plan, experiment)
    except InputError:
        return ""
    # no spread, or fewer than 2 planned prompts: nothing to plan from
    rows = [r for r in found["rows"] if r["sd"] > 0 and not math.isnan(r["detectable"])]
    if not rows:
        return ""
    said = ", ".join(f"{r['metric']} {r['detectable']:.3g}" for r in rows)
    size = f"{found['prompts']} prompts x {found['seeds']} seeds"
    return f"power: {experiment} ({size}) can detect {said} ({found['method']})"
