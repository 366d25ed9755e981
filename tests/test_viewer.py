"""The static viewer (results/report/index.html) without a browser: discovery,
thumbnails and their reuse, data.js, escaping, relative paths, the empty case.

`make_results` builds the synthetic results folder that test_viewer_browser.py uses too.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

from t2ibench.errors import InputError
from t2ibench.io import write_rows
from t2ibench.report.viewer import build_viewer

HOSTILE = "<img src=x onerror=alert(1)><script>alert(2)</script></script>\"'&amp;"
PROMPTS = ["a red cube", HOSTILE, "a blue sphere"]
SEEDS = [11, 12]
SQUARE = 12  # side of the white square that makes cell x-3 differ from x-1 and x-2
METRICS = ["clip_score", "pickscore", "lpips_diversity"]


def pixels(prompt: int, seed: int, salt: int, size: int, square: bool) -> np.ndarray:
    """A smooth RGB test image (channels below 200); optionally a white square at (8, 8)."""
    y, x = np.mgrid[0:size, 0:size]
    image = np.stack(
        [
            (20 + 30 * prompt + x) % 200,
            (40 + 50 * (seed % 3) + y) % 200,
            (60 + 40 * salt + x + y) % 200,
        ],
        axis=-1,
    ).astype(np.uint8)
    if square:
        image[8 : 8 + SQUARE, 8 : 8 + SQUARE] = 255
    return image


def metric_values(model: str, cell: str, prompt: int, seed: int) -> dict:
    """Deterministic, distinct metric values for one image."""
    base = len(model) + 10 * prompt + seed / 10 + (int(cell[-1]) if cell[-1].isdigit() else 0)
    return {
        "clip_score": 20 + base / 7,
        "pickscore": -3 + base / 13,
        "lpips_diversity": 0.1 + prompt / 50,
    }


def write_experiment(results: Path, name: str, models: dict, cells: dict, variables: dict) -> None:
    """One experiment: PNGs, results.csv, summary.csv, comparisons.csv, metadata.json.

    `models` maps a model name to its image size; `cells` maps a cell name to
    (its variable values, whether its images carry the white square)."""
    exp = results / name
    rows = []
    for m, (model, size) in enumerate(models.items()):
        for cell, (values, square) in cells.items():
            for p, text in enumerate(PROMPTS):
                for i, seed in enumerate(SEEDS):
                    path = exp / model / cell / f"p{p:03d}_i{i:02d}_s{seed}.png"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(pixels(p, seed, m, size, square)).save(path)
                    rows.append(
                        {
                            "experiment": name,
                            "model": model,
                            "cell": cell,
                            **values,
                            "prompt_id": f"p{p}",
                            "prompt_index": p,
                            "prompt_text": text,
                            "image_index": i,
                            "seed": seed,
                            "image_flag": "",
                            **metric_values(model, cell, p, seed),
                            "image_path": f"results/{name}/{model}/{cell}/{path.name}",
                        }
                    )
    write_rows(exp / "results.csv", rows)
    summary = []
    for model in models:
        for cell, (values, _) in cells.items():
            group = [r for r in rows if r["model"] == model and r["cell"] == cell]
            row = {"model": model, "cell": cell, **values, "images": len(group)}
            for metric in METRICS:
                mean = float(np.mean([r[metric] for r in group]))
                row[f"{metric}_mean"], row[f"{metric}_std"] = mean, 0.5
                row[f"{metric}_n"] = len(group)
                row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = mean - 1, mean + 1
            summary.append(row)
    write_rows(exp / "summary.csv", summary)
    method = "paired on (prompt, seed); 95% CI: percentile bootstrap over prompts (2000 resamples)"
    comparisons = [
        {"metric": metric, "comparison": "cell vs reference cell", "model": s["model"],
         "cell": s["cell"], "reference": "x", "pairs": 6, "mean": s[f"{metric}_mean"],
         "difference": s[f"{metric}_mean"] - 20 + k, "p_value": 0.01 * (k + 1), "method": method}
        for k, (metric, s) in enumerate((m, s) for m in METRICS for s in summary)
    ]  # fmt: skip
    write_rows(exp / "comparisons.csv", comparisons)
    meta = {
        "experiment": name,
        "description": f"Synthetic {name} </script><b>not bold</b>",
        "models": [{"name": model, "source": "builtin:test"} for model in models],
        "variables": variables,
        "cells": {
            c: {"values": v, "reference": i == 0} for i, (c, (v, _)) in enumerate(cells.items())
        },
        "reference_cell": next(iter(cells)),
        "prompts": [{"index": p, "id": f"p{p}", "text": t} for p, t in enumerate(PROMPTS)],
        "seeds": SEEDS,
    }
    (exp / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    found = {
        "experiment": name,
        "warning": "",
        "method": {"adjustment": "Holm", "alpha": 0.05, "comparisons": 2},
        "headline": "1 of 2 comparisons show a difference (Holm-adjusted p < 0.05)",
        "few_prompts": True,
        "note": "Fewer than 20 prompts: ...",
        "findings": [
            {"verdict": "better", "sentence": f"x-3 raises clip_score {HOSTILE}"},
            {"verdict": "no difference detected", "sentence": "No difference in hps."},
        ],
        "disagreements": [],
    }
    (exp / "findings.json").write_text(json.dumps(found), encoding="utf-8")


def make_results(root: Path) -> Path:
    """`root/results` with two experiments and a folder without metadata.json.

    base: models m1 (48 px) and m2 (64 px), one cell; sweep: model m1, cells x-1, x-2
    (identical pixels) and x-3 (a 12 x 12 white square more), an FID table and a plot.
    image_path in results.csv is relative to `root`, as the workflow writes it."""
    results = root / "results"
    write_experiment(results, "base", {"m1": 48, "m2": 64}, {"default": ({}, False)}, {})
    cells = {f"x-{v}": ({"x": str(v)}, v == 3) for v in (1, 2, 3)}
    write_experiment(results, "sweep", {"m1": 48}, cells, {"x": ["1", "2", "3"]})
    write_rows(
        results / "sweep" / "metrics" / "fid.csv",
        [
            {
                "model": "m1",
                "cell": c,
                "against": "reference",
                "fid": 10.0 + i,
                "kid": 0.1 * i,
                "warning": "small set",
            }
            for i, c in enumerate(cells)
        ],
    )
    plots = results / "base" / "plots"
    plots.mkdir(parents=True)
    (plots / "clip_score.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20">'
        '<rect width="40" height="20" fill="teal"/></svg>'
    )
    (results / "scratch").mkdir()
    (results / "scratch" / "notes.txt").write_text("not an experiment")
    return results


def load_data(out_dir: Path) -> dict:
    """data.js's JSON: the text after `window.T2I.data = ` up to the closing `;`."""
    text = (out_dir / "data.js").read_text(encoding="utf-8")
    match = re.search(r"^window\.T2I\.data = (.*);$", text, re.MULTILINE)
    assert match, "data.js does not assign window.T2I.data on one line"
    return json.loads(match.group(1))


