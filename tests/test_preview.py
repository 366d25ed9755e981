"""Plan preview (done / to make / estimate), per-image timings, and the CLI listings."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from t2ibench.config import validate_config
from t2ibench.freshness import Freshness
from t2ibench.plan import build_plan
from t2ibench.preview import format_table, make_estimator, plan_status, total_estimate
from t2ibench.timings import load_rates, record, timings_path

from conftest import REPO, with_changes
from freshness_helpers import write_image

CLI = [sys.executable, str(REPO / "scripts" / "cli.py")]


def settings(model="tiny", steps=2, width=64, height=64, dtype="fp32"):
    return {"model": model, "steps": steps, "width": width, "height": height, "dtype": dtype}


def test_timings_rates_are_per_model_device_and_host(tmp_path):
    path = tmp_path / "timings.jsonl"
    for seconds in (1.0, 2.0, 9.0):  # median, not mean: one slow outlier does not count
        record(path, settings(steps=10, width=1000, height=1000), "cuda", seconds)
    record(path, settings(model="other"), "cpu", 5.0)
    with path.open("a") as f:
        f.write('{"torn line\n')
        f.write(json.dumps({**settings(), "host": "elsewhere", "device": "cpu", "seconds": 1}))
        f.write("\n")
    rates = load_rates(path)
    assert rates[("tiny", "cuda", "fp32")] == 2.0 / 10  # seconds per step-megapixel
    assert set(rates) == {("tiny", "cuda", "fp32"), ("other", "cpu", "fp32")}
    assert load_rates(path, host="elsewhere") == {("tiny", "cpu", "fp32"): 1 / (2 * 64 * 64 / 1e6)}
    assert socket.gethostname() in path.read_text()


def test_preview_counts_done_and_estimates_from_timings(base_config, tmp_path):
    config = validate_config(with_changes(base_config, device="cpu"))
    plan = build_plan(config)
    for job in plan.jobs[:4]:
        write_image(plan, job)
    # A PNG that is not the one its record describes is to make again, not done.
    Path(plan.path(plan.jobs[3])).write_bytes(b"png")
    estimator = make_estimator(plan)
    rows = plan_status(plan, Freshness(plan), estimator)
    assert [(r.cell, r.planned, r.done, r.todo) for r in rows] == [("default", 6, 3, 3)]
    assert rows[0].seconds is None
    assert "no image of tiny has been timed on this machine yet" in total_estimate(rows, estimator)
    # 0.5 s per image at 2 steps, 64x64: the 3 images to make take 1.5 s.
    path = timings_path(config["resources_dir"])
    record(path, settings(), "cpu", 0.5)
    estimator = make_estimator(plan)
    rows = plan_status(plan, Freshness(plan), estimator)
    assert rows[0].seconds == 1.5
    table = format_table(rows, estimator)
    row = next(line for line in table.splitlines() if line.startswith("baseline"))
    assert row.split() == ["baseline", "tiny", "default", "6", "3", "3", "2", "s"]
    assert "estimated generation time 2 s for 3 images" in table


def run_cli(*args, cwd=REPO):
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True)


def test_cli_lists_the_catalogue():
    proc = run_cli("experiments")
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines() if line and line[0] != " "]
    expected = ["baseline"] + sorted(p.stem for p in (REPO / "config/experiments").glob("*.yaml"))
    assert names == expected
    assert "    shift: 1.0, 2.0, 3.0, 4.0, 5.0, 6.0" in proc.stdout
    assert "cells: 30 (quick: 9); reference: shift-3.0__steps-9" in proc.stdout


def test_cli_models_and_plan(base_config, tmp_path):
    base_config["models"].append({"name": "z-vpred", "source": "builtin:tiny-zimage"})
    base_config["experiments"] = ["baseline", "shift_sweep"]
    config_file = tmp_path / "c.yaml"
    config_file.write_text(yaml.safe_dump(base_config))
    proc = run_cli("models", "--configfile", str(config_file), "--config", "quick=true")
    assert proc.returncode == 0, proc.stderr
    assert "tiny\n    source: builtin:tiny-sdxl\n    family: sdxl\n" in proc.stdout
    assert "prediction type: epsilon (default)" in proc.stdout
    assert "prediction type: flow_matching (Z-Image is a flow-matching model)" in proc.stdout
    assert "    baseline: 0/2 images done\n    shift_sweep: 0/12 images done" in proc.stdout
    proc = run_cli("plan", "--configfile", str(config_file), "--config", "quick=true")
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("shift_sweep")]
    assert rows[-1] == ["shift_sweep", "z-vpred", "shift-6.0", "2", "0", "2", "?"]
    assert len(rows) == 6
    assert "total" in proc.stdout and "no estimate" in proc.stdout
    assert "in chunks" not in proc.stdout
    # In chunks: the quick shift_sweep has 6 cells x 2 images of z-vpred (3 chunks of 5),
    # the baseline 2 images of each model (one chunk each).
    proc = run_cli(
        "plan", "--configfile", str(config_file), "--config", "quick=true", "images_per_job=5"
    )
    assert proc.returncode == 0, proc.stderr
    assert "in chunks (images_per_job = 5): 5 generation job(s) for 16 image(s)" in proc.stdout


def test_cli_bad_input_is_one_line(tmp_path):
    proc = run_cli("plan", "--config", "experiments=[baseline,nope]")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("t2ibench: error: config key 'experiments': unknown experiment")
