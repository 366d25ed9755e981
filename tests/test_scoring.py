"""Scoring an experiment: flagged images are left out, cached scores are reused."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from t2ibench.config import validate_config
from t2ibench.plan import build_plan
from t2ibench.scoring import lpips_diversities, metric_table
from t2ibench.writer import image_flag


def test_image_flag():
    assert image_flag(Image.new("RGB", (8, 8))) == "black"
    assert image_flag(Image.new("RGB", (8, 8), (0, 0, 1))) == ""


def test_flagged_images_are_not_scored(base_config, repo, tmp_path):
    config = validate_config(base_config)
    config["metrics"]["clip"]["model"] = str(repo / "config" / "models" / "open_clip-tiny.json")
    plan = build_plan(config)
    jobs = [j for j in plan.jobs if j.prompt_index == 0]  # two images of prompt 0
    for job, colour in zip(jobs, [(200, 10, 10), (0, 0, 0)], strict=True):
        path = plan.path(job)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64), colour).save(path)
        flag = image_flag(Image.open(path))
        Path(path).with_suffix(".json").write_text(json.dumps({"image_flag": flag}))
    cache = tmp_path / "scores.sqlite"
    table = metric_table(plan, "baseline", "clip_score", jobs, cache)
    assert list(table["image_path"]) == [plan.path(jobs[0])]
    lpips = lpips_diversities(plan, "baseline", jobs, cache)
    assert list(lpips["lpips_diversity_images"]) == [1]  # the black image is not a diversity sample
