"""The workflow on a real single-node SLURM cluster (profiles/slurm), against a local run.

Opt-in, because it starts system daemons as root: `T2IBENCH_SLURM=1 pytest -s
tests/test_slurm.py` (a few minutes). It starts a cluster with
`tools/slurm_cluster.py` in a private state dir (add `T2IBENCH_SLURM_INSTALL=1` to let
it apt-get the Debian packages), runs the demo config through
`snakemake --profile profiles/slurm` in one scratch copy of the workflow and locally in
another, compares, prints the figures; makes a generation job fail once and checks its
resubmission; and always stops the cluster.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from workflow_helpers import job_counts, make_workdir, output, profile_images_per_job, snakemake

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "tools" / "slurm_cluster.py"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("T2IBENCH_SLURM") != "1",
        reason="starts SLURM daemons as root: set T2IBENCH_SLURM=1 to run "
        "(and T2IBENCH_SLURM_INSTALL=1 to apt-get slurm-wlm and munge)",
    ),
]


def cluster(*args: str, state_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CLUSTER), *args, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
    )


def alive(record: dict) -> bool:
    """The recorded daemon still runs (same PID, same start time, not a zombie)."""
    try:
        stat = Path(f"/proc/{record['pid']}/stat").read_text()
    except OSError:
        return False
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0] != "Z" and fields[19] == record["start"]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running cluster for the module; stopped (and checked gone) whatever happens."""
    state_dir = Path(tempfile.mkdtemp(prefix="t2ibench-slurm-", dir="/tmp"))
    args = ["start"] + (["--install"] if os.environ.get("T2IBENCH_SLURM_INSTALL") == "1" else [])
    try:
        proc = cluster(*args, state_dir=state_dir)
        assert proc.returncode == 0, f"cluster start failed: {proc.stderr.strip()}"
        pids = json.loads((state_dir / "cluster.json").read_text())["pids"]
        assert set(pids) == {"munged", "slurmctld", "slurmd"}
        # Starting twice gives the same cluster.
        again = cluster(*args, state_dir=state_dir)
        assert again.returncode == 0 and "already running" in again.stdout
        yield {"state_dir": state_dir, "pids": pids}
    finally:
        stopped = cluster("stop", state_dir=state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)
    assert stopped.returncode == 0, stopped.stderr
    left = [name for name, record in pids.items() if alive(record)]
    assert not left, f"still running after stop: {left}"
    assert not Path("/etc/slurm/slurm.conf").exists()
    # Stopping a stopped cluster is a no-op.
    assert cluster("stop", state_dir=state_dir).returncode == 0


