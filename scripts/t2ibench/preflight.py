"""What a run checks after Snakemake has built its job graph and before the first job.

The config and the plan are checked when the Snakefile is read (t2ibench.config,
t2ibench.plan), for dry runs too. Two checks wait for the start of a run that executes
jobs: the devices the jobs will use (a login node has no GPU while the cluster's nodes
do, so they are checked only for jobs that run on this machine), and whether each LoRA
fits its model (loaded onto the model's components built without weights,
t2ibench.lora_fit); then the results folder's run lock (t2ibench.runlock). A failure
stops the run before Snakemake removes or writes anything.
"""

from __future__ import annotations

import logging
import sys

from t2ibench.errors import InputError, os_error_line
from t2ibench.plan import Plan

log = logging.getLogger("t2ibench")

_PLAIN = ("", "auto", "cpu")


def device_settings(config: dict) -> list[tuple[str, str]]:
    """(config key, device) of every device the jobs use that the config names."""
    from t2ibench.metrics import registry

    settings = [("device", config["device"])]
    encoder = config["memory"].get("text_encoder_device")
    if encoder:
        settings.append(("memory.text_encoder_device", encoder))
    metrics = config["metrics"]
    sections = [s for s in registry.sections() if registry.section_in_use(metrics, s)]
    own = [s for s in sections if metrics[s].get("device")]
    if metrics["device"] and len(own) < len(sections):
        settings.append(("metrics.device", metrics["device"]))
    settings += [(f"metrics.{s}.device", metrics[s]["device"]) for s in own]
    return settings


def check_devices(config: dict) -> None:
    """Every named device exists here (imports torch only when one is not cpu/auto)."""
    wanted = [(key, device) for key, device in device_settings(config) if device not in _PLAIN]
    if not wanted:
        return
    from t2ibench.devices import resolve_device

    for key, device in wanted:
        resolve_device(device, key)


def check_compile(plan: Plan) -> None:
    """`compile: true` (t2ibench.speed) needs a CUDA device where the jobs run here."""
    cells = [
        (name, cell.name)
        for name, exp in plan.experiments.items()
        for cell in exp.cells
        if plan.cell_settings(name, cell.name).get("compile")
    ]
    if not cells:
        return
    from t2ibench.devices import resolve_device

    device = resolve_device(plan.config["device"])
    if not device.startswith("cuda"):
        name, cell = cells[0]
        raise InputError(
            f"experiment '{name}', cell '{cell}': generation key 'compile': torch.compile "
            f"is used on CUDA devices only, and the images are made on {device} here; set "
            "compile: false (or run on a GPU)"
        )


def before_first_job(
    config: dict, results_dir: str, workdir: str, local_jobs: bool, plan: Plan | None = None
):
    """The checks, then the run lock (returned; release it when the run ends)."""
    from t2ibench import runlock

    if local_jobs:
        check_devices(config)
        if plan is not None:
            check_compile(plan)
    if plan is not None:
        from t2ibench import lora_fit  # light: torch only when a LoRA is to be checked

        lora_fit.check_plan(plan)
    lock = runlock.acquire(results_dir, workdir)
    try:
        clear_stale_backups(results_dir, workdir)
    except BaseException:
        runlock.release(lock)
        raise
    return lock


def backups_of(results_dir: str, workdir: str):
    """Where Snakemake keeps its copies of the results folder's update() outputs while
    their jobs run: .snakemake/backups/<results_dir> (an absolute one without its root)."""
    from pathlib import Path

    results = Path(results_dir)
    if results.is_absolute():
        results = results.relative_to(results.anchor)
    return Path(workdir) / ".snakemake" / "backups" / results


def clear_stale_backups(results_dir: str, workdir: str) -> None:
    """Remove the copies an interrupted run left of its update() outputs (plots/, grids/,
    tables): Snakemake refuses to start those jobs again while one is there. With the
    run lock held no other run writes them; the interrupted jobs are incomplete and are
    made again. Only a folder inside .snakemake/backups is removed (a results_dir with
    `..` would otherwise point elsewhere)."""
    import shutil
    from pathlib import Path

    root = (Path(workdir) / ".snakemake" / "backups").resolve()
    stale = backups_of(results_dir, workdir).resolve()
    if stale == root or root not in stale.parents or not stale.exists():
        return
    count = sum(1 for _ in stale.rglob("*") if _.is_file())
    try:
        shutil.rmtree(stale)
    except OSError as err:
        raise InputError(os_error_line(err, str(stale))) from None
    if count:  # Snakemake leaves the empty folders of a finished run: nothing to say
        log.info("removed %d file(s) an interrupted run left in %s", count, stale)


_RUN: dict = {}


# The commands a cluster executor submits and watches jobs with.
EXECUTOR_COMMANDS = {"slurm": ("sbatch", "squeue", "sacct")}


def check_executor(executor: str) -> None:
    """A cluster executor's commands are on PATH: without them every job fails in the
    executor plugin, each with a traceback."""
    import shutil

    missing = [c for c in EXECUTOR_COMMANDS.get(executor, ()) if shutil.which(c) is None]
    if missing:
        raise InputError(
            f"the {executor} executor (--executor {executor}, as profiles/{executor} sets) "
            f"submits jobs with {', '.join(EXECUTOR_COMMANDS[executor])}, and "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not on PATH here: "
            f"run it on a {executor} login node, or leave out --profile profiles/{executor}"
        )


def start_run(plan: Plan, local_jobs: bool, executor: str = "local") -> None:
    """Before the first job of a run that executes jobs (the Snakefile's onstart): the
    executor's commands, the device checks and the results folder's run lock
    (t2ibench.runlock); a failure is one line, and the run stops before anything is
    removed or written."""
    import atexit
    import os

    from t2ibench import runlock

    try:
        check_executor(executor)
        lock = before_first_job(plan.config, plan.results_dir, os.getcwd(), local_jobs, plan)
    except InputError as err:
        sys.exit(f"t2ibench: error: {err}")
    except OSError as err:  # the lock cannot be written: a full or read-only disk
        where = str(runlock.lock_path(plan.results_dir))
        sys.exit(f"t2ibench: error: config key 'results_dir': {os_error_line(err, where)}")
    _RUN["lock"] = lock
    atexit.register(runlock.release, lock)  # also on Ctrl-C


def end_run(plan: Plan, analysis_dir: str, ok: bool) -> None:
    """After the run (onsuccess / onerror): release the lock; say what was made and
    where to look."""
    from t2ibench import runlock
    from t2ibench.console import closing_summary

    runlock.release(_RUN.pop("lock", None))
    if ok:
        closing_summary(analysis_dir, list(plan.experiments), plan.results_dir)


def unlock(plan: Plan) -> None:
    """`snakemake --unlock` also clears the results folder's run lock."""
    from t2ibench import runlock

    note = runlock.unlock(plan.results_dir)
    if note:
        log.info("%s", note)
