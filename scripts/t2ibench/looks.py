"""What a look of a sequential experiment decides (t2ibench.rounds has the design).

At look k the open arms' images over rounds 1..k are scored on the deciding metrics and
each comparison group (the cells per model, the models per cell) is tested at the
look's alpha (t2ibench.sequential.decide), split over every test of the look. A verdict
once reached stays; an arm stops when all its comparisons are decided on every deciding
metric, and stays open while an open arm is compared with it. The last look stops all.
"""

from __future__ import annotations

import math
from pathlib import Path

from t2ibench.errors import InputError
from t2ibench.rounds import (
    FORMAT,
    Design,
    arm_key,
    arms,
    groups,
    jobs_until,
    open_arms,
    read,
)


def evaluate(
    design: Design, exp_plan, k: int, previous: dict | None, values: dict, higher: dict
) -> dict:
    """Look k. `values[metric][(model, cell)]` = (scores, prompt labels) of the open
    arms' images over rounds 1..k, paired by position; `higher[metric]`: which way is
    better. Returns the look's content."""
    from t2ibench import sequential

    still = open_arms(previous, exp_plan)
    state = {key: dict(arm) for key, arm in ((previous or {}).get("arms") or {}).items()} or {
        arm_key(m, c): {"model": m, "cell": c, "verdicts": {}, "stopped_at": None}
        for m, c in arms(exp_plan)
    }
    level = design.levels[k - 1]
    plan_groups = [
        (g, ref, [a for a in members if a in still]) for g, ref, members in groups(exp_plan)
    ]
    plan_groups = [(g, ref, members) for g, ref, members in plan_groups if len(members) > 1]
    tests = sum((len(members) - 1) * len(members) for _, _, members in plan_groups) * len(
        design.metrics
    )
    for metric in design.metrics:
        for group, ref, members in plan_groups:
            data = {a: values[metric][a] for a in members}
            decided = sequential.decide(
                {a: (s, labels, None) for a, (s, labels) in data.items()},
                ref,
                design.margins.get(metric, 0.0),
                level * (len(members) - 1) * len(members) / max(tests, 1),
                higher=higher.get(metric, True),
            )
            for arm, verdict in decided.items():
                verdicts = state[arm_key(*arm)]["verdicts"].setdefault(metric, {})
                record = {"verdict": verdict, "look": k, "prompts": design.looks[k - 1]}
                verdicts.setdefault(group, {**record, "against": arm_key(*ref)})
    final = k == len(design.looks)
    own = {a for a in still if not _settled(state[arm_key(*a)], design, exp_plan, a)}
    keep = set(own)
    for _, ref, members in plan_groups:
        if ref in still and any(a in own for a in members if a != ref):
            keep.add(ref)
    for a in still:
        if a not in keep or final:
            arm = state[arm_key(*a)]
            arm["stopped_at"] = k
            arm["prompts"] = design.looks[k - 1]
            arm["reason"] = reason(arm, a in keep, final, design)
    remaining = [] if final else [a for a in still if a in keep]
    return {
        "format": FORMAT,
        "look": k,
        "prompts": design.looks[k - 1],
        "level": level,
        "tests": tests,
        "design": design.as_dict(),
        "open": [list(a) for a in remaining],
        "finished": final or not remaining,
        "arms": state,
    }


def _settled(arm: dict, design: Design, exp_plan, a: tuple) -> bool:
    """Every comparison of arm `a` (where it is not the reference) decided on every
    deciding metric."""
    mine = [g for g, ref, members in groups(exp_plan) if a in members and a != ref]
    return all(g in arm["verdicts"].get(m, {}) for m in design.metrics for g in mine)


def reason(arm: dict, kept: bool, final: bool, design: Design) -> str:
    """Why an arm stopped where it did, in words."""
    words = []
    for metric in design.metrics:
        for _, v in sorted(arm["verdicts"].get(metric, {}).items()):
            if v["verdict"] == "beaten":
                words.append(f"{metric}: beaten by the best open arm (look {v['look']})")
            else:
                words.append(f"{metric}: {v['verdict']} than {v['against']} (look {v['look']})")
    text = "; ".join(words).replace("equivalent than", "equivalent to")
    if final and kept:
        return f"ran every round; {text or 'nothing decided'}"
    return text or "every arm compared with it stopped"