@pytest.fixture
def built(tmp_path):
    """A synthetic results folder and its viewer: (results_dir, out_dir, data)."""
    results = make_results(tmp_path)
    out = results / "report"
    index = build_viewer(results, out, thumb_size=32)
    assert index == out / "index.html" and index.is_file()
    return results, out, load_data(out)


def test_discovers_experiments_and_ignores_folders_without_metadata(built):
    _, _, data = built
    assert [e["name"] for e in data["experiments"]] == ["base", "sweep"]
    base, sweep = data["experiments"]
    assert base["models"] == ["m1", "m2"] and sweep["cells"] == ["x-1", "x-2", "x-3"]
    assert sweep["variables"] == {"x": ["1", "2", "3"]}
    (fid,) = sweep["sets"]
    assert fid["name"] == "fid" and "FID and KID" in fid["summary"] and base["sets"] == []
    assert fid["table"]["columns"][:3] == ["model", "cell", "against"]
    # which way is better comes with the data (no metadata "metrics": the registry's)
    assert sweep["facts"]["clip_score"]["higher_is_better"] is True
    assert [p["name"] for p in base["plots"]] == ["plots/clip_score.svg"]
    assert data["warnings"] == [] and base["warnings"] == []


def test_thumbnails_have_the_right_size_and_are_reused(built):
    results, out, data = built
    for image in data["experiments"][0]["images"]:
        with Image.open(out / image["thumb"]) as thumb:
            assert max(thumb.size) == 32 and thumb.format == "WEBP"
        assert image["size"] == ([48, 48] if image["model"] == "m1" else [64, 64])
    files = sorted((out / "thumbs").iterdir()) + sorted((out / "px").iterdir())
    assert len(files) == 2 * (2 * 6 + 3 * 6)
    before = {f: f.stat().st_mtime_ns for f in files}
    build_viewer(results, out, thumb_size=32)
    assert {f: f.stat().st_mtime_ns for f in files} == before

    # A changed image gets a new thumbnail; the old one is removed.
    source = results / "sweep" / "m1" / "x-1" / "p000_i00_s11.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(source)
    os.utime(source, ns=(1, 1))
    build_viewer(results, out, thumb_size=32)
    after = sorted((out / "thumbs").iterdir()) + sorted((out / "px").iterdir())
    assert len(after) == len(files) and len(set(after) - set(files)) == 2
    assert all(f.stat().st_mtime_ns == before[f] for f in set(after) & set(files))


def test_small_images_are_not_upscaled(tmp_path):
    results = make_results(tmp_path)
    build_viewer(results, results / "report", thumb_size=256)
    data = load_data(results / "report")
    for image in data["experiments"][0]["images"]:
        with Image.open(results / "report" / image["thumb"]) as thumb:
            assert list(thumb.size) == image["size"]


def test_data_js_holds_every_image_with_its_metrics(built):
    results, _, data = built
    for experiment in data["experiments"]:
        with (results / experiment["name"] / "results.csv").open(encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        assert len(experiment["images"]) == len(rows)
        assert experiment["metrics"] == METRICS
        for row, image in zip(rows, experiment["images"], strict=True):
            assert (image["model"], image["cell"], image["prompt"], image["seed"]) == (
                row["model"],
                row["cell"],
                int(row["prompt_index"]),
                int(row["seed"]),
            )
            for metric in METRICS:
                assert image["metrics"][metric] == pytest.approx(float(row[metric]), rel=1e-12)
        assert experiment["summary"]["rows"] and experiment["comparisons"]["rows"]
        assert isinstance(experiment["summary"]["rows"][0][-1], float)


def test_hostile_text_is_escaped_in_data_js(built):
    _, out, data = built
    text = (out / "data.js").read_text(encoding="utf-8")
    assert "</script" not in text.lower() and "<" not in text and ">" not in text
    assert [p["text"] for p in data["experiments"][0]["prompts"]] == PROMPTS
    assert data["experiments"][0]["description"].endswith("</script><b>not bold</b>")


def test_paths_resolve_from_the_output_folder(built, tmp_path, monkeypatch):
    results, out, data = built
    for experiment in data["experiments"]:
        for image in experiment["images"]:
            original = out / unquote(image["path"])
            assert (
                original.resolve()
                == (
                    results / experiment["name"] / image["model"] / image["cell"] / image["file"]
                ).resolve()
            )
            assert (out / image["thumb"]).is_file() and (out / "px" / f"{image['px']}.js").is_file()
        for plot in experiment["plots"]:
            assert (out / unquote(plot["src"])).is_file()
        for link in experiment["files"].values():
            assert (out / unquote(link)).is_file()
    page = (out / "index.html").read_text(encoding="utf-8")
    for asset in ("data.js", "viewer.js", "viewer.css"):
        assert re.search(rf'"{re.escape(asset)}\?v=[0-9a-f]+"', page) and (out / asset).is_file()

    # image_path is relative to the working directory; another one changes nothing.
    monkeypatch.chdir(tmp_path / "results" / "scratch")
    build_viewer(results, out, thumb_size=32)
    assert load_data(out)["experiments"] == data["experiments"]


def test_pixel_copies_are_exact_data_urls(built):
    results, out, data = built
    image = data["experiments"][1]["images"][-1]
    script = (out / "px" / f"{image['px']}.js").read_text(encoding="ascii")
    match = re.fullmatch(
        r'window\.T2I\.pixels\["([0-9a-f]+)"\]="data:image/webp;base64,([A-Za-z0-9+/=]+)";\n',
        script,
    )
    assert match and match.group(1) == image["px"] and image["copy"] == [48, 48, True]
    copy = np.asarray(Image.open(io.BytesIO(base64.b64decode(match.group(2)))).convert("RGB"))
    original = np.asarray(Image.open(results / "sweep" / "m1" / "x-3" / image["file"]))
    assert np.array_equal(copy, original)


def test_missing_images_are_reported_not_fatal(built):
    results, out, _ = built
    (results / "base" / "m2" / "default" / "p000_i00_s11.png").unlink()
    build_viewer(results, out, thumb_size=32)
    base = load_data(out)["experiments"][0]
    missing = [i for i in base["images"] if i["thumb"] is None]
    assert len(missing) == 1 and missing[0]["path"] is None
    assert base["warnings"] == ["1 of 12 images in results.csv were not found"]


def test_no_experiments_is_a_one_line_input_error(tmp_path):
    (tmp_path / "results" / "scratch").mkdir(parents=True)
    with pytest.raises(InputError, match="no experiments to show") as err:
        build_viewer(tmp_path / "results", tmp_path / "results" / "report")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "results" / "report").exists()
    with pytest.raises(InputError, match="results folder not found"):
        build_viewer(tmp_path / "absent", tmp_path / "absent" / "report")


