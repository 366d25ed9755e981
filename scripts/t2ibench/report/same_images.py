"""Compared arms that made the same images: a fact of the files, not of a metric.

A setting that changes nothing for a model (guidance at or below 1 turns classifier-free
guidance off; a LoRA at strength 0; a sampler setting the model ignores) gives a cell
whose pixels are those of the cell it is compared with (the PNGs differ only in their
metadata, which names the settings). Every metric then scores both the same, and no
test can say more than "no difference"; the findings say instead that the images are
the same. Only comparisons whose every metric difference is 0 are looked at, and their
pairs are decoded until one differs.
"""

from __future__ import annotations

from t2ibench.plan import Plan


def compared_arms(plan: Plan, experiment: str):
    """(kind, model, cell, reference model, reference cell, reference name) of each
    comparison of an experiment: each cell against the reference cell (per model), each
    model against the first model (per cell), in comparisons.csv's order."""
    exp = plan.experiments[experiment]
    reference_cell, first_model = exp.experiment.reference, exp.models[0]
    for model in exp.models:
        for cell in exp.experiment.cell_names:
            if cell != reference_cell:
                kind = "cell vs reference cell"
                yield kind, model, cell, model, reference_cell, reference_cell
    for cell in exp.experiment.cell_names:
        for model in exp.models[1:]:
            yield "model vs first model", model, cell, first_model, cell, first_model


def same_pixels(a: str, b: str) -> bool:
    import numpy as np
    from PIL import Image

    try:
        with Image.open(a) as x, Image.open(b) as y:
            return x.size == y.size and np.array_equal(
                np.asarray(x.convert("RGB")), np.asarray(y.convert("RGB"))
            )
    except OSError:
        return False


def same_image_arms(results, plan: Plan, experiment: str, comparisons) -> list[dict]:
    """The comparisons whose images, matched on (prompt, seed), all have the same pixels;
    looked at where every metric's difference in `comparisons` (comparisons.csv) is 0."""
    if results.empty or comparisons.empty or "image_path" not in results:
        return []
    rows = comparisons.assign(zero=(comparisons["difference"] == 0) & (comparisons["sd"] == 0))
    zero = rows.groupby(["comparison", "model", "cell"])["zero"].all()
    keys = ["prompt_index", "seed"]
    frame = results[results["image_flag"].fillna("") == ""]
    same = []
    for kind, model, cell, ref_model, ref_cell, reference in compared_arms(plan, experiment):
        if not zero.get((kind, model, cell), False):
            continue
        this = frame[(frame.model == model) & (frame.cell == cell)]
        ref = frame[(frame.model == ref_model) & (frame.cell == ref_cell)]
        pairs = this[[*keys, "image_path"]].merge(ref[[*keys, "image_path"]], on=keys)
        if len(pairs) and all(
            same_pixels(a, b) for a, b in zip(pairs.image_path_x, pairs.image_path_y, strict=True)
        ):
            same.append(
                {
                    "comparison": kind,
                    "model": model,
                    "cell": cell,
                    "reference": reference,
                    "pairs": int(len(pairs)),
                }  # fmt: skip
            )
    return same
