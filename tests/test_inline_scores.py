"""Scores made in the generation job from the pixels in memory (metrics.score_in_generation,
t2ibench.inline_scores): the metric jobs then find every score in the cache, and each
equals the score of the PNG decoded from disk; off, nothing is scored there; a failing
scorer costs no image."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from t2ibench import scoring
from t2ibench.config import validate_config
from t2ibench.metrics.cache import ScoreCache
from t2ibench.plan import build_plan

from conftest import with_changes

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SCORED = ["clip_score", "siglip_score"]  # a plain tensor of prompts, and a dict of them


def plan_of(base_config, inline: bool, workers: int = 2):
    metrics = {
        "score_in_generation": inline,
        "workers": workers,
        "siglip": {"enabled": True, "model": "builtin:tiny-siglip"},
        **{name: {"enabled": False} for name in ("lpips", "image_reward", "pickscore", "hps")},
    }
    config = with_changes(base_config, images_per_job=6, metrics=metrics, generation__batch_size=2)
    return build_plan(validate_config(config))


def build_tiny_sdxl(plan):
    from t2ibench.models import families
    from t2ibench.models.registry import builtin_paths

    checkpoint, config_dir = builtin_paths(plan.config["resources_dir"], "tiny-sdxl")
    families.get("sdxl").build_builtin(
        families.builtins()["tiny-sdxl"], Path(checkpoint), Path(config_dir)
    )


def run_chunk(plan, tmp_path):
    from t2ibench.chunks import chunk_jobs, experiment_chunks
    from t2ibench.generation_steps import generate_chunk

    build_tiny_sdxl(plan)
    experiment = next(iter(plan.experiments))
    chunk = experiment_chunks(plan, experiment, 6)[0]
    record = tmp_path / "chunk.json"
    generate_chunk(plan, experiment, chunk.model, chunk.name, str(record), str(tmp_path / "l"))
    return experiment, chunk_jobs(plan, experiment, chunk.model, chunk.index, chunk.size)


def cache_rows(path: Path) -> int:
    import sqlite3

    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM scores").fetchone()[0]


def all_scores(path: Path) -> dict:
    import sqlite3

    with sqlite3.connect(path) as db:
        return dict(((sha, metric), v) for sha, metric, v in db.execute("SELECT * FROM scores"))


def tables(plan, experiment, jobs, cache_path):
    return {
        name: scoring.metric_table(plan, experiment, name, jobs, cache_path).set_index(
            "image_path"
        )[name]
        for name in SCORED
    }


def test_generation_scores_every_image_and_the_metric_jobs_decode_none(
    base_config, tmp_path, monkeypatch
):
    from t2ibench.steps import score_cache_path

    plan = plan_of(base_config, inline=True)
    experiment, jobs = run_chunk(plan, tmp_path)
    cache_path = score_cache_path(plan)
    assert len(jobs) == 6 and cache_rows(cache_path) == 6 * len(SCORED)

    # The metric jobs find every score: no PNG is decoded, nothing is added.
    def no_decoding(*args, **kwargs):
        raise AssertionError("a PNG was decoded for a score the generation job made")

    with monkeypatch.context() as patch:
        patch.setattr(scoring, "decoded_batches", no_decoding)
        inline = tables(plan, experiment, jobs, cache_path)
    assert cache_rows(cache_path) == 6 * len(SCORED)

    # Scored from the PNGs on disk instead (an empty cache): the same numbers.
    from_disk = tables(plan, experiment, jobs, tmp_path / "fresh.sqlite")
    for name in SCORED:
        assert inline[name].index.tolist() == [plan.path(j) for j in jobs]
        assert inline[name].tolist() == pytest.approx(from_disk[name].tolist(), abs=1e-4)
        assert inline[name].nunique() > 1  # the images differ, so do their scores


def test_off_by_default_nothing_is_scored_in_generation(base_config, tmp_path):
    from t2ibench.inline_scores import InlineScores
    from t2ibench.steps import score_cache_path

    plan = build_plan(validate_config(base_config))
    assert plan.config["metrics"]["score_in_generation"] is False
    assert InlineScores.for_jobs(plan, score_cache_path(plan), plan.jobs) is None
    plan = plan_of(base_config, inline=False)
    run_chunk(plan, tmp_path)
    assert cache_rows(score_cache_path(plan)) == 0


def test_a_failing_scorer_costs_no_image_and_leaves_the_score_to_its_metric_job(
    base_config, tmp_path, monkeypatch, caplog
):
    from t2ibench.metrics.siglip import SiglipScorer
    from t2ibench.steps import score_cache_path

    def broken(self, pixels, texts):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(SiglipScorer, "score_pixels", broken)
    plan = plan_of(base_config, inline=True, workers=0)
    with caplog.at_level(logging.WARNING, logger="t2ibench"):
        experiment, jobs = run_chunk(plan, tmp_path)
    assert all(Path(plan.path(j)).exists() for j in jobs)
    warnings = [
        r.getMessage() for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "t2ibench"
    ]  # fmt: skip
    assert warnings == [
        "siglip_score: not scored in generation (CUDA out of memory); its metric job scores it"
    ]
    cache = ScoreCache(score_cache_path(plan))
    assert cache_rows(cache.path) == 6  # CLIP's, not SigLIP's
    monkeypatch.undo()
    table = scoring.metric_table(plan, experiment, "siglip_score", jobs, cache.path)
    assert table["siglip_score"].notna().all() and cache_rows(cache.path) == 12


def test_flagged_images_are_not_scored_and_an_interrupt_drops_what_is_pending(
    base_config, tmp_path
):
    from PIL import Image

    from t2ibench.inline_scores import InlineScores

    plan = plan_of(base_config, inline=True, workers=0)
    build_tiny_sdxl(plan)
    jobs = plan.jobs[:3]
    scores = InlineScores.for_jobs(plan, tmp_path / "s.sqlite", jobs)
    image = Image.new("RGB", (64, 64), (120, 30, 200))
    with pytest.raises(KeyboardInterrupt):
        with scores:
            scores.add(plan.path(jobs[0]), image, {"image_flag": "black", "png_sha256": "a"})
            scores.add(plan.path(jobs[1]), image, {"image_flag": "", "png_sha256": "b"})
            assert len(scores.pending) == 1  # below every scorer's batch size
            raise KeyboardInterrupt
    assert scores.scored == 0 and cache_rows(tmp_path / "s.sqlite") == 0
    with InlineScores.for_jobs(plan, tmp_path / "s.sqlite", jobs) as scores:
        scores.add(plan.path(jobs[2]), image, {"image_flag": "", "png_sha256": "c"})
    assert scores.scored == 1 and cache_rows(tmp_path / "s.sqlite") == len(SCORED)


def test_a_job_of_one_image_scores_it_too(base_config, tmp_path):
    """The per-image rule (images_per_job 1): each job scores its image."""
    from t2ibench.generation_steps import generate_image
    from t2ibench.steps import score_cache_path

    metrics = {"score_in_generation": True, "workers": 0, "siglip": {"enabled": False}}
    metrics |= {name: {"enabled": False} for name in ("lpips", "image_reward", "pickscore", "hps")}
    plan = build_plan(validate_config(with_changes(base_config, metrics=metrics)))
    build_tiny_sdxl(plan)
    jobs = plan.jobs[:2]
    for job in jobs:
        wildcards = {"experiment": job.experiment, "model": job.model, "cell": job.cell,
                     "prompt": str(job.prompt_index), "image": str(job.image_index),
                     "seed": str(job.seed)}  # fmt: skip
        path = plan.path(job)
        generate_image(plan, wildcards, path, path[:-4] + ".json", str(tmp_path / "log"))
    cache_path = score_cache_path(plan)
    assert cache_rows(cache_path) == 2
    inline = scoring.metric_table(plan, job.experiment, "clip_score", jobs, cache_path)
    fresh = scoring.metric_table(plan, job.experiment, "clip_score", jobs, tmp_path / "f.sqlite")
    assert inline["clip_score"].tolist() == pytest.approx(fresh["clip_score"].tolist(), abs=1e-4)


def test_a_failing_score_cache_costs_no_image(base_config, tmp_path, monkeypatch, caplog):
    """The cache cannot be written (locked, disk full): each scorer is dropped in one line,
    every image is still written and the job succeeds."""
    import sqlite3

    from t2ibench.inline_scores import InlineScores

    def locked(self, values, table="scores"):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(ScoreCache, "put_many", locked)
    monkeypatch.setattr(InlineScores, "_batch_size", lambda self: 2)  # flush mid-job
    plan = plan_of(base_config, inline=True, workers=0)
    with caplog.at_level(logging.WARNING, logger="t2ibench"):
        _, jobs = run_chunk(plan, tmp_path)
    assert all(Path(plan.path(j)).exists() for j in jobs) and len(jobs) == 6
    warnings = sorted(
        r.getMessage() for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "t2ibench"
    )  # fmt: skip
    assert warnings == [
        f"{name}: not scored in generation (database is locked); its metric job scores it"
        for name in SCORED
    ]


def test_scoring_waits_for_the_model_lock(base_config, tmp_path):
    """Scores are made under the lock models are loaded and run under: a model loading in
    bf16 elsewhere in the process changes torch's default dtype meanwhile."""
    import threading

    import torch
    from PIL import Image

    from t2ibench.generate import TORCH_LOCK
    from t2ibench.inline_scores import InlineScores

    plan = plan_of(base_config, inline=True, workers=0)
    build_tiny_sdxl(plan)
    jobs = plan.jobs[:2]
    image = Image.new("RGB", (64, 64), (120, 30, 200))
    reference = InlineScores.for_jobs(plan, tmp_path / "ref.sqlite", jobs)
    with reference:
        reference.add(plan.path(jobs[0]), image, {"image_flag": "", "png_sha256": "a"})
    scores = InlineScores.for_jobs(plan, tmp_path / "s.sqlite", jobs)
    scores.add(plan.path(jobs[0]), image, {"image_flag": "", "png_sha256": "a"})
    closing = threading.Thread(target=scores.close)
    with TORCH_LOCK:
        torch.set_default_dtype(torch.bfloat16)  # as during a bf16 from_pretrained
        try:
            closing.start()
            closing.join(0.5)
            assert closing.is_alive()  # waiting for the lock, not scoring in bf16
        finally:
            torch.set_default_dtype(torch.float32)
    closing.join(60)
    assert scores.scored == 1 and scores.scorers.keys() == reference.scorers.keys()
    got, want = all_scores(tmp_path / "s.sqlite"), all_scores(tmp_path / "ref.sqlite")
    assert len(got) == len(SCORED) and got == want


def test_the_metric_jobs_reuse_the_scorers_generation_built(base_config, tmp_path, monkeypatch):
    """One copy of each scorer per process: the metric job takes the generation job's."""
    from t2ibench.metrics.clip_score import ClipScorer
    from t2ibench.steps import score_cache_path

    plan = plan_of(base_config, inline=True, workers=0)
    experiment, jobs = run_chunk(plan, tmp_path)

    def no_second_copy(*args, **kwargs):
        raise AssertionError("a second CLIP scorer was built")

    monkeypatch.setattr(ClipScorer, "__init__", no_second_copy)
    fresh = tmp_path / "fresh.sqlite"  # nothing cached: the scorer must run
    table = scoring.metric_table(plan, experiment, "clip_score", jobs, fresh)
    assert table["clip_score"].notna().all() and cache_rows(fresh) == 6
    assert cache_rows(score_cache_path(plan)) == 6 * len(SCORED)
