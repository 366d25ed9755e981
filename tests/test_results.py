"""The one reader of results on disk (t2ibench.report.results): which folders are
experiments, the CSV and metadata readers, and how the file behind an image_path is
found."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from t2ibench.errors import InputError
from t2ibench.report import results as res
from t2ibench.report.results import find_experiments, find_image, load_results

ROW = {"model": "m1", "cell": "c1"}


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"png")
    return path


def experiment(folder: Path, rows: str = "") -> Path:
    """A folder with a metadata.json (and results.csv when `rows` is given)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metadata.json").write_text(json.dumps({"description": folder.name}))
    if rows:
        (folder / "results.csv").write_text(rows, encoding="utf-8")
    return folder


# ---------------------------------------------------------------- experiments


def test_experiments_are_names_and_custom_prompt_results_never_report_or_quick(tmp_path):
    results = tmp_path / "results"
    for name in ("sweep", "baseline", "prompt-1a2b3c4d/baseline", "quick/sweep"):
        experiment(results / name)
    experiment(results / "report")  # even with a metadata.json, the viewer's folder
    experiment(results / "quick")
    experiment(results / "prompt-1a2b3c4d" / "report")
    (results / "scratch").mkdir()
    (results / "other" / "deeper").mkdir(parents=True)
    experiment(results / "other" / "deeper" / "x")  # only prompt-*/ holds experiments
    assert find_experiments(results) == ["baseline", "prompt-1a2b3c4d/baseline", "sweep"]
    # A quick run's tables are a results folder of their own.
    assert find_experiments(results / "quick") == ["sweep"]
    assert find_experiments(tmp_path / "absent") == []


def test_an_experiment_not_found_by_that_rule_cannot_be_loaded(tmp_path):
    results = tmp_path / "results"
    experiment(results / "sweep", "a\n1\n")
    experiment(results / "prompt-1a2b3c4d" / "baseline")
    experiment(results / "quick" / "fast")
    assert load_results(results, "prompt-1a2b3c4d/baseline", False).name == (
        "prompt-1a2b3c4d/baseline"
    )
    with pytest.raises(InputError, match=r"unknown experiment 'quick/fast'.*'.*quick'") as err:
        load_results(results, "quick/fast")
    assert "known: prompt-1a2b3c4d/baseline, sweep" in str(err.value)
    with pytest.raises(InputError, match="unknown experiment '../results/sweep'"):
        load_results(results, "../results/sweep")
    assert load_results(results / "quick", "fast", require_images=False).rows == []


# ---------------------------------------------------------------- readers


def test_read_rows_drops_a_byte_order_mark_and_empty_rows(tmp_path):
    path = tmp_path / "results.csv"
    path.write_bytes(
        "model,cell,clip_score\r\nm1,c1,20.5\r\n,,\r\n\r\nm2,c2\r\n".encode("utf-8-sig")
    )
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert res.read_rows(path) == [
        {"model": "m1", "cell": "c1", "clip_score": "20.5"},
        {"model": "m2", "cell": "c2", "clip_score": ""},
    ]
    table = res.read_table(path)
    assert table["columns"] == ["model", "cell", "clip_score"]
    assert table["rows"] == [["m1", "c1", 20.5], ["m2", "c2"]]
    assert res.read_rows(tmp_path / "absent.csv") == [] and res.read_table(tmp_path / "x") is None


def test_load_results_reads_a_results_csv_with_a_byte_order_mark(tmp_path):
    results = tmp_path / "results"
    rows = "prompt_index,cell,model,seed,prompt_id,prompt_text,image_path\n0,c1,m1,7,p,a cat,x\n"
    (experiment(results / "sweep") / "results.csv").write_bytes(rows.encode("utf-8-sig"))
    loaded = load_results(results, "sweep")
    assert loaded.row(0, "c1", "m1", 7)["image_path"] == "x"
    assert loaded.prompts == {0: {"id": "p", "text": "a cat"}}


