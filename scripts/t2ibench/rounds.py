"""Sequential experiments: the prompts in rounds, a look after each (early stopping).

An experiment that sets ``sequential:`` (and a run with ``sequential: true``, the
default) makes its images in rounds of ``round`` prompts, in the planned prompt order.
Its arms are its (model, cell) pairs; they are compared as the findings compare them:
each cell against the reference cell per model, each model against the first model per
cell. After each round a look (t2ibench.looks) tests the comparisons of the arms still
open on the deciding metrics, at the alpha its O'Brien-Fleming-type spending gives
that look, split over the look's tests (Bonferroni). A comparison once decided stays
decided; an arm stops when all its comparisons are decided on every deciding metric (or
it is clearly beaten by the best open arm), and stays open while an open arm is compared
with it. The next round makes the next prompts of the open arms only.

Every image is a prefix of the fixed design's (same prompts, seeds and names), so a
later fixed run (``sequential: false``, or the key removed) reuses them and makes only
the rest.

Files: ``<analysis>/<experiment>/sequential/look<k>.json`` (one per look: a Snakemake
checkpoint, whose content decides the next round's images) and ``rounds.json`` (the
last look, with the images made and saved per arm; the findings read it).

Light on purpose (no torch): the Snakefile uses it while it builds the DAG.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from t2ibench.errors import InputError

FORMAT = 1
# Verdicts that stop an arm's comparison (t2ibench.sequential.decide).
DECIDED = ("better", "worse", "equivalent", "beaten")


@dataclass(frozen=True)
class Design:
    """An experiment's sequential design, as its looks apply it."""

    metrics: tuple[str, ...]  # the deciding metric columns
    margins: dict  # metric -> margin (0: no equivalence, beaten by any amount)
    round: int  # prompts per round
    looks: tuple[int, ...]  # prompts seen at each look
    levels: tuple[float, ...]  # the alpha each look spends
    alpha: float
    note: str = ""  # a design cut by the run (a quick run's fewer prompts), in words

    def as_dict(self) -> dict:
        return {
            "metrics": list(self.metrics),
            "margins": dict(self.margins),
            "round": self.round,
            "looks": list(self.looks),
            "levels": list(self.levels),
            "alpha": self.alpha,
            "method": METHOD,
        }


METHOD = (
    "group-sequential looks after each round of prompts; O'Brien-Fleming-type alpha "
    "spending (Lan & DeMets 1983), Bonferroni over each look's tests"
)


def arm_key(model: str, cell: str) -> str:
    return f"{model}/{cell}"


def active(config: dict, experiment) -> bool:
    """Whether `experiment` (an Experiment) runs in rounds in this run."""
    return bool(experiment.sequential) and bool(config.get("sequential", True))


def margins_of(config: dict, seq: dict) -> dict:
    margin = seq.get("margin")
    fallback = config["findings"]["margins"]
    out = {}
    for metric in seq["metrics"]:
        if isinstance(margin, dict):
            out[metric] = float(margin.get(metric, fallback.get(metric, 0.0)))
        elif margin is not None:
            out[metric] = float(margin)
        else:
            out[metric] = float(fallback.get(metric, 0.0))
    return out


def check(config: dict, name: str, experiment, prompts: int, arms: int) -> None:
    """The design's keys against the run: one line naming the key when it cannot run."""
    from t2ibench.config import compared_columns

    seq = experiment.sequential
    where = f"experiment '{name}' ({experiment.source}): key 'sequential."
    compared = compared_columns(config)
    for metric in seq["metrics"]:
        if metric not in compared:
            raise InputError(
                f"{where}metrics': {metric} is not a compared metric column of this run "
                f"(its metric is not enabled, or it has no per-image or per-prompt "
                f"scores); expected one of: {', '.join(sorted(compared)) or 'none'}"
            )
    margin = seq.get("margin")
    if isinstance(margin, dict):
        for metric in margin:
            if metric not in seq["metrics"]:
                raise InputError(
                    f"{where}margin.{metric}': {metric} is not one of the deciding "
                    f"metrics ({', '.join(seq['metrics'])}); a margin needs its comparisons"
                )
    for key in ("round", "max_prompts"):
        if key in seq and seq[key] > prompts:
            raise InputError(
                f"{where}{key}': {seq[key]} prompts, more than the experiment's {prompts}; "
                f"expected at most {prompts}"
            )
    if seq.get("max_prompts") and seq["round"] > seq["max_prompts"]:
        raise InputError(
            f"{where}round': {seq['round']} prompts, more than key 'sequential.max_prompts' "
            f"({seq['max_prompts']}); expected at most {seq['max_prompts']}"
        )
    if arms < 2:
        raise InputError(
            f"{where}metrics': the experiment has one model and one cell, nothing to "
            "compare; early stopping needs two models or two cells"
        )
    if config["images_per_job"] > 1:
        raise InputError(
            f"config key 'images_per_job': {config['images_per_job']}, but experiment "
            f"'{name}' is sequential (key 'sequential'), and its rounds make one image per "
            "job; run it with --config images_per_job=1, or with --config sequential=false "
            "for its fixed design in chunks"
        )


