"""What a sequential experiment's looks decided, in the findings (t2ibench.rounds).

The deciding metrics' verdicts of a sequential experiment are its looks' (alpha spent
over the looks), not the fixed-design adjustment over the images made: a comparison
decided at a look keeps that look's verdict; one no look decided, or whose arm stopped
as beaten by the best arm, is "no difference detected" against its reference. The other
metrics' verdicts are the fixed design's over the images the rounds made.
"""

from __future__ import annotations

from t2ibench.rounds import DECIDED, arm_key

KINDS = {"cell vs reference cell": "model", "model vs first model": "cell"}


def look_of(row, found: dict) -> dict | None:
    """The look's record of a comparison row of a deciding metric, else None."""
    if row["metric"] not in found["design"]["metrics"] or row["comparison"] not in KINDS:
        return None
    kind = KINDS[row["comparison"]]
    group = f"model {row['model']}" if kind == "model" else f"cell {row['cell']}"
    arm = found["arms"].get(arm_key(row["model"], row["cell"]))
    if arm is None:
        return None
    decided = arm["verdicts"].get(row["metric"], {}).get(group)
    return decided or {"verdict": "undecided", "look": None, "prompts": arm.get("prompts")}


def apply(frame, found: dict | None):
    """comparisons with verdicts classified: the deciding metrics' from the looks."""
    if not found or frame.empty:
        frame["sequential"] = [None] * len(frame)
        return frame
    looks, verdicts = [], []
    for _, row in frame.iterrows():
        record = look_of(row, found)
        looks.append(record)
        if record is None or row["verdict"] == "not tested":
            verdicts.append(row["verdict"])
        elif record["verdict"] in ("better", "worse", "equivalent"):
            verdicts.append(record["verdict"])
        else:
            verdicts.append("no difference detected")
    frame["verdict"] = verdicts
    frame["sequential"] = looks
    return frame


def words(record: dict, found: dict) -> str:
    """How the looks decided a comparison, for its sentence."""
    looks = len(found["design"]["looks"])
    if record["verdict"] in DECIDED and record["look"]:
        level = found["design"]["levels"][record["look"] - 1]
        return (
            f"decided at look {record['look']} of {looks} on {record['prompts']} prompts, "
            f"at the look's alpha {level:.2g} (O'Brien-Fleming spending)"
        )
    return f"not decided by the {looks} looks"


def section(found: dict, label) -> dict:
    """Per arm: when it stopped, why, and the images made and saved; `label(cell)` names
    a cell in words."""
    looks = len(found["design"]["looks"])
    arms = []
    for arm in found["arms"].values():
        at = arm.get("stopped_at")
        saved = arm.get("images_saved", 0)
        where = f"look {at} of {looks} ({arm.get('prompts')} prompts)" if at else "not yet"
        arms.append(
            {
                **{k: arm.get(k) for k in ("model", "cell", "stopped_at", "prompts", "reason")},
                **{k: arm.get(k, 0) for k in ("images_made", "images_fixed", "images_saved")},
                "images_rounds": arm.get("images_rounds", arm.get("images_made", 0)),
                "label": label(arm["cell"]),
                "sentence": f"{label(arm['cell'])} on {arm['model']}: stopped after {where}; "
                f"{arm.get('reason', '')}; {arm.get('images_made', 0)} of "
                f"{arm.get('images_fixed', 0)} images made{counted(arm)}, {saved} saved.",
            }
        )
    images = found.get("images") or {}
    return {
        "method": found["design"]["method"],
        "metrics": found["design"]["metrics"],
        "margins": found["design"]["margins"],
        "looks": found["design"]["looks"],
        "arms": arms,
        "images": images,
        "sentence": f"Early stopping on {', '.join(found['design']['metrics'])}: "
        f"{images.get('made', 0)} of the fixed design's {images.get('fixed', 0)} images "
        f"made{counted(images, '')}, {images.get('saved', 0)} "
        f"({100 * images.get('share_saved', 0):.0f}%) saved; "
        f"looks after {', '.join(map(str, found['design']['looks']))} prompts.",
    }


def counted(counts: dict, prefix: str = "images_") -> str:
    """What the images made are, where that is more than the rounds' own: some made by
    other runs (a fixed run, another design), some of the rounds' removed since."""
    rounds = counts.get(f"{prefix}rounds")
    others, missing = counts.get(f"{prefix}outside", 0), counts.get(f"{prefix}missing", 0)
    if rounds is None or not (others or missing):
        return ""
    parts = [f"{rounds} by its rounds"]
    if others:
        parts.append(f"{others} by other runs")
    if missing:
        parts.append(f"{missing} of the rounds' no longer there")
    return f" ({', '.join(parts)})"


def markdown(part: dict) -> list[str]:
    from t2ibench.report.findings import _cell_text

    lines = ["## Early stopping", "", part["sentence"], "", f"Method: {part['method']}.", ""]
    lines += ["| model | cell | stopped after | why | images made | saved |"]
    lines += ["|---|---|---|---|---|---|"]
    for arm in part["arms"]:
        at = f"look {arm['stopped_at']} ({arm['prompts']} prompts)" if arm["stopped_at"] else "-"
        lines.append(
            f"| {_cell_text(arm['model'])} | {_cell_text(arm['label'])} | {at} | "
            f"{_cell_text(arm['reason'] or '')} | {arm['images_made']} of "
            f"{arm['images_fixed']} | {arm['images_saved']} |"
        )
    return [*lines, ""]