def test_read_table_keeps_text_columns_as_text(tmp_path):
    path = tmp_path / "summary.csv"
    path.write_text("model,cell,n,mean,prompt_id,x\n7,1.5,3,2.5,007,nan\n", encoding="utf-8")
    assert res.read_table(path)["rows"] == [["7", "1.5", 3, 2.5, "007", None]]


def test_bad_metadata_is_a_one_line_error_naming_the_file(tmp_path):
    path = tmp_path / "metadata.json"
    path.write_text('{"a": 1,\n\n')
    with pytest.raises(InputError, match=r"metadata.json: cannot read") as err:
        res.read_metadata(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match="not a JSON object"):
        res.read_metadata(path)


def test_metric_names_come_from_the_registry():
    from t2ibench.metrics import registry

    assert res.known_metrics() == registry.columns("image") + registry.columns("prompt")
    assert res.known_metrics()[:2] == ["clip_score", "siglip_score"]
    columns = ["model", "clip_score", "lpips_diversity", "hps"]
    assert res.metric_names(None, columns) == ["clip_score", "hps", "lpips_diversity"]
    summary = {"columns": ["model", "hps_mean", "hps_std", "mine_mean"], "rows": []}
    assert res.metric_names(summary, [*columns, "mine"]) == ["hps", "mine"]
    assert res.format_metric("clip_score", "23.414") == "clip_score 23.41"
    assert res.format_metric("lpips", 0.12345) == "lpips 0.1235"
    assert res.format_metric("hps", "") == "hps n/a"


# ---------------------------------------------------------------- find_image


@pytest.fixture
def results(tmp_path, monkeypatch) -> Path:
    """`tmp_path/work/results`, with the current directory elsewhere."""
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    return tmp_path / "work" / "results"


def test_image_path_as_given_absolute_or_from_the_current_directory(results, tmp_path):
    absolute = touch(tmp_path / "anywhere" / "a.png")
    assert find_image(str(absolute), results, "sweep", ROW) == absolute
    touch(tmp_path / "elsewhere" / "results" / "sweep" / "m1" / "c1" / "b.png")
    assert find_image("results/sweep/m1/c1/b.png", results, "sweep", ROW) == Path(
        "results/sweep/m1/c1/b.png"
    )


def test_image_path_from_the_results_folders_parent(results):
    image = touch(results / "shared" / "p.png")  # not in the experiment's folder
    assert find_image("results/shared/p.png", results, "sweep", ROW) == image


def test_image_path_after_the_experiment_folders_name(results):
    image = touch(results / "sweep" / "extra" / "p.png")  # not <model>/<cell>/
    moved = "/old/machine/runs/sweep/extra/p.png"
    assert find_image(moved, results, "sweep", ROW) == image
    # The experiment's name elsewhere in the path too: each place is tried.
    named = touch(results / "sweep" / "sweep" / "c1" / "q.png")
    assert find_image("sweep/out/sweep/sweep/c1/q.png", results, "sweep", ROW) == named
    custom = touch(results / "prompt-1a2b3c4d" / "base" / "m1" / "c1" / "p.png")
    moved = "/old/results/prompt-1a2b3c4d/base/m1/c1/p.png"
    assert find_image(moved, results, "prompt-1a2b3c4d/base", {}) == custom


def test_image_path_by_model_cell_and_file_name(results):
    image = touch(results / "sweep" / "m1" / "c1" / "p.png")
    assert find_image("somewhere/else/p.png", results, "sweep", ROW) == image
    assert find_image("somewhere/else/p.png", results, "sweep", {"model": "m2"}) is None


def test_a_quick_runs_images_are_the_full_runs(results):
    image = touch(results / "sweep" / "m1" / "c1" / "p.png")
    quick = results / "quick"
    assert find_image("/old/results/sweep/m1/c1/p.png", quick, "sweep", ROW) == image
    assert find_image("/gone/p.png", quick, "sweep", ROW) == image
    assert res.image_folders(results, "sweep") == [results / "sweep"]