def test_each_plot_is_listed_once(tmp_path):
    """A plot saved as PNG and SVG is shown once (its PNG); an SVG alone is kept."""
    results = make_results(tmp_path)
    plots = results / "base" / "plots"
    Image.new("RGB", (8, 8)).save(plots / "clip_score.png")
    Image.new("RGB", (8, 8)).save(plots / "hps_bars.png")
    (plots / "hps_bars.svg").write_text((plots / "clip_score.svg").read_text())
    (plots / "clip_score.svg").rename(plots / "lpips.svg")
    build_viewer(results, results / "report", thumb_size=32)
    base = load_data(results / "report")["experiments"][0]
    assert [p["name"] for p in base["plots"]] == [
        "plots/clip_score.png",
        "plots/hps_bars.png",
        "plots/lpips.svg",
    ]


def test_the_viewer_carries_the_demo_banner(tmp_path):
    """Random weights anywhere in an experiment's run: its messages say the numbers mean
    nothing, as its own page does."""
    from t2ibench.config import validate_config

    results = make_results(tmp_path)
    meta_path = results / "sweep" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["config"] = validate_config(
        {
            "models": [{"name": "m1", "source": "builtin:tiny-sdxl"}],
            "prompts": {"sources": [str(tmp_path)]},
        }
    )
    meta_path.write_text(json.dumps(meta))
    build_viewer(results, results / "report", thumb_size=32)
    base, sweep = load_data(results / "report")["experiments"]
    assert base["warnings"] == []  # no config recorded: nothing is claimed
    [banner] = sweep["warnings"]
    assert banner.startswith("Demo numbers: images and scores here mean nothing.")
    assert "model m1 is a built-in tiny model" in banner


def test_custom_prompt_experiments_are_shown_and_quick_runs_have_their_own_viewer(
    tmp_path, monkeypatch
):
    """`prompt-<hash>/<name>` is an experiment of the results folder; `quick/<name>` is
    not: a quick run's tables are their own results folder, with its viewer in
    `quick/report/`, and its images are the full run's."""
    results = make_results(tmp_path)
    custom = "prompt-1a2b3c4d/base"
    write_experiment(results, custom, {"m1": 48}, {"default": ({}, False)}, {})
    cells = {"x-1": ({"x": "1"}, False), "x-3": ({"x": "3"}, True)}
    write_experiment(results / "quick", "sweep", {"m1": 48}, cells, {"x": ["1", "3"]})
    shutil.rmtree(results / "quick" / "sweep" / "m1")  # only the full run's copies
    monkeypatch.chdir(results / "scratch")  # image_path is not relative to here

    build_viewer(results, results / "report", thumb_size=32)
    data = load_data(results / "report")
    assert [e["name"] for e in data["experiments"]] == ["base", custom, "sweep"]
    base, shown = data["experiments"][:2]
    assert shown["warnings"] == [] and len(shown["images"]) == 6
    for image in shown["images"]:
        expected = results / custom / image["model"] / image["cell"] / image["file"]
        assert (results / "report" / unquote(image["path"])).resolve() == expected.resolve()
        assert (results / "report" / image["thumb"]).is_file()
    assert {i["px"] for i in shown["images"]}.isdisjoint({i["px"] for i in base["images"]})
    for link in shown["files"].values():
        assert (results / "report" / unquote(link)).resolve().parent == (results / custom)

    quick = results / "quick" / "report"
    build_viewer(results / "quick", quick, thumb_size=32)
    (sweep,) = load_data(quick)["experiments"]
    assert sweep["name"] == "sweep" and sweep["cells"] == ["x-1", "x-3"]
    assert sweep["warnings"] == [] and len(sweep["images"]) == 12
    for image in sweep["images"]:
        expected = results / "sweep" / image["model"] / image["cell"] / image["file"]
        assert (quick / unquote(image["path"])).resolve() == expected.resolve()
        assert (quick / image["thumb"]).is_file()
    assert (quick / unquote(sweep["files"]["results.csv"])).resolve() == (
        results / "quick" / "sweep" / "results.csv"
    ).resolve()


