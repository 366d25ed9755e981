"""Score an experiment's images, reusing cached scores.

Scores are cached by image content (sha256) and metric id, so a re-run, or a run with
more images, scores only what is new. Scoring covers the images of the experiment's
image list (see t2ibench.steps.image_list): the ones whose pixels are the plan's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path

from t2ibench.metrics.loader import decoded_batches, open_rgb
from t2ibench.plan import ImageJob, Plan

log = logging.getLogger("t2ibench")


def image_record(image_path: str) -> dict:
    """The generation record beside an image ({} for images made elsewhere)."""
    record = Path(image_path).with_suffix(".json")
    return json.loads(record.read_text(encoding="utf-8")) if record.exists() else {}


def scorable_jobs(plan: Plan, jobs: list[ImageJob]) -> list[ImageJob]:
    """The listed images, less those flagged at generation (black / NaN)."""
    return [j for j in jobs if not image_record(plan.path(j)).get("image_flag")]


def _metrics(plan: Plan) -> dict:
    return plan.config["metrics"]


def _device(plan: Plan, section: str) -> str:
    from t2ibench.metrics.registry import device_of

    return device_of(_metrics(plan)[section], _metrics(plan), plan.config["device"])


def _log_counts(experiment: str, what: str, total: int, todo: int, unit: str = "images"):
    cached = total - todo
    log.debug(
        "%s: %s for %d %s (%d cached, %d to score)", experiment, what, total, unit, cached, todo
    )


def prompt_key(path: str, metric_id: str, prompt: str) -> tuple[str, str]:
    """The cache key of a score of an image against a prompt: the image's content, and
    the metric with the prompt's (the same image scored against another prompt, e.g. of
    an edited prompts file over images made elsewhere, is another score)."""
    from t2ibench.metrics.cache import image_sha256

    return image_sha256(path), prompt_metric_id(metric_id, prompt)


def prompt_metric_id(metric_id: str, prompt: str) -> str:
    """The metric part of a prompt score's cache key: the metric's id and the prompt's."""
    digest = hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]
    return f"{metric_id}|prompt:{digest}"


def prompt_image_scores(plan: Plan, experiment: str, jobs, cache_path: Path, scorer):
    """One row per image: the score of `scorer` (a PromptImageScorer, t2ibench.metrics.base)
    of the image against its prompt, in the column `scorer.column`. Only images not in the
    cache are scored."""
    import pandas as pd
    import torch

    from t2ibench.metrics.base import take_rows
    from t2ibench.metrics.cache import ScoreCache

    jobs = scorable_jobs(plan, jobs)
    paths = [plan.path(j) for j in jobs]
    prompts = [plan.prompt_text(j) for j in jobs]
    metric = scorer.column
    keys = [prompt_key(p, scorer.metric_id, text) for p, text in zip(paths, prompts, strict=True)]
    cache = ScoreCache(cache_path)
    cached = cache.get_many(keys)
    todo = [i for i, key in enumerate(keys) if key not in cached]
    _log_counts(experiment, metric, len(keys), len(todo))
    if todo:
        # Each distinct prompt is encoded once; its images find it by row.
        row = {text: r for r, text in enumerate(dict.fromkeys(prompts[i] for i in todo))}
        encoded = scorer.encode_prompts(list(row))
        rows = torch.tensor([row[prompts[i]] for i in todo], dtype=torch.long)
        todo_paths = [paths[i] for i in todo]
        workers = _metrics(plan)["workers"]
        for pixels, index in decoded_batches(
            todo_paths, scorer.transform(), scorer.batch_size, workers
        ):
            scores = scorer.score_pixels(pixels, take_rows(encoded, rows[index])).tolist()
            new = {keys[todo[i]]: s for i, s in zip(index.tolist(), scores, strict=True)}
            cache.put_many(new)  # batch by batch: a crash keeps what was scored
            cached.update(new)
    return pd.DataFrame({"image_path": paths, scorer.column: [cached[k] for k in keys]})


