"""End to end: the real workflow on built-in tiny models (a few minutes in all)."""

from __future__ import annotations

import json
import re
import shutil

import pandas as pd
import pytest
from PIL import Image

from t2ibench.models.registry import BUILTIN_FOLDER

from workflow_helpers import make_workdir, snakemake, tiny_sdxl_models, write_config

pytestmark = pytest.mark.slow

PROMPTS = {
    "t_001": {"text": "a red cube on a table", "category": "objects"},
    "t_002": {"text": "a small dog in the snow", "category": "animals"},
    "t_003": {"text": "a lighthouse at night", "category": "places"},
    "t_004": {"text": "two green apples", "category": "objects"},
    "t_005": {"text": "a watercolour of a fox", "category": "animals"},
}
IMAGES_PER_MODEL = 5 * 4  # prompts x images_per_prompt


def demo_config(work):
    (work / "prompts" / "test.json").write_text(json.dumps(PROMPTS))
    return {
        "models": tiny_sdxl_models(),
        "prompts": {"sources": ["prompts/test.json"]},
        "generation": {
            "steps": 2,
            "width": 64,
            "height": 64,
            "images_per_prompt": 4,
            "sampler": "euler_a",
            "seed": 218,
        },
        "report": {"grid_cell_size": 64},
        "torch_threads": 1,
    }


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One full run, shared by the tests that only read its outputs. Its built-in models
    are made by the workflow's own rules (the other runs copy them in)."""
    work = make_workdir(tmp_path_factory.mktemp("run"), resources=False)
    config = write_config(work, demo_config(work))
    proc = snakemake(work, "--configfile", config.name)
    return work, config, proc


def images(work):
    return sorted((work / "results" / "baseline").glob("*/default/p*_i*_s*.png"))


def test_full_run_outputs(finished_run):
    work, _, proc = finished_run
    out = work / "results" / "baseline"
    assert len(images(work)) == 2 * IMAGES_PER_MODEL
    # Each model is loaded once for its 20 images, and the log says so.
    loads = re.findall(r"Loading model (\S+) from", proc.stderr)
    assert sorted(loads) == ["tiny-sdxl", "tiny-vpred"]

    results = pd.read_csv(out / "results.csv")
    assert len(results) == 2 * IMAGES_PER_MODEL
    for column in [
        "experiment",
        "model",
        "cell",
        "prompt_id",
        "prompt_index",
        "prompt_text",
        "image_index",
        "seed",
        "sampler",
        "steps",
        "guidance_scale",
        "width",
        "height",
        "generation_seconds",
        "prompt_tokens",
        "clip_score",
        "lpips_diversity",
        "image_path",
    ]:
        assert column in results.columns, column
    assert set(results["seed"]) == {218, 219, 220, 221}
    assert (results["steps"] == 2).all()
    assert results["clip_score"].between(0, 100).all()
    assert (results["generation_seconds"] > 0).all()
    row = results[(results.prompt_id == "t_002")].iloc[0]
    assert row["prompt_text"] == "a small dog in the snow"
    assert row["prompt_tokens"] == 6
    # LPIPS diversity is one value per model and prompt.
    per_prompt = results.groupby(["model", "prompt_index"])["lpips_diversity"].nunique()
    assert (per_prompt == 1).all()

    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary["model"]) == ["tiny-sdxl", "tiny-vpred"]
    assert (summary["clip_score_n"] == IMAGES_PER_MODEL).all()
    assert (summary["lpips_diversity_n"] == 5).all()
    first = results[results.model == "tiny-sdxl"]["clip_score"]
    got = summary.set_index("model").loc["tiny-sdxl", "clip_score_mean"]
    assert got == pytest.approx(first.mean())

    meta = json.loads((out / "metadata.json").read_text())
    assert meta["experiment"] == "baseline"
    assert {m["name"]: m["prediction_type"] for m in meta["models"]} == {
        "tiny-sdxl": "epsilon",
        "tiny-vpred": "v_prediction",
    }
    assert all(len(m["sha256"]) == 64 for m in meta["models"])
    assert meta["generation"]["steps"] == 2
    assert {"python", "torch", "diffusers", "device_name"} <= set(meta["system"])

    grid = Image.open(out / "grids" / "grid-p1.png")  # one page: prompts x models
    assert grid.width > 2 * 64 and grid.height > 5 * 64
    page = (out / "index.html").read_text()
    assert "Demo numbers: images and scores here mean nothing." in page
    assert "CLIP score uses random weights" in page
    for link in [
        "results.csv",
        "summary.csv",
        "metadata.json",
        "grids/grid-p1.png",
        "tiny-vpred/default/p001_i01_s219.png",
    ]:
        assert link in page


