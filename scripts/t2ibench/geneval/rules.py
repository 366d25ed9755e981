"""GenEval's decision rules over an image's detections (evaluation/evaluate_images.py of
GenEval, rule for rule; the detector and the colour classifier are t2ibench.geneval.detect).

Kept detections: per class, those scoring above 0.3 (0.9 for the counting task), most
confident first, at most 16, with no overlap suppression (GenEval's `max_overlap` 1.0).
An image is correct when every `include` clause holds and no `exclude` clause does:

- at least `count` objects of the class were kept (only the `count` most confident are
  looked at further);
- with a `color`: at least `count` of them are classified as that colour;
- with a `position` [relation, i]: each of them is in that relation to each object of
  include clause i (which must itself have held). A is "left of" B when the offset of
  their box centres, less 0.1 of their summed widths and heights on each axis, points
  mostly left (its x part below -0.5 of the offset's length); likewise right, above,
  below;
- an `exclude` clause fails when at least `count` objects of the class were kept.

`reason` lists what failed in GenEval's words (`expected dog>=3, found 2`), joined by
"; ".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

THRESHOLD = 0.3
COUNTING_THRESHOLD = 0.9
MAX_OBJECTS = 16
NMS_THRESHOLD = 1.0
POSITION_THRESHOLD = 0.1


@dataclass(frozen=True)
class Detection:
    """One detected object: its box (x1, y1, x2, y2, in pixels), score and mask (a
    boolean array of the image's height x width, or None)."""

    box: tuple[float, float, float, float]
    score: float
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)


def compute_iou(box_a, box_b) -> float:
    def area(box):
        return max(box[2] - box[0] + 1, 0) * max(box[3] - box[1] + 1, 0)

    inter = area(
        [max(box_a[0], box_b[0]), max(box_a[1], box_b[1]),
         min(box_a[2], box_b[2]), min(box_a[3], box_b[3])]
    )  # fmt: skip
    union = area(box_a) + area(box_b) - inter
    return inter / union if union else 0


def keep(
    detections: dict[str, list[Detection]],
    tag: str,
    threshold: float = THRESHOLD,
    counting_threshold: float = COUNTING_THRESHOLD,
    max_objects: int = MAX_OBJECTS,
    max_overlap: float = NMS_THRESHOLD,
) -> dict[str, list[Detection]]:
    """The detections the rules look at, per class, most confident first."""
    cut = counting_threshold if tag == "counting" else threshold
    kept = {}
    for name, found in detections.items():
        ordered = sorted((d for d in found if d.score > cut), key=lambda d: -d.score)
        ordered = ordered[:max_objects]
        chosen = []
        while ordered:
            best = ordered.pop(0)
            chosen.append(best)
            if max_overlap != 1:
                ordered = [d for d in ordered if compute_iou(best.box, d.box) < max_overlap]
        if chosen:
            kept[name] = chosen
    return kept


def relative_position(a: Detection, b: Detection, margin: float = POSITION_THRESHOLD) -> set:
    """The relations of A to B ("left of", "right of", "above", "below")."""
    boxes = np.array([a.box[:4], b.box[:4]], dtype=np.float64).reshape(2, 2, 2)
    center_a, center_b = boxes.mean(axis=-2)
    dim_a, dim_b = np.abs(np.diff(boxes, axis=-2))[..., 0, :]
    offset = center_a - center_b
    revised = np.maximum(np.abs(offset) - margin * (dim_a + dim_b), 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    relations = set()
    if dx < -0.5:
        relations.add("left of")
    if dx > 0.5:
        relations.add("right of")
    if dy < -0.5:
        relations.add("above")
    if dy > 0.5:
        relations.add("below")
    return relations


# colours(detections, class name) -> one colour name per detection
ColourClassifier = Callable[[list[Detection], str], list[str]]


def evaluate(
    objects: dict[str, list[Detection]],
    metadata: dict,
    colours: ColourClassifier,
    margin: float = POSITION_THRESHOLD,
) -> tuple[bool, str]:
    """(correct, reason) of an image's kept detections against a prompt's metadata."""
    from t2ibench.geneval.suite import COLORS

    correct = True
    reason: list[str] = []
    matched_groups: list = []
    for clause in metadata.get("include", []):
        name, count = clause["class"], clause["count"]
        matched = True
        found = objects.get(name, [])[:count]
        if len(found) < count:
            correct = matched = False
            reason.append(f"expected {name}>={count}, found {len(found)}")
        else:
            if "color" in clause:
                seen = colours(found, name)
                if seen.count(clause["color"]) < count:
                    correct = matched = False
                    others = ", ".join(f"{seen.count(c)} {c}" for c in COLORS if c in seen)
                    reason.append(
                        f"expected {clause['color']} {name}>={count}, found "
                        f"{seen.count(clause['color'])} {clause['color']}; and {others}"
                    )
            if "position" in clause and matched:
                relation, target = clause["position"]
                if matched_groups[target] is None:
                    correct = matched = False
                    reason.append(f"no target for {name} to be {relation}")
                else:
                    for obj in found:
                        for other in matched_groups[target]:
                            true = relative_position(obj, other, margin)
                            if relation not in true:
                                correct = matched = False
                                reason.append(
                                    f"expected {name} {relation} target, found "
                                    f"{' and '.join(sorted(true))} target"
                                )
                                break
                        if not matched:
                            break
        matched_groups.append(found if matched else None)
    for clause in metadata.get("exclude", []):
        name, count = clause["class"], clause["count"]
        if len(objects.get(name, [])) >= count:
            correct = False
            reason.append(f"expected {name}<{count}, found {len(objects[name])}")
    return correct, "; ".join(reason)
