"""Sweeps end to end: the real workflow on built-in tiny models."""

from __future__ import annotations

import json
import re
import shutil

import pandas as pd
import pytest
import yaml

from workflow_helpers import (
    job_counts,
    made_images,
    make_workdir,
    metrics_only,
    output,
    snakemake,
    write_config,
)

pytestmark = pytest.mark.slow

PROMPTS = {
    "t_001": {"text": "a red cube on a table", "category": "objects"},
    "t_002": {"text": "a small dog in the snow", "category": "animals"},
    "t_003": {"text": "a lighthouse at night", "category": "places"},
}


# The metrics the tests of what is remade need: a per-image one (the others are tested
# with every metric on, in the quick run).
ONLY_CLIP = metrics_only("clip")


def base_config(work, models=("tiny-sdxl", "tiny-zimage"), metrics=None):
    (work / "prompts" / "test.json").write_text(json.dumps(PROMPTS))
    return {
        "models": [{"name": m, "source": f"builtin:{m}"} for m in models],
        "prompts": {"sources": ["prompts/test.json"]},
        "generation": {"steps": 2, "width": 64, "height": 64, "images_per_prompt": 2},
        "metrics": metrics or {},
        "report": {"grid_cell_size": 64},
        "torch_threads": 1,
    }


def generated(proc) -> list[str]:
    """The images the run made (the outputs of its generate_image jobs)."""
    return made_images(proc)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """A quick Z-Image sweep (shift) and two quick SDXL sweeps (sampler, CLIP skip), one
    run."""
    work = make_workdir(tmp_path_factory.mktemp("sweeps"))
    config = base_config(work)
    config.update(experiments=["shift_sweep", "sdxl_sampler", "sdxl_clip_skip"], quick=True)
    write_config(work, config)
    proc = snakemake(work, "--configfile", "test-config.yaml")
    return work, proc


def test_quick_sweeps_load_each_model_once(quick_run):
    work, proc = quick_run
    # 6 shift cells + 4 sampler cells + 4 CLIP skip cells, 2 prompts x 1 seed each: two
    # model loads in all.
    assert len(generated(proc)) == 6 * 2 + 4 * 2 + 4 * 2
    assert sorted(re.findall(r"Loading model (\S+) from", proc.stderr)) == [
        "tiny-sdxl",
        "tiny-zimage",
    ]


def test_per_cell_results_metadata_and_cell_records(quick_run):
    work, _ = quick_run
    out = work / "results" / "shift_sweep"  # images and cell records
    tables = work / "results" / "quick" / "shift_sweep"  # a quick run's own tables
    results = pd.read_csv(tables / "results.csv")
    assert len(results) == 12 and set(results["model"]) == {"tiny-zimage"}
    assert sorted(results["shift"].unique()) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert set(results["variable_name"]) == {"shift"}
    assert (results["variable_value"] == results["shift"]).all()
    assert results["clip_score"].notna().all()
    summary = pd.read_csv(tables / "summary.csv")
    assert list(summary["cell"]) == [f"shift-{v}.0" for v in range(1, 7)]
    assert (summary["images"] == 2).all() and summary["clip_score_mean"].notna().all()
    assert (summary["clip_score_ci_low"] <= summary["clip_score_mean"]).all()
    assert (summary["clip_score_mean"] <= summary["clip_score_ci_high"]).all()
    comparisons = pd.read_csv(tables / "comparisons.csv")
    assert set(comparisons["metric"]) >= {"clip_score", "image_reward", "siglip_score"}
    comparisons = comparisons[comparisons["metric"] == "clip_score"]
    assert list(comparisons["cell"]) == [
        "shift-1.0",
        "shift-2.0",
        "shift-4.0",
        "shift-5.0",
        "shift-6.0",
    ]
    assert set(comparisons["reference"]) == {"shift-3.0"} and set(comparisons["pairs"]) == {2}
    ref_mean = summary.set_index("cell").loc["shift-3.0", "clip_score_mean"]
    assert comparisons["reference_mean"].round(6).eq(round(ref_mean, 6)).all()
    assert (comparisons["difference"] == comparisons["mean"] - comparisons["reference_mean"]).all()
    assert comparisons["method"].str.contains("skewness-corrected t").all()
    meta = json.loads((tables / "metadata.json").read_text())
    assert meta["variables"] == {"shift": ["1.0", "2.0", "3.0", "4.0", "5.0", "6.0"]}
    assert meta["reference_cell"] == "shift-3.0" and meta["quick"] is True
    assert [m["name"] for m in meta["models"]] == ["tiny-zimage"]
    assert meta["description"].startswith("FlowMatch shift")
    for value in range(1, 7):
        cell = json.loads((out / "tiny-zimage" / f"shift-{value}.0" / "cell.json").read_text())
        assert cell["settings"]["shift"] == float(value)
        assert cell["values"] == {"shift": f"{value}.0"}
    # The shift really reaches the pipeline: the same seed and prompt give other pixels.
    first = (out / "tiny-zimage" / "shift-1.0" / "p000_i00_s218.png").read_bytes()
    last = (out / "tiny-zimage" / "shift-6.0" / "p000_i00_s218.png").read_bytes()
    assert first != last
    # Every CLIP skip of the catalogue runs on the shipped tiny SDXL (4-layer encoders),
    # and each reaches the pipeline.
    skips = work / "results" / "sdxl_clip_skip" / "tiny-sdxl"
    pixels = {c: (skips / c / "p000_i00_s218.png").read_bytes() for c in ["clip_skip-none",
              "clip_skip-1", "clip_skip-2", "clip_skip-3"]}  # fmt: skip
    assert len(set(pixels.values())) == 4
    sampler = pd.read_csv(work / "results" / "quick" / "sdxl_sampler" / "results.csv")
    assert set(sampler["sampler"]) == {"euler", "euler_a", "dpmpp_2m_karras", "unipc"}
    assert set(sampler["model"]) == {"tiny-sdxl"}