def image_scores(plan: Plan, experiment: str, jobs, cache_path: Path, column, metric_id, score):
    """One row per image: `score(image, prompt)` (a PIL image as decoded, in its own mode,
    and the prompt's text) in `column`, cached under `metric_id` (name what the value
    depends on: formula version, model, weights). The simplest way to a metric of one's
    own (docs/adding-a-metric.md)."""
    import pandas as pd

    from t2ibench.metrics.cache import ScoreCache
    from t2ibench.metrics.loader import open_image

    jobs = scorable_jobs(plan, jobs)
    paths = [plan.path(j) for j in jobs]
    prompts = [plan.prompt_text(j) for j in jobs]
    keys = [prompt_key(p, metric_id, text) for p, text in zip(paths, prompts, strict=True)]
    cache = ScoreCache(cache_path)
    cached = cache.get_many(keys)
    todo = [i for i, key in enumerate(keys) if key not in cached]
    _log_counts(experiment, column, len(keys), len(todo))
    new = {keys[i]: float(score(open_image(paths[i]), prompts[i])) for i in todo}
    cache.put_many(new)
    cached.update(new)
    return pd.DataFrame({"image_path": paths, column: [cached[k] for k in keys]})


# --- per prompt ----------------------------------------------------------------------


def _prompt_groups(plan: Plan, jobs) -> dict[tuple, list[str]]:
    groups: dict[tuple, list[str]] = {}
    for job in scorable_jobs(plan, jobs):
        groups.setdefault((job.model, job.cell, job.prompt_index), []).append(plan.path(job))
    return groups


def _group_values(experiment, what, groups, metric_id, cache_path, compute) -> dict:
    """Per prompt group: its cached value, else computed by `compute(groups to do)`.

    A group's value depends on its whole set of images, so its key hashes all of their
    hashes. Groups of fewer than 2 images have no pair to compare: NaN, not cached.
    """
    from t2ibench.metrics.cache import ScoreCache, image_sha256

    cache = ScoreCache(cache_path)
    keys = {}
    for group, paths in groups.items():
        digest = hashlib.sha256("".join(sorted(image_sha256(p) for p in paths)).encode())
        keys[group] = (digest.hexdigest(), metric_id)
    cached = cache.get_many(list(keys.values()))
    todo = [g for g, key in keys.items() if key not in cached and len(groups[g]) > 1]
    _log_counts(experiment, what, len(keys), len(todo), "prompt groups")
    if todo:
        computed = {keys[g]: value for g, value in compute(todo).items()}
        cache.put_many(computed)
        cached.update(computed)
    return {g: cached.get(key, math.nan) for g, key in keys.items()}


def _group_frame(groups: dict, values: dict, column: str):
    import pandas as pd

    columns = ["model", "cell", "prompt_index", column, f"{column}_images"]
    rows = [(*g, values[g], len(groups[g])) for g in sorted(groups)]
    return pd.DataFrame(rows, columns=columns)


def _lpips_scorer(plan: Plan):
    from t2ibench.metrics.lpips_diversity import LpipsScorer

    section = _metrics(plan)["lpips"]
    return LpipsScorer(
        section["net"],
        section["backbone_weights"],
        device=_device(plan, "lpips"),
        batch_size=section["batch_size"],
    )


def lpips_diversities(plan: Plan, experiment: str, jobs, cache_path: Path):
    """One row per (model, cell, prompt): mean pairwise LPIPS among that prompt's images."""
    scorer = _lpips_scorer(plan)
    groups = _prompt_groups(plan, jobs)

    def compute(todo):
        return {g: scorer.diversity([open_rgb(p) for p in groups[g]]) for g in todo}

    values = _group_values(
        experiment, "LPIPS diversity", groups, scorer.metric_id, cache_path, compute
    )
    return _group_frame(groups, values, "lpips_diversity")


def _clip_scorer(plan: Plan):
    from t2ibench.metrics.clip_score import ClipScorer

    section = _metrics(plan)["clip"]
    device = _device(plan, "clip")
    return ClipScorer(section["model"], section["pretrained"], device, section["batch_size"])


def clip_embeddings(plan: Plan, scorer, paths: list[str]):
    """CLIP image embeddings (N, D) of the images at `paths`, decoded by the DataLoader."""
    import torch

    rows: list = [None] * len(paths)
    workers = _metrics(plan)["workers"]
    for pixels, index in decoded_batches(paths, scorer.transform(), scorer.batch_size, workers):
        for i, embedding in zip(index.tolist(), scorer.embed_pixels(pixels), strict=True):
            rows[i] = embedding
    return torch.stack(rows)


