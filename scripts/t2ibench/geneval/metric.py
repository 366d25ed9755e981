"""The GenEval metrics: per image `geneval` (1 when the image is correct for its prompt's
GenEval metadata, else 0), its task and the reason it failed; per (model, cell) and task
the share of correct images with a 95% CI over prompts (`geneval_tasks`, with the
overall score: the mean over tasks, as GenEval reports it).

Images of prompts without GenEval metadata get empty cells, and the table one warning.
Verdicts are cached by image content, prompt and metadata, detector, colour model and
thresholds.
"""

from __future__ import annotations

import json
import logging

log = logging.getLogger("t2ibench")

FORMULA_VERSION = "v1"
DETECTOR_KEY = "metrics.geneval.detector"


def _settings_id(section: dict) -> str:
    keys = ("threshold", "counting_threshold", "max_objects", "position_margin")
    return "/".join(f"{k}={section[k]}" for k in keys)


def _models_id(plan, section: dict) -> tuple[str, str]:
    """(what the verdicts depend on besides the image, the detector's folder): the
    detector's config, preprocessor and weights, and the colour model's architecture
    config and weights, by content."""
    from t2ibench.metrics.hf import require_local, weights_id
    from t2ibench.metrics.registry import builtin_folder, is_builtin
    from t2ibench.models.checks import sha256_file

    detector = section["detector"]
    if is_builtin(detector):
        detector = str(builtin_folder(detector, plan.config["resources_dir"], DETECTOR_KEY))
    folder, name = require_local(
        detector, ("config.json",), "GenEval detector", "a Mask2Former COCO-instance",
        "facebook/mask2former-swin-small-coco-instance", DETECTOR_KEY,
    )  # fmt: skip
    files = [folder / f for f in ("config.json", "preprocessor_config.json")]
    detector_id = "+".join(sha256_file(f)[:12] for f in files if f.is_file())
    return f"{name}@{detector_id}/{weights_id(folder)}|{colour_model_id(plan, section)}", str(
        folder
    )


def colour_model_id(plan, section: dict) -> str:
    """The colour classifier's open_clip architecture (its config's hash) and weights
    (random, a tag, or a file's sha256, read once and cached)."""
    import hashlib

    import open_clip

    from t2ibench.metrics.clip_score import _register_architecture
    from t2ibench.models.checks import sha256_file, sha_cache

    name = _register_architecture(section["clip_model"])
    config = json.dumps(open_clip.get_model_config(name), sort_keys=True)
    config_id = hashlib.sha256(config.encode()).hexdigest()[:12]
    pretrained = section["clip_pretrained"]
    if not pretrained:
        weights = "random:seed0"
    elif open_clip.get_pretrained_cfg(name, pretrained):
        weights = f"tag:{pretrained}"
    else:
        from pathlib import Path

        cache = sha_cache(plan.config["resources_dir"])
        weights = f"sha256:{sha256_file(Path(pretrained), cache)[:16]}"
    return f"{name}@{config_id}/{weights}"


def verdicts(plan, experiment: str, jobs, cache_path, warn: bool = True):
    """[(job, task, correct, reason)] of the listed images whose prompt has metadata."""
    from t2ibench.geneval.rules import evaluate, keep
    from t2ibench.metrics.cache import ScoreCache
    from t2ibench.metrics.loader import open_image
    from t2ibench.metrics.registry import device_of
    from t2ibench.scoring import prompt_key, scorable_jobs

    metrics = plan.config["metrics"]
    section = metrics["geneval"]
    jobs = scorable_jobs(plan, jobs)
    with_meta = [j for j in jobs if plan.prompt(j).geneval]
    left = len({plan.prompt(j).id for j in jobs}) - len({plan.prompt(j).id for j in with_meta})
    if left and warn:
        log.warning(
            "%s: GenEval: %d prompt(s) have no GenEval metadata: their images get empty "
            "geneval cells (prompts.sources: a GenEval .jsonl, e.g. prompts/geneval.jsonl)",
            experiment, left,
        )  # fmt: skip
    # A cell that rewrote the prompt (prompt_sr) made images of another text than the
    # metadata describes: no verdict for them.
    rewritten = [j for j in with_meta if plan.prompt_text(j) != plan.prompt(j).text]
    if rewritten and warn:
        log.warning(
            "%s: GenEval: %d image(s) of cells that rewrite the prompt (prompt_sr) get empty "
            "geneval cells: their prompt is not the one the metadata describes",
            experiment, len(rewritten),
        )  # fmt: skip
    with_meta = [j for j in with_meta if plan.prompt_text(j) == plan.prompt(j).text]
    if not with_meta:
        return []
    models_id, folder = _models_id(plan, section)
    metric_id = f"geneval/{FORMULA_VERSION}/{models_id}/{_settings_id(section)}"
    keys = [
        prompt_key(plan.path(j), metric_id, plan.prompt_text(j) + plan.prompt(j).geneval)
        for j in with_meta
    ]
    cache = ScoreCache(cache_path)
    correct, reasons = cache.get_many(keys), cache.get_many(keys, table="texts")
    todo = [i for i, k in enumerate(keys) if k not in correct or k not in reasons]
    log.debug("%s: GenEval for %d images (%d cached)", experiment, len(keys), len(keys) - len(todo))
    if todo:
        from t2ibench.geneval.detect import ColourClassifier, Detector

        device = device_of(section, metrics, plan.config["device"])
        detector = Detector(folder, device, source=section["detector"])
        colours = ColourClassifier(section["clip_model"], section["clip_pretrained"], device)
        for i in todo:
            job = with_meta[i]
            image = open_image(plan.path(job))
            metadata = json.loads(plan.prompt(job).geneval)
            found = keep(
                detector.detect(image), metadata["tag"], section["threshold"],
                section["counting_threshold"], section["max_objects"],
            )  # fmt: skip
            ok, reason = evaluate(
                found, metadata, lambda objs, name, image=image: colours(image, objs, name),
                section["position_margin"],
            )  # fmt: skip
            correct[keys[i]], reasons[keys[i]] = float(ok), reason
            cache.put_many({keys[i]: float(ok)})
            cache.put_many({keys[i]: reason}, table="texts")
    return [
        (job, json.loads(plan.prompt(job).geneval)["tag"], correct[k], reasons[k])
        for job, k in zip(with_meta, keys, strict=True)
    ]


