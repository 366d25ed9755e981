"""The metric tables of an experiment: every metric on tiny models, the cache, reference
similarity, CLIP diversity, FID/KID sets, DataLoader decoding and config errors."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from t2ibench.config import validate_config
from t2ibench.errors import InputError
from t2ibench.metrics import fid, registry
from t2ibench.metrics.loader import ImageFiles, decoded_batches, loader_workers
from t2ibench.metrics.registry import enabled
from t2ibench.plan import build_plan
from t2ibench.scoring import clip_embeddings, metric_table

from conftest import with_changes

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _paired_prompts(folder: Path) -> Path:
    """Three prompts, two with a reference image."""
    folder.mkdir()
    rng = np.random.default_rng(3)
    for stem, text, ref in [("apple", "a red apple", True), ("sea", "the sea", True),
                            ("cube", "a blue cube", False)]:  # fmt: skip
        (folder / f"{stem}.txt").write_text(text)
        if ref:
            pixels = rng.integers(0, 256, size=(80, 96, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{stem}.png")
    return folder


def score(plan, experiment, metric, cache):
    """The metric's table over every image of the experiment (all exist here)."""
    jobs = [j for j in plan.jobs if j.experiment == experiment]
    return metric_table(plan, experiment, metric, jobs, cache)


def _plan(base_config, tmp_path, repo, **changes):
    defaults = {
        "prompts": {"sources": [str(_paired_prompts(tmp_path / "paired"))]},
        "models": [
            {"name": "tiny", "source": "builtin:tiny-sdxl"},
            {"name": "tiny-b", "source": "builtin:tiny-sdxl-vpred"},
        ],
        "generation__images_per_prompt": 3,
    }
    config = with_changes(base_config, **(defaults | changes))
    config = validate_config(config)
    config["metrics"]["clip"]["model"] = str(repo / "config/models/open_clip-tiny.json")
    config["metrics"]["fid"]["model"] = str(repo / "config/models/open_clip-tiny.json")
    config["metrics"]["workers"] = 0
    plan = build_plan(config)
    rng = np.random.default_rng(0)
    for job in plan.jobs:  # stand-in images: scoring does not care who made them
        path = Path(plan.path(job))
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(path)
    return plan


def test_every_metric_scores_then_the_cache_answers(base_config, tmp_path, repo, caplog):
    plan = _plan(base_config, tmp_path, repo)
    cache = tmp_path / "scores.sqlite"
    metrics = enabled(plan.config["metrics"])
    # every metric is on by default, on tiny models, but GenEval (its prompts need metadata)
    assert metrics == [m for m in registry.names() if not m.startswith("geneval")]
    caplog.set_level(logging.DEBUG, logger="t2ibench")  # the counts go to the job logs
    first = {m: score(plan, "baseline", m, cache) for m in metrics}
    counted = re.findall(r"\((\d+) cached, (\d+) to score\)", caplog.text)
    assert len(counted) == 8  # every metric but FID (a set metric, not cached per image)
    assert all(int(todo) > 0 for _, todo in counted)
    images = len(plan.jobs)
    for column in ["clip_score", "siglip_score", "image_reward", "pickscore", "hps"]:
        table = first[column]
        assert len(table) == images and table[column].notna().all(), column
        assert table[column].nunique() > 1, column  # the images are told apart
    caplog.clear()
    second = {m: score(plan, "baseline", m, cache) for m in metrics}
    counted = re.findall(r"\((\d+) cached, (\d+) to score\)", caplog.text)
    assert len(counted) == 8 and all(int(todo) == 0 for _, todo in counted), counted
    for m in metrics:
        assert second[m].equals(first[m]), m


def test_reference_similarity_against_direct_computation(base_config, tmp_path, repo):
    from t2ibench.metrics.clip_score import ClipScorer
    from t2ibench.metrics.lpips_diversity import LpipsScorer

    plan = _plan(base_config, tmp_path, repo)
    table = score(plan, "baseline", "reference_similarity", tmp_path / "s.sqlite")
    jobs = [j for j in plan.jobs if plan.prompt(j).reference_image]
    assert sorted(table["image_path"]) == sorted(plan.path(j) for j in jobs)
    assert len(table) == 2 * 2 * 3  # 2 models x 2 prompts with a reference x 3 images
    clip = ClipScorer(plan.config["metrics"]["clip"]["model"])
    lpips = LpipsScorer()
    for job in jobs[:3]:
        image = Image.open(plan.path(job)).convert("RGB")
        reference = Image.open(plan.prompt(job).reference_image).convert("RGB")
        row = table.set_index("image_path").loc[plan.path(job)]
        e = clip.embed_images([image, reference])
        assert row["clip_ref_cosine"] == pytest.approx((e[0] @ e[1]).item(), abs=1e-5)
        resized = reference.resize(image.size, Image.Resampling.BICUBIC)
        assert row["lpips_ref"] == pytest.approx(lpips.distance(image, resized), abs=1e-5)


def test_clip_diversity_is_mean_pairwise_cosine_distance(base_config, tmp_path, repo):
    from t2ibench.metrics.clip_score import ClipScorer

    plan = _plan(base_config, tmp_path, repo)
    table = score(plan, "baseline", "clip_diversity", tmp_path / "s.sqlite")
    assert len(table) == 2 * 3 and (table["clip_diversity_images"] == 3).all()
    clip = ClipScorer(plan.config["metrics"]["clip"]["model"])
    jobs = [j for j in plan.jobs if j.model == "tiny" and j.prompt_index == 1]
    e = clip.embed_images([Image.open(plan.path(j)).convert("RGB") for j in jobs])
    expected = np.mean([1 - (e[i] @ e[k]).item() for i, k in [(0, 1), (0, 2), (1, 2)]])
    row = table[(table.model == "tiny") & (table.prompt_index == 1)]
    assert row["clip_diversity"].item() == pytest.approx(expected, abs=1e-6)


def test_fid_sets_and_values(base_config, tmp_path, repo):
    plan = _plan(base_config, tmp_path, repo)
    table = score(plan, "baseline", "fid", tmp_path / "s.sqlite")
    # baseline: each model against the 2 reference images; tiny-b against tiny
    assert sorted(zip(table.model, table.against, strict=True)) == [
        ("tiny", "reference"), ("tiny-b", "reference"), ("tiny-b", "tiny")
    ]  # fmt: skip
    row = table[table.against == "tiny"].iloc[0]
    assert (row.images, row.against_images) == (9, 9)
    assert "rank-deficient" in row.warning and "too noisy" in row.warning
    extractor = fid.build_extractor("clip", plan.config["metrics"]["fid"]["model"], "")
    paths = {m: [plan.path(j) for j in plan.jobs if j.model == m] for m in ["tiny", "tiny-b"]}
    a = fid.set_features(paths["tiny-b"], extractor)
    b = fid.set_features(paths["tiny"], extractor)
    assert row.fid == pytest.approx(fid.fid(a, b), rel=1e-9)
    assert row.kid == pytest.approx(fid.kid(a, b)[0], rel=1e-9)


def test_fid_against_the_reference_cell_in_a_sweep(base_config, tmp_path, repo):
    plan = _plan(
        base_config, tmp_path, repo, experiments=["sdxl_guidance"], quick=True,
        models=[{"name": "tiny", "source": "builtin:tiny-sdxl"}],
    )  # fmt: skip
    table = score(plan, "sdxl_guidance", "fid", tmp_path / "s.sqlite")
    exp = plan.experiments["sdxl_guidance"]
    others = [c.name for c in exp.cells if c.name != exp.experiment.reference]
    vs_cell = table[table.against == f"cell {exp.experiment.reference}"]
    assert sorted(vs_cell.cell) == sorted(others)


def test_no_reference_images_means_empty_tables(base_config, tmp_path, repo):
    config = validate_config(base_config)
    config["metrics"]["clip"]["model"] = str(repo / "config/models/open_clip-tiny.json")
    plan = build_plan(config)
    for job in plan.jobs:
        Path(plan.path(job)).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64), (job.prompt_index * 60, job.seed % 255, 9)).save(plan.path(job))
    table = score(plan, "baseline", "reference_similarity", tmp_path / "s.sqlite")
    assert table.empty and list(table.columns) == ["image_path", "clip_ref_cosine", "lpips_ref"]
    assert score(plan, "baseline", "fid", tmp_path / "s.sqlite").empty


# --- decoding ---


def _pngs(folder: Path, count: int, size: int) -> list[str]:
    rng = np.random.default_rng(1)
    paths = []
    for i in range(count):
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_dataloader_workers_decode_the_same_batches_in_order(tmp_path):
    from torchvision.transforms import functional as F

    paths = _pngs(tmp_path, 10, 16)
    serial = list(decoded_batches(paths, F.pil_to_tensor, 4, workers=0))
    parallel = list(decoded_batches(paths, F.pil_to_tensor, 4, workers=2, min_batches=0))
    assert [b[1].tolist() for b in serial] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    for (p1, i1), (p2, i2) in zip(serial, parallel, strict=True):
        assert torch.equal(p1, p2) and torch.equal(i1, i2)
    assert torch.equal(ImageFiles(paths, F.pil_to_tensor)[3][0], serial[0][0][3])