def design(config: dict, experiment, prompts: int) -> Design:
    """The design of an active sequential experiment over its planned `prompts`."""
    from t2ibench import sequential

    seq = experiment.sequential
    top = min(prompts, seq.get("max_prompts") or prompts)
    looks = sequential.rounds(top, min(seq["round"], top))
    alpha = config["findings"]["alpha"]
    note = ""
    if seq["round"] > top:  # check() refuses it, but for a quick run's fewer prompts
        note = f"quick run: round of {seq['round']} prompts cut to its {top}, one look"
    return Design(
        metrics=tuple(seq["metrics"]),
        margins=margins_of(config, seq),
        round=min(seq["round"], top),
        looks=tuple(looks),
        levels=tuple(sequential.look_levels(looks, top, alpha)),
        alpha=alpha,
        note=note,
    )


def arms(exp_plan) -> list[tuple[str, str]]:
    """The experiment's (model, cell) pairs in plan order."""
    return [(m, c.name) for m in exp_plan.models for c in exp_plan.cells]


def groups(exp_plan) -> list[tuple[str, tuple, list[tuple]]]:
    """(group, reference arm, arms) of each comparison group: the cells per model, the
    models per cell (as findings.compare them)."""
    out = []
    reference = exp_plan.experiment.reference
    if len(exp_plan.cells) > 1:
        for m in exp_plan.models:
            out.append((f"model {m}", (m, reference), [(m, c.name) for c in exp_plan.cells]))
    if len(exp_plan.models) > 1:
        first = exp_plan.models[0]
        for c in exp_plan.cells:
            out.append((f"cell {c.name}", (first, c.name), [(m, c.name) for m in exp_plan.models]))
    return out


def round_prompts(design: Design, exp_plan, k: int) -> list[int]:
    """The prompt indices of round k (1-based)."""
    start = design.looks[k - 2] if k > 1 else 0
    return [p.index for p in exp_plan.prompts[start : design.looks[k - 1]]]


def round_jobs(plan, experiment: str, design: Design, k: int, open_arms) -> list:
    """The images round k makes: its prompts, every seed, the open arms."""
    return _jobs(
        plan, experiment, set(round_prompts(design, plan.experiments[experiment], k)), open_arms
    )


def jobs_until(plan, experiment: str, design: Design, k: int, open_arms) -> list:
    """The images of `open_arms` over rounds 1..k (what look k scores)."""
    prompts = plan.experiments[experiment].prompts[: design.looks[k - 1]]
    return _jobs(plan, experiment, {p.index for p in prompts}, open_arms)


def _jobs(plan, experiment: str, prompts: set, arms) -> list:
    wanted = {tuple(a) for a in arms}
    return [
        j
        for j in plan.jobs
        if j.experiment == experiment and (j.model, j.cell) in wanted and j.prompt_index in prompts
    ]


def folder(analysis_dir: str, experiment: str) -> str:
    return f"{analysis_dir}/{experiment}/sequential"


def look_path(analysis_dir: str, experiment: str, k: int) -> str:
    return f"{folder(analysis_dir, experiment)}/look{k}.json"


def end_path(analysis_dir: str, experiment: str) -> str:
    return f"{folder(analysis_dir, experiment)}/rounds.json"


def read(path: str | Path) -> dict:
    """A look's (or rounds.json's) content; a damaged or foreign file is an error naming
    it (the next run remakes it once it is removed)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(
            f"{path}: not a readable look of a sequential run ({err}); remove it"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else "?"
        raise InputError(
            f"{path}: not a look of this t2ibench's sequential runs (format {found}, "
            f"expected {FORMAT}); remove it"
        )
    return data


def open_arms(look: dict | None, exp_plan) -> list[tuple[str, str]]:
    """The arms a look leaves open (all of them before the first look)."""
    if look is None:
        return arms(exp_plan)
    return [tuple(a) for a in look["open"]]


def analysis_dir(plan) -> str:
    return f"{plan.results_dir}/quick" if plan.config["quick"] else plan.results_dir
