"""Where a sequential experiment stands on disk: which of its looks still hold.

A look (``sequential/look<k>.json``, t2ibench.rounds) holds while it is readable, was
made with the run's design (metrics, margins, round, looks, arms), follows the look
before it, and every image it scored is there, unchanged and older than it. The looks
that hold, from the first on, are the run's state; the first one that does not is made
again (the Snakefile forces it, and what follows it is remade in turn), and a run that
finished records what it made in ``rounds.json``, remade when the images on disk are no
longer those it counted (a fixed run made more, an image was removed).

The start-up line (`announce`) and the plan line read the same state, so neither shows
a look that the run is about to make again.

Light on purpose (no torch): the Snakefile uses it while it builds the DAG.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from t2ibench.errors import InputError
from t2ibench.rounds import (
    analysis_dir,
    arm_key,
    arms,
    end_path,
    jobs_until,
    look_path,
    open_arms,
    read,
    round_jobs,
)


@dataclass
class Chain:
    """The looks on disk that hold (`looks`, from look 1 on), the first look to make
    again (`redo`, with `why`; None when every look on disk holds) and whether the run
    is finished."""

    looks: list[dict] = field(default_factory=list)
    redo: int | None = None
    why: str = ""

    @property
    def done(self) -> int:
        return len(self.looks)

    @property
    def last(self) -> dict | None:
        return self.looks[-1] if self.looks else None

    @property
    def finished(self) -> bool:
        return bool(self.looks) and bool(self.looks[-1]["finished"])


def _normal(value):
    return json.loads(json.dumps(value))


def chain(plan, experiment: str, fresh, images: bool = True) -> Chain:
    """The experiment's looks on disk against the run (see the module's text). With
    `images` False the images are not checked (`analyze`, which makes none)."""
    design = plan.sequential(experiment)
    exp_plan = plan.experiments[experiment]
    folder = analysis_dir(plan)
    expected = _normal(design.as_dict())
    keys = {arm_key(m, c) for m, c in arms(exp_plan)}
    state = Chain()
    previous = None  # look k-1's bytes
    for k in range(1, len(design.looks) + 1):
        path = Path(look_path(folder, experiment, k))
        if not path.exists():
            later = [look_path(folder, experiment, j) for j in range(k + 1, len(design.looks) + 1)]
            if any(os.path.exists(p) for p in later) or os.path.exists(
                end_path(folder, experiment)
            ):
                state.redo, state.why = k, f"{path} is missing"
            return state
        try:
            look = read(path)
            data = path.read_bytes()
        except (InputError, OSError) as err:
            state.redo, state.why = k, str(err).removesuffix("; remove it")
            return state
        why = _stale(look, k, expected, keys)
        if not why and look.get("previous") != (digest(previous) if previous else None):
            why = f"look {k - 1} changed since it was taken"
        if not why and images:
            jobs = jobs_until(plan, experiment, design, k, open_arms(state.last, exp_plan))
            why = _images_changed(plan, jobs, fresh, look)
        if why:
            state.redo, state.why = k, f"{path}: {why}"
            return state
        state.looks.append(look)
        previous = data
        if look["finished"]:
            return state
    return state


def digest(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def scored(plan, jobs: list, fresh) -> str:
    """What a look scored: the images' paths and recorded sha256, as one digest."""
    lines = sorted(f"{plan.path(j)} {fresh.sha.get(j, '')}" for j in jobs)
    return digest("\n".join(lines).encode())


def _stale(look: dict, k: int, expected: dict, keys: set) -> str:
    if look.get("look") != k:
        return f"it holds look {look.get('look')}, not look {k}"
    if look.get("design") != expected:
        return "made with another sequential design (metrics, margins, round or looks)"
    held = look.get("arms")
    if not isinstance(held, dict) or set(held) != keys:
        return "made for other models or cells"
    if not all(isinstance(a, dict) and isinstance(a.get("verdicts"), dict) for a in held.values()):
        return "its arms are not a look's"
    still = look.get("open")
    if not isinstance(look.get("finished"), bool) or not isinstance(still, list):
        return "no 'finished' or 'open' of a look"
    if not all(
        isinstance(a, list) and len(a) == 2 and arm_key(*map(str, a)) in keys for a in still
    ):
        return "its open arms are not the experiment's"
    return ""