def test_workers_start_only_when_decoding_is_worth_it(tmp_path, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    small = _pngs(tmp_path, 1, 64) * 400  # 400 tiny images: decoding is cheap
    assert loader_workers(small, 32, 8, 4) == 0
    big = tmp_path / "big.png"
    Image.new("RGB", (1024, 1024)).save(big)
    assert loader_workers([str(big)] * 400, 32, 8, 4) == 8
    assert loader_workers([str(big)] * 100, 32, 8, 4) == 0  # under 4 batches
    assert loader_workers([str(big)] * 400, 32, 0, 4) == 0  # workers: 0 means none
    assert loader_workers(small[:40], 32, 8, 0) == 2  # forced: at most one per batch


def test_embeddings_from_the_loader_match_in_memory(base_config, tmp_path, repo):
    from t2ibench.metrics.clip_score import ClipScorer

    plan = _plan(base_config, tmp_path, repo)
    clip = ClipScorer(plan.config["metrics"]["clip"]["model"], batch_size=4)
    paths = [plan.path(j) for j in plan.jobs][:7]
    loaded = clip_embeddings(plan, clip, paths)
    direct = clip.embed_images([Image.open(p).convert("RGB") for p in paths])
    assert torch.allclose(loaded, direct, atol=1e-6)


# --- config ---


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({"image_reward": {"weights": "/nowhere/ImageReward.pt", "tokenizer": "/nowhere"}},
         r"'metrics.image_reward.weights': file /nowhere/ImageReward.pt does not exist; .*"
         r"huggingface.co/THUDM/ImageReward"),
        ({"hps": {"weights": "w/HPS_v2.1_compressed.pt"}},
         r"'metrics.hps.weights': file w/HPS_v2.1_compressed.pt does not exist.*xswu/HPSv2"),
        ({"fid": {"extractor": "inception", "weights": "m/inception-2015-12-05.pt"}},
         r"'metrics.fid.weights': .*inception-2015-12-05.pt does not exist.*nvlabs"),
        ({"siglip": {"model": "google/not-a-cached-model"}},
         r"'metrics.siglip.model': google/not-a-cached-model is neither a folder nor a model "
         r"in the local Hugging Face cache"),
        ({"pickscore": {"processor": "./missing-processor"}},
         r"'metrics.pickscore.processor': ./missing-processor is neither a folder"),
    ],
)  # fmt: skip
def test_missing_metric_weights_are_named_before_the_run(base_config, metrics, message):
    with pytest.raises(InputError, match=message):
        validate_config(with_changes(base_config, metrics=metrics))


def test_a_folder_without_the_model_files_is_named(base_config, tmp_path):
    empty = tmp_path / "siglip"
    empty.mkdir()
    with pytest.raises(InputError, match=r"'metrics.siglip.model': folder .*siglip has no config"):
        validate_config(with_changes(base_config, metrics={"siglip": {"model": str(empty)}}))
    tokenizer = {"weights": str(tmp_path / "w.pt"), "tokenizer": str(empty)}
    (tmp_path / "w.pt").write_bytes(b"")
    with pytest.raises(InputError, match=r"has no vocab.txt or tokenizer.json; expected a BERT"):
        validate_config(with_changes(base_config, metrics={"image_reward": tokenizer}))


def test_an_error_found_in_a_job_is_also_in_its_log(base_config, tmp_path, repo):
    from t2ibench import steps

    plan = _plan(base_config, tmp_path, repo, metrics={"siglip": {"model": "builtin:tiny-x"}})
    log_path = tmp_path / "logs" / "siglip_score.log"
    output = tmp_path / "siglip_score.csv"
    image_list = tmp_path / "images.txt"
    image_list.write_text("".join(f"{plan.path(j)}\n" for j in plan.jobs))
    with pytest.raises(InputError):
        steps.metric(plan, "baseline", "siglip_score", str(image_list), str(output), str(log_path))
    text = log_path.read_text()
    assert "error: config key 'metrics.siglip.model': unknown built-in model" in text
    assert not output.exists()


@pytest.mark.parametrize(
    "section, settings, message",
    [
        ("fid", {"extractor": "inception", "weights": ""},
         "'metrics.fid.weights': empty; the inception extractor needs"),
        ("clip", {"model": "nope-model"},
         "'metrics.clip.model': unknown open_clip model 'nope-model'"),
        ("fid", {"model": "ViT-Q-99"}, "'metrics.fid.model': unknown open_clip model 'ViT-Q-99'"),
        ("image_reward", {"weights": "WEIGHTS", "tokenizer": ""},
         "'metrics.image_reward.tokenizer': empty; expected a bert-base-uncased"),
    ],
)  # fmt: skip
def test_metric_settings_a_job_would_refuse_are_refused_before_the_run(
    base_config, tmp_path, section, settings, message
):
    """Found by the config check, before any image is made, not by the metric job after
    them; an architecture open_clip knows passes."""
    weights = tmp_path / "ImageReward.pt"
    weights.write_bytes(b"\0")
    settings = {k: str(weights) if v == "WEIGHTS" else v for k, v in settings.items()}
    with pytest.raises(InputError, match=re.escape(message)):
        validate_config(with_changes(base_config, metrics={section: settings}))
    validate_config(with_changes(base_config, metrics={"clip": {"model": "ViT-L-14"}}))


def test_disabled_metric_files_are_not_checked(base_config):
    metrics = {"hps": {"enabled": False, "weights": "w/HPS_v2.1_compressed.pt"}}
    validate_config(with_changes(base_config, metrics=metrics))


def test_unknown_builtin_metric_model(base_config, tmp_path, repo):
    plan = _plan(base_config, tmp_path, repo, metrics={"siglip": {"model": "builtin:tiny-nope"}})
    with pytest.raises(InputError, match=r"'metrics.siglip.model': unknown built-in model"):
        score(plan, "baseline", "siglip_score", tmp_path / "s.sqlite")
