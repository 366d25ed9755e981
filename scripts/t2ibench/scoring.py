"""Score an experiment's images, reusing cached scores.

Scores are cached by image content (sha256) and metric id, so a re-run, or a run with
more images, scores only what is new. Images that do not exist are skipped: scoring
covers the images that are there, whoever made them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path

from t2ibench.plan import ImageJob, Plan

log = logging.getLogger("t2ibench")


def existing_jobs(plan: Plan, experiment: str) -> list[ImageJob]:
    return [j for j in plan.jobs if j.experiment == experiment and Path(plan.path(j)).exists()]


def image_record(image_path: str) -> dict:
    """The generation record beside an image ({} for images made elsewhere)."""
    record = Path(image_path).with_suffix(".json")
    return json.loads(record.read_text(encoding="utf-8")) if record.exists() else {}


def scorable_jobs(plan: Plan, experiment: str) -> list[ImageJob]:
    """Existing images, less those flagged at generation (black / NaN)."""
    return [
        j
        for j in existing_jobs(plan, experiment)
        if not image_record(plan.path(j)).get("image_flag")
    ]


def _open_rgb(path: str):
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")


def clip_scores(plan: Plan, experiment: str, clip_config: dict, cache_path: Path):
    """One row per image: the CLIP score of the image against its prompt."""
    import pandas as pd

    from t2ibench.generate import resolve_device
    from t2ibench.metrics.cache import ScoreCache, image_sha256
    from t2ibench.metrics.clip_score import ClipScorer

    jobs = scorable_jobs(plan, experiment)
    paths = [plan.path(j) for j in jobs]
    prompts = [plan.prompt_text(j) for j in jobs]
    scorer = ClipScorer(
        clip_config["model"],
        clip_config["pretrained"],
        device=resolve_device(plan.config["device"]),
        batch_size=clip_config["batch_size"],
    )
    keys = [(image_sha256(p), scorer.metric_id) for p in paths]
    cache = ScoreCache(cache_path)
    cached = cache.get_many(keys)
    todo = [i for i, key in enumerate(keys) if key not in cached]
    log.info(
        "%s: CLIP score for %d images (%d cached, %d to score)",
        experiment,
        len(keys),
        len(keys) - len(todo),
        len(todo),
    )
    batch = clip_config["batch_size"]
    for start in range(0, len(todo), batch):
        chunk = todo[start : start + batch]
        scores = scorer.score([_open_rgb(paths[i]) for i in chunk], [prompts[i] for i in chunk])
        new = {keys[i]: s for i, s in zip(chunk, scores, strict=True)}
        cache.put_many(new)
        cached.update(new)
    return pd.DataFrame({"image_path": paths, "clip_score": [cached[k] for k in keys]})


def lpips_diversities(plan: Plan, experiment: str, lpips_config: dict, cache_path: Path):
    """One row per (model, cell, prompt): mean pairwise LPIPS among that prompt's images."""
    import pandas as pd

    from t2ibench.generate import resolve_device
    from t2ibench.metrics.cache import ScoreCache, image_sha256
    from t2ibench.metrics.lpips_diversity import LpipsScorer

    groups: dict[tuple, list[str]] = {}
    for job in scorable_jobs(plan, experiment):
        groups.setdefault((job.model, job.cell, job.prompt_index), []).append(plan.path(job))
    scorer = LpipsScorer(
        lpips_config["net"],
        lpips_config["backbone_weights"],
        device=resolve_device(plan.config["device"]),
    )
    cache = ScoreCache(cache_path)
    # A prompt's diversity depends on its whole image set: key it by all their hashes.
    keys = {}
    for group, paths in groups.items():
        digest = hashlib.sha256("".join(sorted(image_sha256(p) for p in paths)).encode())
        keys[group] = (digest.hexdigest(), scorer.metric_id)
    cached = cache.get_many(list(keys.values()))
    todo = [g for g, key in keys.items() if key not in cached]
    log.info(
        "%s: LPIPS diversity for %d prompt groups (%d cached)",
        experiment,
        len(keys),
        len(keys) - len(todo),
    )
    for group in todo:
        paths = groups[group]
        if len(paths) < 2:  # no pair to compare: not a score, so not cached
            cached[keys[group]] = math.nan
            continue
        value = scorer.diversity([_open_rgb(p) for p in paths])
        cache.put_many({keys[group]: value})
        cached[keys[group]] = value
    rows = [
        {
            "model": g[0],
            "cell": g[1],
            "prompt_index": g[2],
            "lpips_diversity": cached[keys[g]],
            "lpips_images": len(groups[g]),
        }
        for g in sorted(groups)
    ]
    return pd.DataFrame(
        rows, columns=["model", "cell", "prompt_index", "lpips_diversity", "lpips_images"]
    )