def test_viewer_is_built_over_every_experiment(finished_run):
    work, _, _ = finished_run
    report = work / "results" / "report"
    assert (report / "index.html").is_file()
    text = (report / "data.js").read_text()
    data = json.loads(
        text[text.index("window.T2I.data =") + len("window.T2I.data =") :].rstrip("; \n")
    )
    [experiment] = data["experiments"]
    assert experiment["name"] == "baseline" and len(experiment["images"]) == 2 * IMAGES_PER_MODEL
    assert len(list((report / "thumbs").iterdir())) == 2 * IMAGES_PER_MODEL


def test_snakemake_report_zip(finished_run):
    """`snakemake --report report.zip` holds the tables, metric tables, plots and grids,
    each under its category with its caption."""
    import zipfile

    work, config, _ = finished_run
    snakemake(work, "--configfile", config.name, "--report", "report.zip")
    with zipfile.ZipFile(work / "report.zip") as archive:
        names = archive.namelist()
        page = archive.read("report/report.html").decode()
    files = {name.rsplit("/", 1)[-1] for name in names}
    for wanted in ["results.csv", "summary.csv", "comparisons.csv", "findings.md", "grid-p1.png",
                   "clip_score.csv", "image_reward.csv", "fid.csv",
                   "clip_score_bars.png", "clip_score_vs_diversity.png"]:  # fmt: skip
        assert wanted in files, wanted
    # The experiment pages link files the archive does not hold: they are not in it.
    assert "index.html" not in files
    for category in ["Tables", "Findings", "Metric tables", "Plots", "Grids"]:
        assert category in page, category
    assert "95% CI over prompts" in page  # a caption
    # The run's description lists the metric sections that ran, and only those.
    import yaml

    from t2ibench.config import validate_config

    metrics = validate_config(yaml.safe_load(config.read_text()))["metrics"]
    sections = {k: v["enabled"] for k, v in metrics.items() if isinstance(v, dict)}
    assert "<li>image_reward</li>" in page and "<li>fid</li>" in page
    for section, enabled in sections.items():
        assert (f"<li>{section}</li>" in page) == enabled, section


def test_png_embeds_parameters(finished_run):
    work, _, _ = finished_run
    png = Image.open(work / "results/baseline/tiny-vpred/default/p001_i01_s219.png")
    params = png.text["parameters"]
    assert params.startswith("a small dog in the snow\nNegative prompt: ")
    assert "Steps: 2, Sampler: Euler a, CFG scale: 5.0, Seed: 219, Size: 64x64" in params
    meta = json.loads(png.text["t2ibench"])
    assert meta["model"] == "tiny-vpred" and meta["seed"] == 219
    assert meta["prediction_type"] == "v_prediction"
    assert meta["prediction_type_reason"] == "name contains 'vpred'"
    assert len(meta["model_sha256"]) == 64
    assert {"torch", "diffusers", "transformers"} <= set(meta["versions"])