CLIP_DIVERSITY_VERSION = "v1"


def clip_diversities(plan: Plan, experiment: str, jobs, cache_path: Path):
    """One row per (model, cell, prompt): the mean pairwise cosine distance (1 - cos) of
    the CLIP image embeddings of that prompt's images."""
    import torch

    scorer = _clip_scorer(plan)
    groups = _prompt_groups(plan, jobs)
    metric_id = f"clip_diversity/{CLIP_DIVERSITY_VERSION}|{scorer.metric_id}"

    def compute(todo):
        embeddings = clip_embeddings(plan, scorer, [p for g in todo for p in groups[g]])
        values, start = {}, 0
        for group in todo:
            e = embeddings[start : start + len(groups[group])]
            start += len(e)
            i, j = torch.triu_indices(len(e), len(e), offset=1)
            values[group] = (1 - (e[i] * e[j]).sum(-1)).mean().item()
        return values

    values = _group_values(experiment, "CLIP diversity", groups, metric_id, cache_path, compute)
    return _group_frame(groups, values, "clip_diversity")


# --- against reference images ----------------------------------------------------------


REFERENCE_VERSION = "v1"
REFERENCE_COLUMNS = ["clip_ref_cosine", "lpips_ref"]


def reference_similarities(plan: Plan, experiment: str, jobs, cache_path: Path):
    """One row per image whose prompt has a reference image: the cosine of their CLIP
    image embeddings (`clip_ref_cosine`) and their LPIPS distance (`lpips_ref`; the
    reference is resized to the image's size with bicubic filtering first)."""
    import pandas as pd
    from PIL import Image

    from t2ibench.metrics.cache import ScoreCache, image_sha256

    pairs = []
    for job in scorable_jobs(plan, jobs):
        reference = plan.prompt(job).reference_image
        if reference:
            pairs.append((plan.path(job), reference))
    if not pairs:
        log.debug("%s: no prompt has a reference image: no reference similarity", experiment)
        return pd.DataFrame(columns=["image_path", *REFERENCE_COLUMNS])
    clip, lpips = _clip_scorer(plan), _lpips_scorer(plan)
    ids = {
        "clip_ref_cosine": f"clip_ref_cosine/{REFERENCE_VERSION}|{clip.metric_id}",
        "lpips_ref": f"lpips_ref/{REFERENCE_VERSION}|{lpips.metric_id}",
    }
    ref_sha = {ref: image_sha256(ref) for ref in {r for _, r in pairs}}
    # A pair's key: the image's hash, and the metric with the reference's hash.
    keys = {
        (path, column): (image_sha256(path), f"{ids[column]}|ref:{ref_sha[ref]}")
        for path, ref in pairs
        for column in REFERENCE_COLUMNS
    }
    cache = ScoreCache(cache_path)
    cached = cache.get_many(list(keys.values()))
    todo = [(p, r) for p, r in pairs if any(keys[p, c] not in cached for c in REFERENCE_COLUMNS)]
    _log_counts(experiment, "reference similarity", len(pairs), len(todo))
    if todo:
        refs = sorted({r for _, r in todo})
        embeddings = clip_embeddings(plan, clip, [p for p, _ in todo] + refs)
        ref_row = {ref: len(todo) + i for i, ref in enumerate(refs)}
        new = {}
        for i, (path, ref) in enumerate(todo):
            cosine = (embeddings[i] * embeddings[ref_row[ref]]).sum().item()
            image = open_rgb(path)
            reference = open_rgb(ref).resize(image.size, Image.Resampling.BICUBIC)
            new[keys[path, "clip_ref_cosine"]] = cosine
            new[keys[path, "lpips_ref"]] = lpips.distance(image, reference)
        cache.put_many(new)
        cached.update(new)
    rows = [
        {"image_path": path, **{c: cached[keys[path, c]] for c in REFERENCE_COLUMNS}}
        for path, _ in pairs
    ]
    return pd.DataFrame(rows, columns=["image_path", *REFERENCE_COLUMNS])


