"""Run the real Snakemake workflow on a copy of the repository in a temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from t2ibench.workspace import copy_workflow


def make_workdir(tmp: Path) -> Path:
    """A copy of the workflow (not results or caches) so runs are isolated."""
    return copy_workflow(tmp / "wf")


def write_config(work: Path, config: dict) -> Path:
    path = work / "test-config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake_command(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "snakemake"), "--cores", "2", *args]


def snakemake(work: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run snakemake in `work` with the default profile's execution settings."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = snakemake_command(*args)
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc
