"""GenEval through the workflow: a GenEval .jsonl prompt source (one prompt of each task)
and a prompt without metadata, the tiny random detector and colour model: per image a
verdict and its reason, per task and overall scores, empty cells and one warning for the
prompt without metadata, and nothing to do afterwards."""

from __future__ import annotations

import csv
import json

import pytest

from t2ibench.geneval.suite import TASKS, generate_suite, metadata_lines

from workflow_helpers import (
    make_workdir,
    metrics_only,
    nothing_to_do,
    output,
    snakemake,
    write_config,
)

pytestmark = pytest.mark.slow


def test_geneval_scores_every_task_and_leaves_other_prompts_empty(tmp_path):
    work = make_workdir(tmp_path)
    suite = generate_suite()
    picks = [next(s for s in suite if s["tag"] == task) for task in TASKS]
    (work / "prompts" / "ge.jsonl").write_text(metadata_lines(picks))
    (work / "prompts" / "plain.txt").write_text("a lighthouse at night\n")
    config = {
        "models": [{"name": "tiny-sdxl", "source": "builtin:tiny-sdxl"}],
        "prompts": {"sources": ["prompts/ge.jsonl", "prompts/plain.txt"]},
        "generation": {"steps": 2, "width": 64, "height": 64, "images_per_prompt": 2},
        "metrics": {**metrics_only("geneval"), "geneval": {"enabled": True}},
        "report": {"grid_cell_size": 64, "thumb_size": 32},
        "torch_threads": 1,
    }
    write_config(work, config)
    proc = snakemake(work, "--configfile", "test-config.yaml")
    text = output(proc)
    assert text.count("1 prompt(s) have no GenEval metadata") == 1, text
    exp = work / "results" / "baseline"
    rows = list(csv.DictReader((exp / "results.csv").open()))
    assert len(rows) == 14
    scored = [r for r in rows if r["prompt_category"] != "plain"]
    assert {r["geneval"] for r in scored} <= {"0.0", "1.0"} and len(scored) == 12
    assert {r["geneval_task"] for r in scored} == set(TASKS)
    for row in scored:  # a failure says why; a pass says nothing
        assert (row["geneval"] == "0.0") == bool(row["geneval_reason"]), row
    plain = [r for r in rows if r["prompt_category"] == "plain"]
    assert [(r["geneval"], r["geneval_task"], r["geneval_reason"]) for r in plain] == [
        ("", "", "")
    ] * 2
    tasks = list(csv.DictReader((exp / "metrics" / "geneval_tasks.csv").open()))
    assert [r["task"] for r in tasks] == [*TASKS, "overall"]
    accuracy = {r["task"]: float(r["accuracy"]) for r in tasks}
    for task in TASKS:
        mine = [float(r["geneval"]) for r in scored if r["geneval_task"] == task]
        assert accuracy[task] == pytest.approx(sum(mine) / len(mine))
    assert accuracy["overall"] == pytest.approx(sum(accuracy[t] for t in TASKS) / len(TASKS))
    for row in tasks:  # one prompt per task: no interval; overall resamples within tasks
        if row["task"] == "overall":
            assert float(row["ci_low"]) <= float(row["accuracy"]) <= float(row["ci_high"])
        else:
            assert row["prompts"] == "1" and row["ci_low"] == row["ci_high"] == ""
    summary = list(csv.DictReader((exp / "summary.csv").open()))
    assert summary[0]["geneval_n"] == "12"  # the images with metadata
    meta = json.loads((exp / "metadata.json").read_text())
    assert meta["metrics"]["geneval"]["columns"]["geneval"]["verdict"] is True
    page = (exp / "index.html").read_text()
    assert "geneval_tasks" in page and "overall" in page
    assert nothing_to_do(snakemake(work, "--configfile", "test-config.yaml"))