# --- per set -------------------------------------------------------------------------


FID_COLUMNS = [
    "model", "cell", "against", "images", "against_images", "fid", "kid", "kid_std",
    "extractor", "warning",
]  # fmt: skip


def reference_set(plan: Plan, experiment: str) -> list[str]:
    """The real images a set is compared with: `prompts.reference_images`, else the
    reference images paired with the experiment's prompts."""
    if plan.reference_images:
        return list(plan.reference_images)
    prompts = plan.experiments[experiment].prompts
    return sorted({p.reference_image for p in prompts if p.reference_image})


def set_distances(plan: Plan, experiment: str, jobs, cache_path: Path | None = None):
    """FID and KID of each (model, cell) image set against, as `metrics.fid.against` asks:
    the reference images (`reference`), the first model's images of that cell
    (`first_model`), and that model's images of the reference cell (`reference_cell`)."""
    import numpy as np
    import pandas as pd

    from t2ibench.metrics import fid

    section = _metrics(plan)["fid"]
    sets: dict[tuple[str, str], list[str]] = {}
    for job in scorable_jobs(plan, jobs):
        sets.setdefault((job.model, job.cell), []).append(plan.path(job))
    exp = plan.experiments[experiment]
    first_model, reference_cell = exp.models[0], exp.experiment.reference
    against = section["against"]
    comparisons = []
    for (model, cell), paths in sets.items():
        if "reference" in against:
            comparisons.append((model, cell, "reference", paths, reference_set(plan, experiment)))
        if "first_model" in against and model != first_model:
            comparisons.append((model, cell, first_model, paths, sets.get((first_model, cell), [])))
        if "reference_cell" in against and cell != reference_cell:
            other = sets.get((model, reference_cell), [])
            comparisons.append((model, cell, f"cell {reference_cell}", paths, other))
    comparisons = [c for c in comparisons if len(c[3]) > 1 and len(c[4]) > 1]
    if not comparisons:
        log.debug("%s: FID/KID: no two sets of 2+ images to compare", experiment)
        return pd.DataFrame(columns=FID_COLUMNS)
    extractor = fid.build_extractor(
        section["extractor"],
        section["model"],
        section["weights"],
        _device(plan, "fid"),
        section["batch_size"],
    )
    wanted = sorted({p for c in comparisons for p in (*c[3], *c[4])})
    log.debug(
        "%s: FID/KID features of %d images (%s)", experiment, len(wanted), extractor.extractor_id
    )
    features = fid.set_features(wanted, extractor, workers=_metrics(plan)["workers"])
    row_of = {path: i for i, path in enumerate(wanted)}
    rows = []
    for model, cell, against, a, b in comparisons:
        fa = features[[row_of[p] for p in a]]
        fb = features[[row_of[p] for p in b]]
        kid, kid_std = fid.kid(fa, fb)
        rows.append(
            (model, cell, against, len(a), len(b), fid.fid(fa, fb), kid, kid_std,
             extractor.extractor_id, fid.small_set_warning(len(a), len(b), fa.shape[1]))
        )  # fmt: skip
    frame = pd.DataFrame(rows, columns=FID_COLUMNS)
    frame["kid_std"] = frame["kid_std"].astype(float).replace({np.inf: np.nan})
    return frame


def metric_table(plan: Plan, experiment: str, metric: str, jobs, cache_path: Path):
    """The table of one metric (its registry entry, t2ibench.metrics.registry) over an
    experiment's listed images (`jobs`). A table that lacks the columns its entry names
    is an error naming the metric (a plugin's bug), not a results.csv without them."""
    from t2ibench.errors import InputError
    from t2ibench.metrics import registry

    entry = registry.get(metric)
    table = entry.table(plan, experiment, jobs, cache_path)
    wanted = [*registry.MERGE_KEYS.get(entry.granularity, []), *entry.column_names]
    missing = [c for c in wanted if c not in getattr(table, "columns", [])]
    if missing:
        raise InputError(
            f"metric {metric}: its table has no column {', '.join(missing)} "
            f"(a {entry.granularity} metric's table needs {', '.join(wanted)})"
        )
    return table