def test_adding_a_value_or_changing_a_cell_touches_only_that_cell(tmp_path):
    work = make_workdir(tmp_path)
    experiment = {
        "name": "my_sweep",
        "description": "shift, then one hand-made cell",
        "families": ["zimage"],
        "variables": {"shift": [2.0, 3.0]},
    }
    exp_path = work / "my_sweep.yaml"
    exp_path.write_text(yaml.safe_dump(experiment))
    config = base_config(work, models=("tiny-zimage",), metrics=ONLY_CLIP)
    config["experiments"] = ["my_sweep.yaml"]
    write_config(work, config)
    snakemake(work, "--configfile", "test-config.yaml")
    out = work / "results" / "my_sweep" / "tiny-zimage"
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/*.png")}
    assert len(before) == 2 * 3 * 2
    experiment["variables"]["shift"].append(4.0)
    exp_path.write_text(yaml.safe_dump(experiment))
    proc = snakemake(work, "--configfile", "test-config.yaml")
    made = generated(proc)
    assert len(made) == 6 and all("/shift-4.0/" in path for path in made)
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert len(pd.read_csv(work / "results" / "my_sweep" / "results.csv")) == 18
    # Explicit cells: changing one cell's setting remakes that cell only.
    del experiment["variables"]
    experiment["cells"] = [{"shift": 2.0}, {"name": "strong", "shift": 3.0, "steps": 3}]
    exp_path.write_text(yaml.safe_dump(experiment))
    snakemake(work, "--configfile", "test-config.yaml")
    strong = {p: p.stat().st_mtime_ns for p in (out / "strong").glob("*.png")}
    kept = {p: p.stat().st_mtime_ns for p in (out / "shift-2.0").glob("*.png")}
    experiment["cells"][1]["steps"] = 4
    exp_path.write_text(yaml.safe_dump(experiment))
    proc = snakemake(work, "--configfile", "test-config.yaml")
    assert sorted(generated(proc)) == sorted(str(p.relative_to(work)) for p in strong)
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    cell = json.loads((out / "strong" / "cell.json").read_text())
    assert cell["settings"]["steps"] == 4


def test_experiment_target_and_analyze_of_images_made_elsewhere(tmp_path):
    first = make_workdir(tmp_path / "a")
    config = base_config(first, models=("tiny-sdxl",), metrics=ONLY_CLIP)
    config["experiments"] = ["baseline", "sdxl_guidance"]
    config["quick"] = True
    write_config(first, config)
    # The experiment's own target rule runs that experiment and nothing else.
    proc = snakemake(first, "baseline", "--configfile", "test-config.yaml")
    assert len(generated(proc)) == 2 and all("/baseline/" in p for p in generated(proc))
    assert not (first / "results" / "sdxl_guidance").exists()
    # Images made elsewhere, copied in with the same names, are scored by `analyze`,
    # which generates nothing (no model is even materialised).
    second = make_workdir(tmp_path / "b", resources=False)
    write_config(second, config)
    (second / "prompts" / "test.json").write_text(json.dumps(PROMPTS))
    src = first / "results" / "baseline" / "tiny-sdxl" / "default"
    dest = second / "results" / "baseline" / "tiny-sdxl" / "default"
    dest.mkdir(parents=True)
    for png in sorted(src.glob("*.png")):
        shutil.copy(png, dest / png.name)
    proc = snakemake(second, "analyze", "--configfile", "test-config.yaml")
    assert generated(proc) == [] and "rule generate_image" not in proc.log
    assert not (second / "resources" / "models").exists()  # no generator made
    results = pd.read_csv(second / "results" / "quick" / "baseline" / "results.csv")
    assert sorted(results["prompt_id"]) == ["t_001", "t_002"]
    assert results["clip_score"].notna().all()
    # No image of the other experiment exists: its table has a header at most.
    none = (second / "results" / "quick" / "sdxl_guidance" / "results.csv").read_text()
    assert len(none.splitlines()) <= 1
    # Which images exist is re-read by every `analyze`.
    (dest / "p000_i00_s218.png").unlink()
    snakemake(second, "analyze", "--configfile", "test-config.yaml")
    results = pd.read_csv(second / "results" / "quick" / "baseline" / "results.csv")
    assert list(results["prompt_id"]) == ["t_002"]


def test_unknown_experiment_through_snakemake(tmp_path):
    work = make_workdir(tmp_path, resources=False)
    config = base_config(work)
    config["experiments"] = ["baseline", "shfit_sweep"]
    write_config(work, config)
    proc = snakemake(work, "-n", "--configfile", "test-config.yaml", check=False)
    assert proc.returncode != 0
    errors = [line for line in output(proc).splitlines() if "error" in line]
    assert errors == [
        "t2ibench: error: config key 'experiments': unknown experiment 'shfit_sweep'; "
        "expected one of: baseline, diffusers_steps, flux_guidance, hidden_layer, "
        "hidden_layer_blend, "
        "long_prompt_mode, "
        "sd15_clip_skip, sd3_t5, sdxl_clip_skip, sdxl_guidance, sdxl_prompt_sr, "
        "sdxl_sampler, sdxl_steps, "
        "shift_steps_grid, shift_sweep, steps_only, system_prompt, think_block "
        "(or a path to an experiment .yaml file)"
    ]
    assert not (work / "results").exists() and not (work / "resources").exists()


def test_every_catalogue_experiment_dry_runs(tmp_path):
    """`snakemake -n` over the whole catalogue at full size on the demo's tiny models:
    one cell.json job per (model, cell) and one image job per planned image."""
    from t2ibench.config import load_config, validate_config
    from t2ibench.plan import build_plan

    names = sorted(p.stem for p in (make_workdir(tmp_path) / "config/experiments").glob("*"))
    work = tmp_path / "wf"
    proc = snakemake(work, "-n", "--config", f"experiments=[{','.join(names)}]")
    counts = job_counts(output(proc))
    plan = build_plan(validate_config(load_config(None, {"experiments": names})))
    cells = {name: len(e.cells) * len(e.models) for name, e in plan.experiments.items()}
    assert cells["shift_steps_grid"] == 30 and cells["sdxl_sampler"] == 2 * 13
    assert int(counts["cell_record"]) == sum(cells.values())
    assert int(counts["generate_image"]) == len(plan.jobs)
    listed = snakemake(work, "--list-target-rules", "--config", f"experiments=[{','.join(names)}]")
    assert set(names) <= set(listed.stdout.split())  # each experiment has its target rule
