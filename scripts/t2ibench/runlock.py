"""One run at a time per results folder.

Snakemake locks its working folder; two working folders pointed at one `results_dir`
would still write the same files at once. A run that executes jobs takes
``<results_dir>/.t2ibench.lock`` (created exclusively, holding the host, process,
working folder and start time) before its first job, and removes it when it ends. A
second run finds it and stops with one line naming the other run; a lock whose process
is gone (a run killed with SIGKILL, a machine that went down) is named as such, with
the command that clears it: ``snakemake --unlock``, which clears Snakemake's own lock
too.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from t2ibench.errors import InputError

LOCK_NAME = ".t2ibench.lock"


@dataclass(frozen=True)
class RunLock:
    path: Path
    token: str


def lock_path(results_dir: str | Path) -> Path:
    return Path(results_dir) / LOCK_NAME


def _process_start(pid: int) -> str | None:
    """When the process started (Linux: /proc; None elsewhere): a pid reused by another
    process after the run died does not pass for the run."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[19]  # starttime, field 22 of proc(5)
    except (OSError, IndexError):
        return None


def _alive(holder: dict) -> bool:
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    started = holder.get("pid_start")
    return started is None or _process_start(pid) in (None, started)


def _read(path: Path) -> dict | None:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _describe(holder: dict) -> str:
    return (
        f"pid {holder.get('pid')} on host {holder.get('host')}, working folder "
        f"{holder.get('workdir')}, started {holder.get('started')}"
    )


def acquire(results_dir: str | Path, workdir: str | Path) -> RunLock:
    """Take the results folder's lock, or raise InputError naming the run that holds it."""
    path = lock_path(results_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    holder = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_start": _process_start(os.getpid()),
        "workdir": str(Path(workdir).resolve()),
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "token": token,
    }
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            other = _read(path)
            if other is None:  # being written this moment, or damaged: look once more
                import time

                time.sleep(0.2)
                other = _read(path)
            if other is not None and _held_by_us(other, holder):
                return RunLock(path, other["token"])
            raise InputError(_refusal(results_dir, other)) from None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(holder, handle)
        return RunLock(path, token)
    raise AssertionError("unreachable")


def _held_by_us(other: dict, holder: dict) -> bool:
    return other.get("host") == holder["host"] and other.get("pid") == holder["pid"]


def _refusal(results_dir, other: dict | None) -> str:
    folder = f"{results_dir}/"
    clear = "clear it with `snakemake --unlock`"
    if other is None:
        return f"{folder} holds a damaged run lock ({LOCK_NAME}); {clear}"
    same_host = other.get("host") == socket.gethostname()
    if same_host and not _alive(other):
        return (
            f"{folder} is locked by a run that was killed ({_describe(other)}); if nothing "
            f"else writes there, {clear}"
        )
    if same_host:
        return (
            f"another run is writing into {folder} ({_describe(other)}); wait for it to "
            "end, or give this run another results_dir"
        )
    return (
        f"{folder} is locked by a run on another machine ({_describe(other)}); if it is no "
        f"longer running, {clear}"
    )


def release(lock: RunLock | None) -> None:
    """Remove the lock if it is still ours."""
    if lock is None:
        return
    other = _read(lock.path)
    if other is not None and other.get("token") == lock.token:
        lock.path.unlink(missing_ok=True)


def holder(results_dir: str | Path) -> dict | None:
    """Who holds the results folder's lock (None: nobody)."""
    return _read(lock_path(results_dir)) if lock_path(results_dir).exists() else None


def unlock(results_dir: str | Path) -> str | None:
    """`snakemake --unlock`: remove the results folder's lock unless a live process on
    this machine holds it. Returns what was done, for the console (None: no lock)."""
    path = lock_path(results_dir)
    if not path.exists():
        return None
    other = _read(path)
    if other is not None and other.get("host") == socket.gethostname():
        if _alive(other) and other.get("pid") != os.getpid():
            return f"kept the lock of {results_dir}/: its run is still running ({_describe(other)})"
    path.unlink(missing_ok=True)
    return f"removed the run lock of {results_dir}/" + (f" ({_describe(other)})" if other else "")