def test_gap_handling_regenerates_exactly_the_missing(finished_run):
    work, config, _ = finished_run
    all_images = images(work)
    deleted = [all_images[1], all_images[6]]
    before = {p: p.read_bytes() for p in deleted}
    mtimes = {p: p.stat().st_mtime_ns for p in all_images if p not in deleted}
    for path in deleted:
        path.unlink()
    proc = snakemake(work, "--configfile", config.name)
    assert "generated 2/2 images" in proc.stderr
    for path in deleted:
        assert path.read_bytes() == before[path], f"{path.name} differs after regeneration"
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    # The regenerated images have the same bytes, so every score comes from the cache.
    clip_log = (work / "results" / "baseline" / "logs" / "clip_score.log").read_text()
    assert "clip_score for 40 images (40 cached, 0 to score)" in clip_log
    # Nothing left to do, and package code is not a rerun trigger.
    (work / "scripts" / "t2ibench" / "generate.py").open("a").write("\n# edited\n")
    dry = snakemake(work, "--configfile", config.name, "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_setting_and_prompt_changes_rerun_only_affected(finished_run):
    work, config_path, _ = finished_run

    def rewritten_after(change):
        before = {p: p.stat().st_mtime_ns for p in images(work)}
        change()
        snakemake(work, "--configfile", config_path.name)
        return sorted(p.name for p in images(work) if p.stat().st_mtime_ns != before[p])

    def edit_prompt():
        changed = {**PROMPTS, "t_002": {"text": "a small cat in the snow", "category": "a"}}
        (work / "prompts" / "test.json").write_text(json.dumps(changed))

    # The prompt behind index 1 changed: its images (both models) and nothing else.
    expected = [f"p001_i{i:02d}_s{218 + i}.png" for i in range(4)] * 2
    assert rewritten_after(edit_prompt) == sorted(expected)
    results = pd.read_csv(work / "results" / "baseline" / "results.csv")
    assert "a small cat in the snow" in set(results["prompt_text"])
    clip_log = (work / "results" / "baseline" / "logs" / "clip_score.log").read_text()
    assert "clip_score for 40 images (32 cached, 8 to score)" in clip_log

    def more_steps():
        config = demo_config(work)
        config["generation"]["steps"] = 3
        write_config(work, config)

    assert len(rewritten_after(more_steps)) == 2 * IMAGES_PER_MODEL


def test_interrupted_write_leaves_no_final_file(tmp_path):
    from t2ibench.io import atomic_write

    target = tmp_path / "x.png"

    def crash(tmp):
        tmp.write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, crash)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_user_single_file_and_diffusers_folder(tmp_path):
    """A user's own .safetensors (+ config folder) and a diffusers folder run end to end."""
    from t2ibench.models.checks import sha256_file
    from t2ibench.models.tiny import build_tiny_sdxl_pipeline, materialise_builtin

    models = tmp_path / "models"
    materialise_builtin("tiny-sdxl", models / "my-model.safetensors", models / "my-config")
    build_tiny_sdxl_pipeline("tiny-sdxl").save_pretrained(models / "my-diffusers")
    work = make_workdir(tmp_path)
    (work / "prompts" / "one.json").write_text(json.dumps({"x": {"text": "a red cube"}}))
    config = {
        "models": [
            {"name": "builtin", "source": "builtin:tiny-sdxl"},
            {
                "name": "user.file",
                "source": str(models / "my-model.safetensors"),
                "config": str(models / "my-config"),
            },
            {"name": "user_folder", "source": str(models / "my-diffusers")},
        ],
        "prompts": {"sources": ["prompts/one.json"]},
        "generation": {"steps": 2, "width": 64, "height": 64, "images_per_prompt": 2},
        "metrics": {"lpips": {"enabled": False}},
        "torch_threads": 1,
    }
    write_config(work, config)
    proc = snakemake(work, "--configfile", "test-config.yaml")
    assert len(re.findall(r"Loading model (\S+) from", proc.stderr)) == 3
    out = work / "results" / "baseline"
    for name in ["p000_i00_s218.png", "p000_i01_s219.png"]:
        builtin = Image.open(out / "builtin" / "default" / name)
        # Same weights through the same single-file path: identical pixels.
        assert builtin.tobytes() == Image.open(out / "user.file" / "default" / name).tobytes()
        folder = Image.open(out / "user_folder" / "default" / name).convert("RGB")
        diff = max(
            abs(a - b)
            for a, b in zip(builtin.convert("RGB").tobytes(), folder.tobytes(), strict=True)
        )
        assert diff <= 2  # save_pretrained/reload differs by ~1e-6 in float32
    results = pd.read_csv(out / "results.csv")
    assert "lpips_diversity" not in results.columns  # disabled metric, no column
    assert results["clip_score"].notna().all()
    meta = {m["name"]: m for m in json.loads((out / "metadata.json").read_text())["models"]}
    assert meta["user.file"]["sha256"] == sha256_file(models / "my-model.safetensors")
    assert meta["user.file"]["kind"] == "single_file"
    assert meta["user_folder"]["kind"] == "diffusers"


def test_ctrl_c_leaves_only_complete_images(tmp_path):
    """SIGINT mid-run: no partial file at a final name; the next run finishes the rest."""

    from workflow_helpers import interrupt_run

    work = make_workdir(tmp_path)
    config = demo_config(work)
    config["models"] = config["models"][:1]
    config["generation"]["images_per_prompt"] = 12
    write_config(work, config)
    survivors = interrupt_run(work, images)
    assert len(survivors) < 60
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in survivors}
    snakemake(work, "--configfile", "test-config.yaml")
    assert len(images(work)) == 60
    # Jobs in flight at the signal (at most --cores of them) are marked incomplete by
    # Snakemake and made again, identically; every other finished image is left alone.
    rewritten = [p for p in survivors if p.stat().st_mtime_ns != before[p][0]]
    assert len(rewritten) <= 2
    assert all(p.read_bytes() == before[p][1] for p in survivors)