def image_table(plan, experiment: str, jobs, cache_path):
    """metrics/geneval.csv: per listed image `geneval` (1/0; empty without metadata),
    `geneval_task` and `geneval_reason`."""
    import pandas as pd

    from t2ibench.scoring import scorable_jobs

    found = {plan.path(j): (task, ok, why) for j, task, ok, why in verdicts(
        plan, experiment, jobs, cache_path)}  # fmt: skip
    rows = []
    for job in scorable_jobs(plan, jobs):
        task, ok, why = found.get(plan.path(job), ("", None, ""))
        rows.append({"image_path": plan.path(job), "geneval": ok, "geneval_task": task,
                     "geneval_reason": why})  # fmt: skip
    return pd.DataFrame(rows, columns=["image_path", "geneval", "geneval_task", "geneval_reason"])


def task_table(plan, experiment: str, jobs, cache_path):
    """metrics/geneval_tasks.csv: per model, cell and task the share of correct images
    (mean over images; 95% t-interval over prompts, t2ibench.stats), then `overall`: the
    mean over tasks (its CI a bootstrap with prompts resampled within each task)."""
    import numpy as np
    import pandas as pd

    from t2ibench.stats import mean_ci

    columns = ["model", "cell", "task", "images", "prompts", "accuracy", "ci_low", "ci_high"]
    rows = []
    by_set: dict = {}
    for job, task, ok, _ in verdicts(plan, experiment, jobs, cache_path, warn=False):
        by_set.setdefault((job.model, job.cell), []).append((task, job.prompt_index, ok))
    for (model, cell), items in by_set.items():
        frame = pd.DataFrame(items, columns=["task", "prompt", "ok"])
        tasks = list(dict.fromkeys(frame["task"]))
        for task in tasks:
            part = frame[frame["task"] == task]
            low, high = mean_ci(part["ok"].to_numpy(float), part["prompt"].to_numpy())
            rows.append((model, cell, task, len(part), part["prompt"].nunique(),
                         part["ok"].mean(), low, high))  # fmt: skip
        low, high = overall_ci(frame)
        means = [frame[frame["task"] == t]["ok"].mean() for t in tasks]
        rows.append((model, cell, "overall", len(frame), frame["prompt"].nunique(),
                     float(np.mean(means)), low, high))  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def overall_ci(frame, level: float = 0.95, draws: int = 2000) -> tuple[float, float]:
    """Bootstrap CI of the mean over tasks of each task's accuracy, prompts resampled
    within each task (seeded: the same numbers on every run)."""
    import numpy as np

    rng = np.random.default_rng(0)
    per_task = []
    for task in dict.fromkeys(frame["task"]):
        part = frame[frame["task"] == task]
        sums = part.groupby("prompt")["ok"].agg(["sum", "count"]).to_numpy(float)
        pick = rng.integers(0, len(sums), size=(draws, len(sums)))
        per_task.append(sums[pick, 0].sum(1) / sums[pick, 1].sum(1))
    if not per_task:
        return float("nan"), float("nan")
    overall = np.mean(per_task, axis=0)
    tail = (1 - level) / 2
    return float(np.quantile(overall, tail)), float(np.quantile(overall, 1 - tail))
