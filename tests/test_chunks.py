"""Chunks (images_per_job > 1): which chunks have images to make, their records, and the
workflow run in chunks against one job per image."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from t2ibench.chunks import (
    chunk_jobs,
    chunk_name,
    experiment_chunks,
    model_jobs,
    parse_chunk_name,
)
from t2ibench.config import validate_config
from t2ibench.plan import build_plan

from conftest import with_changes
from workflow_helpers import metrics_only, tiny_sdxl_models


def make_plan(base_config, **changes):
    config = with_changes(base_config, images_per_job=4, **changes)
    return build_plan(validate_config(config))


def two_model_plan(base_config, **changes):
    models = [
        {"name": "tiny", "source": "builtin:tiny-sdxl"},
        {"name": "vpred", "source": "builtin:tiny-sdxl-vpred"},
    ]
    # 3 prompts x 3 seeds = 9 images per model: chunks of 4, 4 and 1.
    return make_plan(base_config, models=models, generation__images_per_prompt=3, **changes)


def fake_image(plan, job, settings=None):
    """A finished image as generation leaves it: a PNG and its record."""
    from freshness_helpers import write_image

    return write_image(plan, job, settings)


def test_chunks_cover_each_models_images_once_in_plan_order(base_config):
    plan = two_model_plan(base_config)
    for model in ["tiny", "vpred"]:
        jobs = model_jobs(plan, "baseline", model)
        assert len(jobs) == 9 and all(j.model == model for j in jobs)
        chunks = [chunk_jobs(plan, "baseline", model, k, 4) for k in range(3)]
        assert [len(c) for c in chunks] == [4, 4, 1]
        assert [j for c in chunks for j in c] == jobs
        with pytest.raises(KeyError):
            chunk_jobs(plan, "baseline", model, 3, 4)


def test_chunk_names_round_trip_and_reject_others():
    assert chunk_name(3, 50) == "chunk003-of50"
    assert parse_chunk_name("chunk003-of50") == (3, 50)
    assert parse_chunk_name("chunk1234-of7") == (1234, 7)
    for bad in ["chunk3-of50", "chunk003-of", "003-of50", "chunk003-of50.json", "chunk003-of50.2"]:
        with pytest.raises(ValueError, match="chunk<k>-of<size>"):
            parse_chunk_name(bad)


def test_first_run_lists_every_chunk(base_config):
    plan = two_model_plan(base_config)
    chunks = experiment_chunks(plan, "baseline", 4)
    assert [(c.model, c.name, len(c.todo)) for c in chunks] == [
        ("tiny", "chunk000-of4", 4),
        ("tiny", "chunk001-of4", 4),
        ("tiny", "chunk002-of4", 1),
        ("vpred", "chunk000-of4", 4),
        ("vpred", "chunk001-of4", 4),
        ("vpred", "chunk002-of4", 1),
    ]


def test_finished_chunks_need_no_job(base_config):
    plan = two_model_plan(base_config)
    for job in plan.jobs:
        fake_image(plan, job)
    assert experiment_chunks(plan, "baseline", 4) == []
    assert experiment_chunks(plan, "baseline", 2) == []


def test_a_missing_image_lists_its_chunk_with_that_image_only(base_config):
    plan = two_model_plan(base_config)
    for job in plan.jobs:
        fake_image(plan, job)
    victim = chunk_jobs(plan, "baseline", "vpred", 1, 4)[2]
    Path(plan.path(victim)).unlink()
    chunks = experiment_chunks(plan, "baseline", 4)
    assert [(c.model, c.name, c.todo) for c in chunks] == [("vpred", "chunk001-of4", (victim,))]


def test_settings_change_lists_every_chunk_it_touches(base_config):
    plan = two_model_plan(base_config)
    for job in plan.jobs:
        fake_image(plan, job)
    changed = two_model_plan(base_config, generation__negative_prompt="blurry")
    chunks = experiment_chunks(changed, "baseline", 4)
    assert len(chunks) == 6
    assert sum(len(c.todo) for c in chunks) == 18


def test_images_per_job_is_validated(base_config):
    from t2ibench.errors import InputError

    assert validate_config(base_config)["images_per_job"] == 1
    for bad in [0, -3, 2.5, "many"]:
        with pytest.raises(InputError, match="images_per_job"):
            validate_config(with_changes(base_config, images_per_job=bad))


# --- The workflow in chunks, against one job per image -----------------------------------

PROMPTS = {
    "t_001": {"text": "a red cube on a table"},
    "t_002": {"text": "a small dog in the snow"},
    "t_003": {"text": "a lighthouse at night"},
}


def workflow_config(work, images_per_job):
    (work / "prompts" / "test.json").write_text(json.dumps(PROMPTS))
    return {
        "models": tiny_sdxl_models(),
        "prompts": {"sources": ["prompts/test.json"]},
        "generation": {"steps": 2, "width": 64, "height": 64, "images_per_prompt": 3},
        "metrics": metrics_only("clip"),
        "report": {"grid_cell_size": 64},
        "images_per_job": images_per_job,
        "torch_threads": 1,
    }


def run_images(work):
    return sorted((work / "results" / "baseline").glob("*/default/p*_i*_s*.png"))


def chunk_records(work):
    return sorted((work / "results" / "baseline" / "logs" / "chunks").glob("*/*.json"))


def job_counts(proc):
    from workflow_helpers import job_counts, output

    return job_counts(output(proc))


@pytest.fixture(scope="module")
def chunked_runs(tmp_path_factory):
    """The same config run in chunks of 4 and with one job per image."""
    from workflow_helpers import make_workdir, snakemake, write_config

    runs = {}
    for size in [4, 1]:
        work = make_workdir(tmp_path_factory.mktemp(f"size{size}"))
        write_config(work, workflow_config(work, size))
        runs[size] = (work, snakemake(work, "--configfile", "test-config.yaml"))
    return runs


@pytest.mark.slow
def test_a_run_in_chunks_equals_the_per_image_run(chunked_runs):
    import pandas as pd

    work, proc = chunked_runs[4]
    per_image, per_image_proc = chunked_runs[1]
    assert "generation in chunks of images_per_job = 4: 6 job(s) for 18 image(s)" in proc.stderr
    assert job_counts(proc)["generate_chunk"] == 6 and "generate_image" not in job_counts(proc)
    assert job_counts(per_image_proc)["generate_image"] == 18
    images = run_images(work)
    assert len(images) == 18
    for image in images:
        assert image.read_bytes() == (per_image / image.relative_to(work)).read_bytes()
    # Six chunk records: chunks of 4, 4 and 1 per model; every image made exactly once.
    records = [json.loads(p.read_text()) for p in chunk_records(work)]
    assert sorted(len(r["made"]) for r in records) == [1, 1, 4, 4, 4, 4]
    made = sorted(f"{r['model']}/{name}" for r in records for name in r["made"])
    assert made == sorted(f"{p.parent.parent.name}/default/{p.name}" for p in images)
    # One process: each model is loaded once, by the first chunk of it that ran.
    assert sum(r["model_loads"] for r in records) == 2
    assert {r["device"] for r in records} == {"cpu"}
    ours = pd.read_csv(work / "results" / "baseline" / "results.csv")
    theirs = pd.read_csv(per_image / "results" / "baseline" / "results.csv")
    assert ours["clip_score"].tolist() == theirs["clip_score"].tolist()


@pytest.mark.slow
def test_gaps_in_chunks_make_only_the_missing_images(chunked_runs):
    from workflow_helpers import nothing_to_do, snakemake

    work, _ = chunked_runs[4]
    args = ("--configfile", "test-config.yaml")
    assert nothing_to_do(snakemake(work, *args, "-n"))
    images = run_images(work)  # tiny-sdxl's 9 in plan order, then tiny-vpred's
    # Chunk 0 and chunk 1 (two images) of tiny-sdxl, chunk 2 (its one image) of tiny-vpred.
    deleted = [images[0], images[5], images[6], images[17]]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in images}
    for path in deleted:
        path.unlink()
    assert job_counts(snakemake(work, *args, "-n"))["generate_chunk"] == 3
    snakemake(work, *args)
    assert run_images(work) == images
    rewritten = [p for p in images if p.stat().st_mtime_ns != before[p][0]]
    assert sorted(rewritten) == sorted(deleted)
    assert all(p.read_bytes() == before[p][1] for p in images)
    clip_log = (work / "results" / "baseline" / "logs" / "clip_score.log").read_text()
    assert "clip_score for 18 images (18 cached, 0 to score)" in clip_log
    assert nothing_to_do(snakemake(work, *args, "-n"))


@pytest.mark.slow
def test_an_image_made_outside_a_chunk_remakes_the_list(chunked_runs):
    """An image made by the per-image rule after the list: the list (and the scores)
    follow, and no chunk job runs for a chunk that is complete."""
    from workflow_helpers import nothing_to_do, snakemake

    work, _ = chunked_runs[4]
    args = ("--configfile", "test-config.yaml")
    image = run_images(work)[10]
    image.unlink()
    snakemake(work, str(image.relative_to(work)), *args)  # rule generate_image
    counts = job_counts(snakemake(work, *args, "-n"))
    assert counts["image_list"] == 1 and "generate_chunk" not in counts
    snakemake(work, *args)
    assert nothing_to_do(snakemake(work, *args, "-n"))


@pytest.mark.slow
def test_ctrl_c_in_a_chunk_keeps_every_finished_image(tmp_path):
    """SIGINT in the middle of a chunk: the images it finished stay (they are not the
    job's outputs, so Snakemake does not delete them) and are not made again."""
    from workflow_helpers import interrupt_run, make_workdir, snakemake, write_config

    work = make_workdir(tmp_path)
    config = workflow_config(work, 30)
    config["models"] = config["models"][:1]
    config["generation"]["images_per_prompt"] = 20  # 60 images: two chunks of 30
    write_config(work, config)
    survivors = interrupt_run(work, run_images, again=0.5)
    assert len(survivors) < 60
    # One line for each chunk that stopped: no frames, no job log, no traceback from a
    # second Ctrl-C while the run's threads are joined.
    console = (work / "interrupted.log").read_text()
    assert re.search(r"chunk\d+-of30: stopped on interrupt after \d+ of 30 images", console)
    for noise in ("RuleException", "Log file", "Traceback", "Exception ignored", 'File "'):
        assert noise not in console, console
    before = {p: p.stat().st_mtime_ns for p in survivors}
    snakemake(work, "--configfile", "test-config.yaml")
    assert len(run_images(work)) == 60
    assert {p: p.stat().st_mtime_ns for p in survivors} == before
    made = [json.loads(p.read_text())["made"] for p in chunk_records(work)]
    assert sum(len(m) for m in made) == 60 - len(survivors)


def test_slurm_profile_runs_the_demo_config_in_chunks(tmp_path):
    """`snakemake --profile profiles/slurm -n` (no cluster needed) plans one generation
    job per chunk of the profile's images_per_job images, and none per image."""
    import math

    from workflow_helpers import make_workdir, profile_images_per_job, snakemake

    work = make_workdir(tmp_path)
    size = profile_images_per_job(work)
    assert size > 1
    config = validate_config(yaml.safe_load((work / "config" / "config.yaml").read_text()))
    plan = build_plan(config)
    per_model = {}
    for job in plan.jobs:
        per_model[(job.experiment, job.model)] = per_model.get((job.experiment, job.model), 0) + 1
    proc = snakemake(work, "--profile", "profiles/slurm", "-n")
    counts = job_counts(proc)
    assert counts["generate_chunk"] == sum(math.ceil(n / size) for n in per_model.values())
    assert "generate_image" not in counts
    assert f"generation in chunks of images_per_job = {size}" in proc.stderr