def test_url_source_is_downloaded_once_then_used(tmp_path):
    """An http(s) source is fetched by rule download_model, verified, and generates."""
    import functools
    import http.server
    import threading

    from t2ibench.models.checks import sha256_file
    from t2ibench.models.tiny import materialise_builtin

    served = tmp_path / "served"
    materialise_builtin("tiny-sdxl", served / "tiny.safetensors", tmp_path / "tiny.config")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=served)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        work = make_workdir(tmp_path)
        (work / "prompts" / "one.json").write_text(json.dumps({"x": {"text": "a red cube"}}))
        url = f"http://127.0.0.1:{server.server_address[1]}/tiny.safetensors"
        config = {
            "models": [
                {"name": "builtin", "source": "builtin:tiny-sdxl"},
                {
                    "name": "fetched",
                    "source": url,
                    "config": str(tmp_path / "tiny.config"),
                    "sha256": sha256_file(served / "tiny.safetensors"),
                },
            ],
            "prompts": {"sources": ["prompts/one.json"]},
            "generation": {"steps": 2, "width": 64, "height": 64, "images_per_prompt": 1},
            "metrics": {"lpips": {"enabled": False}},
            "torch_threads": 1,
        }
        write_config(work, config)
        snakemake(work, "--configfile", "test-config.yaml")
    finally:
        server.shutdown()
    fetched = work / "resources" / "models" / "downloads" / "fetched.safetensors"
    assert fetched.read_bytes() == (served / "tiny.safetensors").read_bytes()
    sidecar = json.loads(fetched.with_name("fetched.safetensors.json").read_text())
    assert sidecar["url"] == url
    out = work / "results" / "baseline"
    name = "p000_i00_s218.png"
    assert (
        Image.open(out / "fetched" / "default" / name).tobytes()
        == Image.open(out / "builtin" / "default" / name).tobytes()
    )
    # The server is gone: a second run needs nothing from it.
    dry = snakemake(work, "--configfile", "test-config.yaml", "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_zimage_beside_sdxl_and_a_shift_change(tmp_path):
    """The Z-Image family runs in the same workflow; its settings rerun only its images."""
    work = make_workdir(tmp_path)
    (work / "prompts" / "two.json").write_text(
        json.dumps({"a": {"text": "a red cube"}, "b": {"text": "a blue sphere"}})
    )
    config = {
        "models": [
            {"name": "z", "source": "builtin:tiny-zimage"},
            {"name": "s", "source": "builtin:tiny-sdxl"},
        ],
        "prompts": {"sources": ["prompts/two.json"]},
        "generation": {"steps": 3, "width": 64, "height": 64, "images_per_prompt": 2},
        "torch_threads": 1,
    }
    write_config(work, config)
    proc = snakemake(work, "--configfile", "test-config.yaml")
    assert sorted(re.findall(r"Loading model (\S+) from", proc.stderr)) == ["s", "z"]
    out = work / "results" / "baseline"
    results = pd.read_csv(out / "results.csv")
    zrows = results[results.model == "z"]
    assert set(zrows["family"]) == {"zimage"} and set(zrows["sampler"]) == {"flow_match_euler"}
    assert set(zrows["shift"]) == {3.0} and set(zrows["hidden_layer"]) == {-2}
    assert results[results.model == "s"]["shift"].isna().all()
    z_images = sorted((out / "z" / "default").glob("*.png"))
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in z_images}
    config["models"] = config["models"][:1]
    config["generation"]["shift"] = 6.0
    write_config(work, config)
    snakemake(work, "--configfile", "test-config.yaml")
    assert all(p.stat().st_mtime_ns != before[p][0] for p in z_images)
    assert all(p.read_bytes() != before[p][1] for p in z_images)  # another shift, new image

    # resources/ cleaned: the built-in folder is made again, the same, for the one image
    # missing; the others stay done (compared by the folder's content, not its time).
    shutil.rmtree(work / "resources" / BUILTIN_FOLDER / "tiny-zimage")
    z_images[0].unlink()
    snakemake(work, "generate", "--configfile", "test-config.yaml")
    dry = snakemake(work, "generate", "-n", "--configfile", "test-config.yaml")
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout + dry.stderr


def test_findings_are_written_and_shown_first(finished_run):
    """findings.md / findings.json: one verdict per comparison, the demo warning, and the
    experiment page opens with them."""
    work, _, _ = finished_run
    out = work / "results" / "baseline"
    found = json.loads((out / "findings.json").read_text())
    comparisons = pd.read_csv(out / "comparisons.csv")
    assert len(found["findings"]) == len(comparisons) > 0
    assert found["method"]["adjustment"] == "Holm" and found["warning"].startswith("Demo")
    verdicts = {f["verdict"] for f in found["findings"]}
    assert verdicts <= {"better", "worse", "equivalent", "no difference detected"}
    text = (out / "findings.md").read_text()
    assert text.startswith("# Findings: baseline") and "> **Demo: random weights" in text
    assert all(f["sentence"] in text for f in found["findings"])
    page = (out / "index.html").read_text()
    assert page.index("<h2>Findings</h2>") < page.index("<h2>Models</h2>")
    print(text)
