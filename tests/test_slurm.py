"""The workflow on a real single-node SLURM cluster (profiles/slurm), against a local run.

Opt-in, because it starts system daemons as root: `T2IBENCH_SLURM=1 pytest -s
tests/test_slurm.py` (a few minutes). It starts a cluster with
`scripts/slurm_cluster.py` in a private state dir (add `T2IBENCH_SLURM_INSTALL=1` to let
it apt-get the Debian packages), runs a small config through
`snakemake --profile profiles/slurm` in one scratch copy of the workflow and locally in
another, compares, prints the figures, and always stops the cluster.
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

import pytest
import yaml

from workflow_helpers import make_workdir, snakemake, write_config

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "scripts" / "slurm_cluster.py"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("T2IBENCH_SLURM") != "1",
        reason="starts SLURM daemons as root: set T2IBENCH_SLURM=1 to run "
        "(and T2IBENCH_SLURM_INSTALL=1 to apt-get slurm-wlm and munge)",
    ),
]

PROMPTS = {
    "t_001": {"text": "a red cube on a table", "category": "objects"},
    "t_002": {"text": "a small dog in the snow", "category": "animals"},
    "t_003": {"text": "a lighthouse at night", "category": "places"},
}
# Only the CLIP score among the metrics: one GPU-tagged `metric` job, a shorter test.
OFF = ["lpips", "siglip", "image_reward", "pickscore", "hps", "reference", "clip_diversity", "fid"]


def small_config(work: Path) -> dict:
    (work / "prompts" / "test.json").write_text(json.dumps(PROMPTS))
    return {
        "models": [
            {"name": "tiny-sdxl", "source": "builtin:tiny-sdxl"},
            {"name": "tiny-vpred", "source": "builtin:tiny-sdxl-vpred"},
        ],
        "prompts": {"sources": ["prompts/test.json"]},
        "generation": {
            "steps": 2,
            "width": 64,
            "height": 64,
            "images_per_prompt": 2,
            "sampler": "euler_a",
            "seed": 218,
        },
        "metrics": {name: {"enabled": False} for name in OFF},
        "report": {"grid_cell_size": 64},
        "torch_threads": 1,
    }


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


def expected_submissions(work: Path, config: Path) -> tuple[int, int]:
    """SLURM jobs the profile implies: every non-local job, image jobs bundled by
    `group-components`. Returns (submissions, images)."""
    proc = snakemake(work, "-n", "--configfile", config.name)
    counts = {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^(\w+)\s+(\d+)$", proc.stdout, re.MULTILINE)
        if m.group(1) != "total"
    }
    block = re.search(r"^localrules:\n((?:\s+\w+,?\n)+)", (work / "Snakefile").read_text(), re.M)
    local = set(re.findall(r"\w+", block.group(1)))
    profile = yaml.safe_load((work / "profiles" / "slurm" / "config.yaml").read_text())
    group = profile["groups"]["generate_image"]
    per_job = profile["group-components"][group]
    images = counts["generate_image"]
    others = sum(n for rule, n in counts.items() if rule not in local | {"generate_image"})
    return others + math.ceil(images / per_job), images


def test_slurm_run_matches_local_run(slurm, tmp_path):
    slurm_work = make_workdir(tmp_path / "slurm")
    slurm_config = write_config(slurm_work, small_config(slurm_work))
    local_work = make_workdir(tmp_path / "local")
    local_config = write_config(local_work, small_config(local_work))
    expected, n_images = expected_submissions(slurm_work, slurm_config)

    snakemake_bin = str(Path(sys.executable).parent / "snakemake")
    # --cores 1: on a cluster, the main process's cores also bound how many members of a
    # group job may run side by side, so a group asks for 1 CPU and 1 GPU, not N of each.
    slurm_proc, slurm_s = run_timed(
        [snakemake_bin, "--profile", "profiles/slurm", "--cores", "1"]
        + ["--configfile", slurm_config.name],
        slurm_work,
    )
    assert slurm_proc.returncode == 0, slurm_proc.stderr[-4000:]
    local_proc, local_s = run_timed(
        [snakemake_bin, "--cores", "2", "--configfile", local_config.name], local_work
    )
    assert local_proc.returncode == 0, local_proc.stderr[-4000:]

    # The same images, bit for bit.
    slurm_images = sorted(slurm_work.glob("results/baseline/*/default/*.png"))
    assert len(slurm_images) == n_images == 12
    for image in slurm_images:
        twin = local_work / image.relative_to(slurm_work)
        assert image.read_bytes() == twin.read_bytes(), image.name
    assert (slurm_work / "results" / "baseline" / "index.html").exists()

    # One sbatch per non-local job, image jobs bundled as the profile says; slurmctld saw
    # exactly those submissions.
    job_ids = re.findall(r"has been submitted with SLURM jobid (\d+)", slurm_proc.stderr)
    assert len(job_ids) == expected, (len(job_ids), expected)
    ctld_log = (slurm["state_dir"] / "log" / "slurmctld.log").read_text()
    assert len(re.findall(r"_slurm_rpc_submit_batch_job: JobId=\d+", ctld_log)) == expected

    # Every job ran on the fake-GPU node; the GPU-tagged ones had a GPU allocated.
    gpu_jobs = 0
    for job_id in job_ids:
        info = subprocess.run(
            ["scontrol", "-d", "show", "job", job_id], capture_output=True, text=True
        ).stdout
        assert "NodeList=localhost" in info and "JobState=COMPLETED" in info, info
        comment = re.search(r"Comment=(\S+)", info).group(1)
        if comment == "rule_images_generate_image" or comment.startswith("rule_metric_"):
            assert "JOB_GRES=gpu:fake:1" in info, info
            gpu_jobs += 1
    assert gpu_jobs == math.ceil(n_images / 6) + 1  # image groups + the CLIP score

    # Model loads: the local run loads each model once; in a group job each member runs
    # in its own `srun snakemake` process, so the cluster loads a model per image.
    logs = slurm_work / ".snakemake" / "slurm_logs"
    slurm_loads = sum(
        len(re.findall(r"Loading model \S+ from", p.read_text())) for p in logs.rglob("*.log")
    )
    local_loads = len(re.findall(r"Loading model \S+ from", local_proc.stderr))
    assert local_loads == 2
    assert 2 <= slurm_loads <= n_images
    print(
        f"\nslurm: {slurm_s:.1f} s, {len(job_ids)} sbatch jobs, {slurm_loads} model loads; "
        f"local: {local_s:.1f} s, {local_loads} model loads; {n_images} images identical"
    )