def summary(last: dict, exp_plan, seeds: int, disk: dict, outside: dict | None = None) -> dict:
    """rounds.json: the last look, with per arm the images its rounds made, those on
    disk (`disk`: arm key -> images there to score, whoever made them; `outside`: of
    those, the ones its rounds did not make, a fixed run's), those missing (made by the
    rounds, since removed) and those saved against the fixed design (every round for
    every arm): fixed - rounds - outside."""
    design_prompts = last["design"]["looks"][-1]
    outside = outside or {}
    out = dict(last)
    totals = dict.fromkeys(("rounds", "made", "outside", "missing", "fixed", "saved"), 0)
    for key, arm in out["arms"].items():
        prompts = arm.get("prompts") or design_prompts
        counts = {
            "rounds": prompts * seeds,
            "made": int(disk.get(key, 0)),
            "outside": int(outside.get(key, 0)),
            "fixed": design_prompts * seeds,
        }
        counts["missing"] = max(counts["rounds"] - (counts["made"] - counts["outside"]), 0)
        counts["saved"] = max(counts["fixed"] - counts["rounds"] - counts["outside"], 0)
        for name, value in counts.items():
            arm[f"images_{name}"] = value
            totals[name] += value
    fixed = totals["fixed"]
    out["images"] = {
        **totals,
        "share_saved": totals["saved"] / fixed if fixed else 0.0,
        "on_disk": dict(disk),
    }
    return out


def aligned(table, jobs: list, paths: list[str], column: str):
    """(scores, prompt labels) of `jobs` (at `paths`) from a metric table, in the jobs'
    order: image tables by path, prompt tables by (model, cell, prompt). NaN where a
    score is missing."""
    import numpy as np

    if "image_path" in table.columns:
        by = dict(zip(table["image_path"].map(str), table[column], strict=True))
        values = [by.get(path, math.nan) for path in paths]
        labels = [j.prompt_index for j in jobs]
    else:
        by = {
            (m, c, int(p)): v
            for m, c, p, v in zip(
                table["model"], table["cell"], table["prompt_index"], table[column], strict=True
            )
        }
        seen, values, labels = set(), [], []
        for j in jobs:
            key = (j.model, j.cell, j.prompt_index)
            if key not in seen:
                seen.add(key)
                values.append(by.get(key, math.nan))
                labels.append(j.prompt_index)
    return np.asarray(values, float), np.asarray(labels)


def look(plan, experiment: str, k: int, previous: str | None, cache_path) -> dict:
    """Look k of a sequential experiment: score the open arms' images over rounds 1..k
    on the deciding metrics (the score cache keeps them for the metric tables) and
    decide. `previous` is look k-1's file (None at the first look)."""
    from t2ibench import scoring
    from t2ibench.config import column_metric
    from t2ibench.freshness import Freshness
    from t2ibench.metrics import registry

    design = plan.sequential(experiment)
    exp_plan = plan.experiments[experiment]
    before = read(previous) if previous else None
    still = open_arms(before, exp_plan)
    jobs = jobs_until(plan, experiment, design, k, still)
    fresh = Freshness(plan, verify=True)
    missing = [j for j in jobs if not fresh.state(j).scorable]
    if missing:
        raise InputError(
            f"look {k} of experiment '{experiment}': {len(missing)} image(s) of its rounds "
            f"are not there to score, e.g. {plan.path(missing[0])}; run `snakemake` again"
        )
    paths = [plan.path(j) for j in jobs]
    from t2ibench.look_chain import digest, scored

    # What the look went by (t2ibench.look_chain checks it at every start).
    basis = {
        "scored": scored(plan, jobs, fresh),
        "previous": digest(Path(previous).read_bytes()) if previous else None,
    }
    values, higher = {}, {}
    facts = registry.column_facts()
    for column in design.metrics:
        table = scoring.metric_table(plan, experiment, column_metric(column), jobs, cache_path)
        higher[column] = facts[column]["higher_is_better"]
        values[column] = {}
        for arm in still:
            mine = [(j, p) for j, p in zip(jobs, paths, strict=True) if (j.model, j.cell) == arm]
            values[column][arm] = aligned(table, [j for j, _ in mine], [p for _, p in mine], column)
    return {**evaluate(design, exp_plan, k, before, values, higher), **basis}
