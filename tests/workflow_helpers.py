"""Run the real Snakemake workflow on a copy of the repository in a temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from t2ibench.workspace import copy_workflow

_BUILT: list[Path] = []


def built_resources() -> Path:
    """A resources folder holding every built-in tiny model (generators and metrics),
    built once per test process by the workflow's own code and copied into each work
    folder: each run would otherwise build them again (seconds each)."""
    if _BUILT:
        return _BUILT[0]
    import shutil
    import tempfile

    from t2ibench.metrics.registry import builtin_folder, builtin_ids
    from t2ibench.models import families
    from t2ibench.models.registry import builtin_dir, builtin_paths

    root = Path(tempfile.mkdtemp(prefix="t2ibench-test-resources-"))
    resources = root / "resources"
    for builtin in families.builtins().values():
        family = families.get(builtin.family)
        if builtin.layout == "file":
            checkpoint, config_dir = builtin_paths(str(resources), builtin.id)
            family.build_builtin(builtin, Path(checkpoint), Path(config_dir))
        else:
            family.build_builtin(builtin, builtin_dir(str(resources)) / builtin.id, None)
    for model_id in builtin_ids():
        builtin_folder(f"builtin:{model_id}", resources, "tests")
    import atexit

    atexit.register(shutil.rmtree, root, ignore_errors=True)
    _BUILT.append(resources)
    return resources


def make_workdir(tmp: Path, resources: bool = True) -> Path:
    """A copy of the workflow (not results or caches) so runs are isolated; with
    `resources`, the built-in models already built (see built_resources)."""
    import shutil

    work = copy_workflow(tmp / "wf")
    if resources:
        # Hard links, not copies (the built-ins are 130 MB): the workflow replaces a file
        # it writes (a new inode), so a run never changes another test's files.
        shutil.copytree(
            built_resources(), work / "resources", symlinks=True, copy_function=_link_or_copy
        )
    return work


def _link_or_copy(source: str, target: str) -> None:
    import os
    import shutil

    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copy2(source, target)


def write_config(work: Path, config: dict) -> Path:
    path = work / "test-config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake_command(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "snakemake"), "--cores", "2", *args]


def _logs(work: Path) -> set[Path]:
    return set((work / ".snakemake" / "log").glob("*.snakemake.log"))


def snakemake(work: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run snakemake in `work` with the default profile's execution settings. The
    result's `log` is Snakemake's full log of this run (every job, its reason and its
    files; empty for a dry run): the console shows a summary only (profiles/default)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = snakemake_command(*args)
    before = _logs(work)
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env)
    new = sorted(_logs(work) - before)
    proc.log = new[-1].read_text() if new else ""
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def output(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


def nothing_to_do(proc: subprocess.CompletedProcess) -> bool:
    return "Nothing to be done" in output(proc)


def made_images(proc: subprocess.CompletedProcess) -> list[str]:
    """The images a run made (the outputs of its generate_image jobs, from its log)."""
    import re

    return re.findall(r"output: (\S+/p\d+_i\d+_s\d+\.png)", proc.log)


def job_counts(text: str) -> dict[str, int]:
    """Snakemake's job stats table ("generate_image 270" in the log, "generate image 270"
    on the console) as {rule: count}."""
    import re

    counts = {}
    for match in re.finditer(r"^\s*([a-z][a-z0-9_ ]*?)\s+(\d+)\s*$", text, re.MULTILINE):
        counts[match[1].replace(" ", "_")] = int(match[2])
    return counts


def interrupt_run(work: Path, images, at_least: int = 5, again: float | None = None) -> list[Path]:
    """Start `snakemake --configfile test-config.yaml`, send SIGINT once `images(work)`
    lists `at_least` images (and again `again` seconds later: an impatient user), and
    check that it failed and left only complete images, no partial file; return the
    images that survived. Its console is left in work/interrupted.log."""
    import signal
    import time

    from PIL import Image

    with open(work / "interrupted.log", "w") as console:
        proc = subprocess.Popen(
            snakemake_command("--configfile", "test-config.yaml"),
            cwd=work,
            stdout=console,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 120
        while len(images(work)) < at_least and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        if again is not None:
            time.sleep(again)
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) != 0
    survivors = images(work)
    assert len(survivors) >= at_least
    assert not list((work / "results").rglob(".*.part"))
    for path in survivors:
        with Image.open(path) as image:
            image.load()  # a truncated PNG raises here
    return survivors


def metrics_only(*kept: str) -> dict:
    """A `metrics:` config with every registered metric's section off but `kept`."""
    from t2ibench.metrics import registry

    return {s: {"enabled": False} for s in registry.sections() if s not in kept}


def tiny_sdxl_models() -> list[dict]:
    """The two built-in tiny SDXL models, epsilon and v-prediction."""
    return [
        {"name": "tiny-sdxl", "source": "builtin:tiny-sdxl"},
        {"name": "tiny-vpred", "source": "builtin:tiny-sdxl-vpred"},
    ]


def profile_images_per_job(work: Path) -> int:
    """The images_per_job that profiles/slurm sets."""
    profile = yaml.safe_load((work / "profiles" / "slurm" / "config.yaml").read_text())
    settings = dict(item.split("=", 1) for item in profile["config"])
    return int(settings["default_images_per_job"])