def test_a_viewer_missing_a_thumbnail_or_script_is_found(tmp_path):
    """Thumbnails, pixel copies and scripts are not Snakemake outputs of the viewer: one
    removed by hand is found (the run then makes the viewer again)."""
    import json

    from t2ibench.report.thumbnails import files_missing
    from t2ibench.report.viewer import ASSET_FILES

    assert not files_missing(tmp_path)  # no viewer yet: nothing is missing from it
    key = "0" * 20
    for name in ("index.html", *ASSET_FILES, f"thumbs/{key}.webp", f"px/{key}.js"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / "cache.json").write_text(json.dumps({key: {"width": 64}}))
    assert not files_missing(tmp_path)
    for name in (f"thumbs/{key}.webp", f"px/{key}.js", "viewer.js"):
        (tmp_path / name).unlink()
        assert files_missing(tmp_path), name
        (tmp_path / name).write_text("x")


def test_the_viewers_findings_keep_what_was_not_tested(tmp_path):
    """Comparisons not tested, and metrics no image has a score of, reach the viewer as
    in findings.md."""
    from t2ibench.report.viewer import findings_payload

    path = tmp_path / "findings.json"
    path.write_text(json.dumps({
        "headline": "0 of 1 comparisons show a difference",
        "findings": [{"verdict": "not tested", "sentence": "hps not tested: one prompt."}],
        "unscored": [{"metric": "lpips_diversity", "sentence": "lpips_diversity: no image."}],
    }))  # fmt: skip
    found = findings_payload(path)
    assert found["untested"] == ["hps not tested: one prompt.", "lpips_diversity: no image."]
    assert found["undetected"] == []


def test_cells_and_axes_keep_the_experiments_order():
    """metadata.json's mappings have sorted keys (steps-1, steps-10, steps-2); its
    cell_order and axes lists give the experiment's order back."""
    from t2ibench.report.viewer import in_order, ordered

    meta = {
        "cells": {"steps-1": {}, "steps-10": {}, "steps-2": {}},
        "cell_order": ["steps-1", "steps-2", "steps-10"],
        "variables": {"shift": [1], "steps": [2]},
        "axes": ["steps", "shift"],
    }
    cells = ordered(list(in_order(meta["cells"], meta["cell_order"])), [])
    assert cells == ["steps-1", "steps-2", "steps-10"]
    assert list(in_order(meta["variables"], meta["axes"])) == ["steps", "shift"]
    assert list(in_order(meta["cells"], None)) == ["steps-1", "steps-10", "steps-2"]  # older


def test_metadata_lists_the_cells_in_the_experiments_order(base_config, tmp_path):
    from t2ibench.config import validate_config
    from t2ibench.plan import build_plan
    from t2ibench.report.tables import metadata

    sweep = tmp_path / "st.yaml"
    sweep.write_text("name: st\ndescription: d\nvariables: {steps: [1, 2, 10]}\n")
    plan = build_plan(validate_config(dict(base_config, experiments=[str(sweep)])))
    meta = json.loads(json.dumps(metadata(plan, "st", tmp_path / "sha.json"), sort_keys=True))
    assert meta["cell_order"] == ["steps-1", "steps-2", "steps-10"] and meta["axes"] == ["steps"]