def run_timed(cmd: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    return proc, time.monotonic() - start


def local_rules(work: Path) -> set[str]:
    """The rules marked `localrule: True` (they run in the main process, not on SLURM)."""
    text = "\n".join(p.read_text() for p in [work / "Snakefile", *(work / "rules").glob("*.smk")])
    blocks = re.split(r"^rule ", text, flags=re.M)[1:]
    return {b.split(":", 1)[0] for b in blocks if "\n    localrule: True" in b.split("\nrule ")[0]}


# The demo config, smaller (4 prompts; a per-image, a per-prompt and a per-set metric):
# every kind of job, in a fraction of the time.
SMALL_DEMO = "slurm-demo.yaml"
KEPT_METRICS = ("clip", "lpips", "fid")
SMALL_DEMO_MODELS = ("tiny-sdxl", "tiny-sdxl-vpred", "tiny-zimage")


def small_demo(work: Path) -> list[str]:
    """Write the small demo config into `work`; the arguments that select it."""
    config = yaml.safe_load((work / "config" / "config.yaml").read_text())
    config["prompts"]["num_prompts"] = 4
    # Two families are enough for every kind of job (the others run locally in tests).
    config["models"] = [m for m in config["models"] if m["name"] in SMALL_DEMO_MODELS]
    from t2ibench.metrics import registry

    for name in registry.sections():
        if name not in KEPT_METRICS:
            config["metrics"].setdefault(name, {})["enabled"] = False
    (work / SMALL_DEMO).write_text(yaml.safe_dump(config))
    return ["--configfile", SMALL_DEMO]


def expected_jobs(work: Path, config: list[str]) -> dict[str, int]:
    """SLURM jobs a config implies, by rule: one generation job per chunk of
    images_per_job images of an (experiment, model), counted from the plan preview; and
    one job per other rule that is not a local rule, counted from a dry run."""
    size = profile_images_per_job(work)
    plan = subprocess.run(
        [sys.executable, "scripts/cli.py", "plan", *config],
        cwd=work,
        capture_output=True,
        text=True,
    ).stdout
    per_model: dict[tuple[str, str], int] = {}
    for experiment, model, _cell, planned in re.findall(
        r"^(\S+)\s+(\S+)\s+(\S+)\s+(\d+)\s+\d+\s+\d+", plan, re.M
    ):
        if experiment != "total":
            per_model[(experiment, model)] = per_model.get((experiment, model), 0) + int(planned)
    jobs = {"generate_chunk": sum(math.ceil(n / size) for n in per_model.values())}
    jobs["images"] = sum(per_model.values())
    dry = snakemake(work, "-n", *config)
    counts = {rule: n for rule, n in job_counts(output(dry)).items() if rule != "total"}
    local = local_rules(work)
    for rule, count in counts.items():
        if rule not in local and not rule.startswith("generate_"):
            jobs[rule] = count
    return jobs


# The plugin's first status check 2 s after a submission instead of the profile's 10 s:
# the test's jobs take seconds, a real cluster's minutes.
FAST_POLL = ["--slurm-init-seconds-before-status-checks", "2"]


def test_slurm_run_matches_local_run(slurm, tmp_path):
    """The demo config (smaller), in chunks on SLURM, against the default local run (one
    job per image, one process)."""
    slurm_work = make_workdir(tmp_path / "slurm")
    local_work = make_workdir(tmp_path / "local")
    config = small_demo(slurm_work)
    small_demo(local_work)
    expected = expected_jobs(slurm_work, config)
    n_images = expected.pop("images")
    chunked = [f"images_per_job={profile_images_per_job(slurm_work)}"]

    snakemake_bin = str(Path(sys.executable).parent / "snakemake")
    slurm_cmd = [snakemake_bin, "--profile", "profiles/slurm", *FAST_POLL, *config]
    slurm_proc, slurm_s = run_timed([*slurm_cmd, "--config", *chunked], slurm_work)
    assert slurm_proc.returncode == 0, slurm_proc.stderr[-4000:]
    slurm_log = latest_log(slurm_work)
    local_proc, local_s = run_timed([snakemake_bin, "--cores", "2", *config], local_work)
    assert local_proc.returncode == 0, local_proc.stderr[-4000:]
    assert expected["metric"] == 2 * len(KEPT_METRICS)  # every kind of metric job is there

    # The same images, bit for bit, and the same scores.
    slurm_images = sorted((slurm_work / "results").glob("*/*/*/p*_i*_s*.png"))
    assert len(slurm_images) == n_images
    for image in slurm_images:
        twin = local_work / image.relative_to(slurm_work)
        assert image.read_bytes() == twin.read_bytes(), image
    tables = sorted((slurm_work / "results").glob("*/metrics/*.csv"))
    assert len(tables) == expected["metric"]
    for table in tables:
        ours = pd.read_csv(table)
        theirs = pd.read_csv(local_work / table.relative_to(slurm_work))
        pd.testing.assert_frame_equal(ours, theirs, rtol=1e-6)
    assert (slurm_work / "results" / "report" / "index.html").exists()

    # One sbatch per chunk of images and per metric table; slurmctld saw exactly those.
    job_ids = re.findall(r"has been submitted with SLURM jobid (\d+)", slurm_log)
    assert len(job_ids) == sum(expected.values()), (len(job_ids), expected)
    ctld_log = (slurm["state_dir"] / "log" / "slurmctld.log").read_text()
    submitted = re.findall(r"_slurm_rpc_submit_batch_job: JobId=\d+", ctld_log)
    assert len(submitted) == len(job_ids)

    # Every job ran on the fake-GPU node with a GPU allocated (all are GPU-tagged).
    rules = {}
    for job_id in job_ids:
        info = subprocess.run(
            ["scontrol", "-d", "show", "job", job_id], capture_output=True, text=True
        ).stdout
        assert "NodeList=localhost" in info and "JobState=COMPLETED" in info, info
        assert "JOB_GRES=gpu:fake:1" in info, info
        rule = re.search(r"Comment=rule_(\w+?)_wildcards", info).group(1)
        rules[rule] = rules.get(rule, 0) + 1
    assert rules == expected

    # Model loads: one per generation job (each job is its own process on the node),
    # and each job made its whole chunk; locally one process loads each model once.
    records = [
        json.loads(p.read_text()) for p in (slurm_work / "results").glob("*/logs/chunks/*/*.json")
    ]
    assert len(records) == expected["generate_chunk"]
    assert all(r["model_loads"] == 1 and r["made"] == r["images"] for r in records)
    assert sum(len(r["made"]) for r in records) == n_images
    logs = slurm_work / ".snakemake" / "slurm_logs"
    slurm_loads = sum(
        len(re.findall(r"Loading model \S+ from", p.read_text())) for p in logs.rglob("*.log")
    )
    assert slurm_loads == expected["generate_chunk"]
    local_loads = len(re.findall(r"Loading model \S+ from", local_proc.stderr))
    assert local_loads == len(SMALL_DEMO_MODELS)
    print(
        f"\nslurm: {slurm_s:.1f} s, {len(job_ids)} sbatch jobs ({rules}), "
        f"{slurm_loads} model loads for {n_images} images; local: {local_s:.1f} s, "
        f"{local_loads} model loads; images identical, metric tables equal"
    )


def latest_log(work: Path) -> str:
    """Snakemake's full log of the latest run (the console shows a summary only)."""
    return sorted((work / ".snakemake" / "log").glob("*.snakemake.log"))[-1].read_text()


def job_info(job_id: str) -> dict[str, str]:
    """`scontrol show job`'s fields (those without spaces in their values)."""
    info = subprocess.run(
        ["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True
    ).stdout
    return dict(re.findall(r"(\w+)=(\S*)", info))


def test_failed_job_is_resubmitted_with_more_time_and_memory(slurm, tmp_path):
    """A generation job that fails is submitted again, asking for the profile's runtime
    and mem_mb at attempt 2; the retry makes the images the first attempt did not."""
    work = make_workdir(tmp_path)
    (work / "prompts" / "retry.json").write_text(
        json.dumps({"r_001": {"text": "a red cube"}, "r_002": {"text": "a blue sphere"}})
    )
    from t2ibench.metrics import registry

    metrics = registry.sections()
    config = {
        "models": [{"name": "tiny-sdxl", "source": "builtin:tiny-sdxl"}],
        "prompts": {"sources": ["prompts/retry.json"]},
        "generation": {"steps": 2, "width": 64, "height": 64, "images_per_prompt": 2, "seed": 100},
        "metrics": {
            name: {"enabled": False} for name in metrics if name not in ("device", "workers")
        },
        "torch_threads": 1,
    }
    (work / "retry.yaml").write_text(yaml.safe_dump(config))
    # The first image's record path is a directory: the job fails writing it (as a job
    # fails on a full or broken disk), after loading the model.
    cell = work / "results" / "baseline" / "tiny-sdxl" / "default"
    blocker = cell / "p000_i00_s100.json"
    blocker.mkdir(parents=True)

    snakemake_bin = str(Path(sys.executable).parent / "snakemake")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    proc = subprocess.Popen(
        [snakemake_bin, "--profile", "profiles/slurm", *FAST_POLL, "--configfile", "retry.yaml"],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    # Clear the fault once the first attempt has failed on it (seen in its SLURM log,
    # before Snakemake's next squeue check notices the failure and resubmits).
    logs = work / ".snakemake" / "slurm_logs" / "rule_generate_chunk"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if any("is a directory (EISDIR)" in p.read_text() for p in logs.rglob("*.log")):
            break
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(f"the first attempt did not fail as arranged:\n{proc.communicate()[0][-4000:]}")
    blocker.rmdir()
    console = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, console[-4000:]

    job_ids = re.findall(r"has been submitted with SLURM jobid (\d+)", latest_log(work))
    jobs = [job_info(j) for j in job_ids]
    chunk_jobs = [j for j in jobs if j["Comment"].startswith("rule_generate_chunk_")]
    assert [j["JobState"] for j in chunk_jobs] == ["FAILED", "COMPLETED"], chunk_jobs
    profile = yaml.safe_load((work / "profiles" / "slurm" / "config.yaml").read_text())
    runtime = profile["set-resources"]["generate_chunk"]["runtime"]
    mem_mb = profile["default-resources"]["mem_mb"]
    for attempt, job in enumerate(chunk_jobs, start=1):
        minutes = eval(runtime, {"attempt": attempt})  # noqa: S307 (the profile's own expression)
        assert job["TimeLimit"] == f"{minutes // 60:02d}:{minutes % 60:02d}:00", job
        assert job["MinMemoryNode"] == f"{eval(mem_mb, {'attempt': attempt})}M", job  # noqa: S307
    assert chunk_jobs[1]["TimeLimit"] != chunk_jobs[0]["TimeLimit"]

    images = sorted(cell.glob("p*_i*_s*.png"))
    assert [p.name for p in images] == [
        "p000_i00_s100.png",
        "p000_i01_s101.png",
        "p001_i00_s100.png",
        "p001_i01_s101.png",
    ]
    assert (cell / "p000_i00_s100.json").is_file()
    (chunk,) = (work / "results" / "baseline" / "logs" / "chunks" / "tiny-sdxl").glob("*.json")
    record = json.loads(chunk.read_text())
    assert record["model_loads"] == 1 and len(record["made"]) == 4
    attempts = [(j["TimeLimit"], j["MinMemoryNode"]) for j in chunk_jobs]
    print(f"\nretry: generate_chunk attempts {attempts}")
