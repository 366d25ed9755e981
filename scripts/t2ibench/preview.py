"""What a run will do before it spends GPU hours: images per experiment, model and cell,
how many exist, how many are to make, and the time that will take on this machine."""

from __future__ import annotations

from dataclasses import dataclass

from t2ibench.freshness import Freshness
from t2ibench.plan import Plan
from t2ibench.timings import Estimator, format_seconds, load_rates, timings_path


@dataclass
class CellStatus:
    experiment: str
    model: str
    cell: str
    planned: int
    done: int
    seconds: float | None  # estimated generation time of what is left; None: no timing

    @property
    def todo(self) -> int:
        return self.planned - self.done


def plan_status(
    plan: Plan, fresh: Freshness, estimator: Estimator | None = None, skip=frozenset()
) -> list[CellStatus]:
    """One row per (experiment, model, cell), in plan order: images planned and done
    (t2ibench.freshness; missing and outdated images are to make), leaving out `skip`
    (the images of sequential experiments that no round asks for yet)."""
    counts: dict[tuple[str, str, str], list] = {}
    for job in plan.jobs:
        if job in skip:
            continue
        entry = counts.setdefault((job.experiment, job.model, job.cell), [0, 0, job])
        entry[0] += 1
        entry[1] += fresh.state(job).done
    rows = []
    for (experiment, model, cell), (planned, done, first) in counts.items():
        seconds = 0.0
        if estimator is not None and planned > done:
            # Steps and size as the model's family fills them in.
            per_image = estimator.seconds(plan.settings(first))
            seconds = None if per_image is None else per_image * (planned - done)
        rows.append(CellStatus(experiment, model, cell, planned, done, seconds))
    return rows


def make_estimator(plan: Plan) -> Estimator:
    path = timings_path(plan.config["resources_dir"])
    return Estimator(load_rates(path), plan.config["device"])


def total_estimate(rows: list[CellStatus], estimator: Estimator) -> str:
    """'about 12 min', with what it leaves out."""
    todo = sum(r.todo for r in rows)
    if todo == 0:
        return "nothing to generate"
    timed = [r for r in rows if r.todo and r.seconds is not None]
    untimed = sorted({r.model for r in rows if r.todo and r.seconds is None})
    if not timed:
        return (
            "no estimate: no image of " + ", ".join(untimed) + " has been timed on this machine yet"
        )
    text = f"estimated generation time {format_seconds(sum(r.seconds for r in timed))}"
    text += f" for {sum(r.todo for r in timed)} images (per-image times measured here)"
    if untimed:
        text += f"; not timed here yet: {', '.join(untimed)}"
    return text


def format_table(rows: list[CellStatus], estimator: Estimator) -> str:
    header = ("experiment", "model", "cell", "planned", "done", "to make", "estimate")
    lines = [
        (
            r.experiment,
            r.model,
            r.cell,
            str(r.planned),
            str(r.done),
            str(r.todo),
            format_seconds(r.seconds) if r.todo else "-",
        )
        for r in rows
    ]
    total = (
        "total",
        "",
        "",
        str(sum(r.planned for r in rows)),
        str(sum(r.done for r in rows)),
        str(sum(r.todo for r in rows)),
        "",
    )
    widths = [max(len(row[i]) for row in [header, *lines, total]) for i in range(len(header))]

    def fmt(row):
        cells = [
            value.rjust(w) if i >= 3 else value.ljust(w)
            for i, (value, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    out = [fmt(header), fmt(tuple("-" * w for w in widths))]
    out += [fmt(row) for row in lines]
    out += [fmt(tuple("-" * w for w in widths)), fmt(total), "", total_estimate(rows, estimator)]
    return "\n".join(out)