def test_the_path_as_given_comes_first_and_nothing_found_is_none(results, tmp_path):
    touch(results / "sweep" / "m1" / "c1" / "p.png")
    given = touch(tmp_path / "elsewhere" / "sweep" / "m1" / "c1" / "p.png")
    assert find_image("sweep/m1/c1/p.png", results, "sweep", ROW) == Path("sweep/m1/c1/p.png")
    assert Path("sweep/m1/c1/p.png").resolve() == given.resolve()
    assert find_image("", results, "sweep", ROW) is None
    assert find_image(None, results, "sweep") is None
    assert find_image("results/sweep/m1/c1/none.png", results, "sweep", ROW) is None
    (results / "sweep" / "m1" / "c1" / "dir.png").mkdir()
    assert find_image("results/sweep/m1/c1/dir.png", results, "sweep", ROW) is None


def test_results_image_uses_the_same_rule(results):
    image = touch(results / "prompt-1a2b3c4d" / "base" / "m1" / "c1" / "p.png")
    rows = "prompt_index,cell,model,seed,prompt_id,prompt_text,image_path\n"
    rows += "0,c1,m1,7,p,a cat,/old/results/prompt-1a2b3c4d/base/m1/c1/p.png\n"
    experiment(results / "prompt-1a2b3c4d" / "base", rows)
    loaded = load_results(results, "prompt-1a2b3c4d/base")
    assert loaded.results_dir == results
    assert loaded.image(loaded.row(0, "c1", "m1", 7)) == image
    assert loaded.image(None) is None


def test_means_are_the_per_prompt_means_their_intervals_are_about():
    """With images missing on some prompts, summary.csv's mean is the mean of the prompt
    means (the one its CI is about, inside the CI), and comparisons.csv's mean minus
    reference_mean is its difference; std and n stay over the images."""
    import numpy as np
    import pandas as pd

    from t2ibench.report import tables

    rows = []
    for cell, shift in (("a", 0.0), ("b", 1.0)):
        for prompt in range(4):
            for seed in (1, 2):
                if cell == "b" and prompt == 0 and seed == 2:
                    continue  # one image gone: prompt 0 has one image in cell b
                score = 10.0 * prompt + shift + (seed - 1.5)
                rows.append({"model": "m", "cell": cell, "prompt_index": prompt,
                             "seed": seed, "image_flag": "", "clip_score": score})  # fmt: skip
    results = pd.DataFrame(rows)
    summary = tables.summary_frame(results).set_index("cell")
    b = results[results.cell == "b"]
    per_prompt = b.groupby("prompt_index").clip_score.mean()
    assert summary.loc["b", "clip_score_mean"] == pytest.approx(per_prompt.mean())
    assert summary.loc["b", "clip_score_mean"] != pytest.approx(b.clip_score.mean())
    assert summary.loc["b", "clip_score_n"] == 7
    assert summary.loc["b", "clip_score_std"] == pytest.approx(b.clip_score.std(ddof=1))
    low, high = summary.loc["b", ["clip_score_ci_low", "clip_score_ci_high"]]
    assert low < summary.loc["b", "clip_score_mean"] < high
    keys = ["prompt_index", "seed"]
    row = tables._compare("clip_score", keys, b, results[results.cell == "a"], "cell", "m", "b")
    assert row["pairs"] == 7 and row["prompts"] == 4
    assert row["mean"] - row["reference_mean"] == pytest.approx(row["difference"])
    assert row["difference"] == pytest.approx(1.0) and np.isfinite(row["ci_low"])


def test_a_prompt_longer_than_the_csv_modules_field_limit_is_read(tmp_path):
    """A 600,000-character prompt in results.csv (pandas writes it): read back whole."""
    import pandas as pd

    text = "word " * 120_000
    path = tmp_path / "results.csv"
    pd.DataFrame([{"prompt_text": text, "clip_score": 1.0}]).to_csv(path, index=False)
    [row] = res.read_rows(path)
    assert row["prompt_text"] == text
    assert res.read_table(path)["rows"][0][0] == text