def _images_changed(plan, jobs: list, fresh, look: dict) -> str:
    todo = fresh.todo(jobs)
    if todo:
        return f"{len(todo)} image(s) it scored must be made again, e.g. {plan.path(todo[0])}"
    if look.get("scored") != scored(plan, jobs, fresh):
        return "the images it scored are not those on disk (made again, or changed)"
    return ""


def on_disk(plan, experiment: str, fresh) -> dict:
    """Per arm, the experiment's planned images there to score (what its image list
    will hold), whoever made them."""
    counts = {arm_key(m, c): 0 for m, c in arms(plan.experiments[experiment])}
    for job in plan.jobs:
        if job.experiment == experiment and fresh.state(job).scorable:
            counts[arm_key(job.model, job.cell)] += 1
    return counts


def outside(plan, experiment: str, fresh, last: dict) -> dict:
    """Per arm, its images there to score that its rounds did not make (a fixed run's,
    another design's): those of prompts after the look it stopped at."""
    exp_plan = plan.experiments[experiment]
    order = {p.index: n for n, p in enumerate(exp_plan.prompts)}
    final = last["design"]["looks"][-1]
    counts = {}
    for key, arm in last["arms"].items():
        counts[key] = 0
        prompts = arm.get("prompts") or final
        for job in plan.jobs:
            if (
                job.experiment == experiment
                and arm_key(job.model, job.cell) == key
                and order[job.prompt_index] >= prompts
                and fresh.state(job).scorable
            ):
                counts[key] += 1
    return counts


def recorded(path: str) -> dict | None:
    """The per-arm images on disk that rounds.json counted (None: no readable one)."""
    try:
        return read(path)["images"]["on_disk"]
    except (InputError, KeyError, TypeError):
        return None


def progress(plan, experiment: str, fresh, images: bool = True) -> dict:
    """Where a sequential experiment stands by the looks that hold: looks done, and the
    images the next round makes (with those of earlier rounds to make again). `images`
    False: as `analyze` sees it (no image checked)."""
    design = plan.sequential(experiment)
    exp_plan = plan.experiments[experiment]
    state = chain(plan, experiment, fresh, images)
    still = open_arms(state.last, exp_plan)
    following, later = [], []
    if not state.finished:
        following = jobs_until(plan, experiment, design, state.done + 1, still)
        later = [
            j
            for k in range(state.done + 2, len(design.looks) + 1)
            for j in round_jobs(plan, experiment, design, k, still)
        ]
    return {
        "looks": len(design.looks),
        "done": state.done,
        "finished": state.finished,
        "next": state.done + 1,
        "redo": state.redo,
        "why": state.why,
        "next_jobs": fresh.todo(following),
        "next_todo": len(fresh.todo(following)),
        "later_todo": len(fresh.todo(later)),
    }


def announce(plan, experiment: str, fresh, making: bool = True) -> str:
    """The start-up line of a sequential experiment (`making` False: `analyze`, which
    makes no image)."""
    design = plan.sequential(experiment)
    state = progress(plan, experiment, fresh, images=making)
    margins = ", ".join(f"{m} +-{v:g}" for m, v in design.margins.items() if v) or "none"
    head = (
        f"{experiment}: sequential on {', '.join(design.metrics)} (margins {margins}), "
        f"looks after {', '.join(map(str, design.looks))} prompts"
    )
    if design.note:
        head += f" ({design.note})"
    redo = f"; look {state['redo']} is made again ({state['why']})" if state["redo"] else ""
    if state["finished"]:
        return f"{head}: finished at look {state['done']}{redo}"
    if not making:
        return f"{head}: {state['done']} look(s) done{redo}; `analyze` makes no image"
    return (
        f"{head}: round {state['next']} makes {state['next_todo']} image(s){redo}; what "
        f"later rounds make depends on each look's results (at most {state['later_todo']} "
        "more)"
    )
