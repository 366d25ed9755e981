"""A throw-away single-node SLURM cluster on this machine, for trying `profiles/slurm`.

    python tools/slurm_cluster.py start  [--install] [--state-dir DIR]
    python tools/slurm_cluster.py status [--state-dir DIR]
    python tools/slurm_cluster.py stop   [--state-dir DIR]

Runs Debian's slurm-wlm daemons as root (no systemd needed): munged, slurmctld and
slurmd, one node `localhost` with two fake GPUs (`Gres=gpu:fake:2`, backed by /dev/null
and /dev/zero), every daemon bound to 127.0.0.1. There is no accounting database:
`snakemake --profile profiles/slurm` asks `squeue` for job states
(`slurm-status-command: squeue`), which sees finished jobs for `MinJobAge` seconds.

What it writes, and nothing else:
- the state dir (default /tmp/t2ibench-slurm): munge's key and socket, the daemons'
  state, PID files and logs, and `cluster.json` (the PIDs it started and the files it
  wrote). It is created only when missing or empty.
- /etc/slurm/slurm.conf and /etc/slurm/gres.conf (srun inside a job reads the fixed
  path): written only when missing or carrying the marker line this script writes; any
  other file there makes `start` refuse, writing nothing.

`stop` cancels the cluster's jobs, ends the daemons by their recorded PIDs (never by
name), waits for them to exit and removes what `start` wrote. Both are idempotent.
Packages are installed (apt-get) only with `--install`.
Exit status: 0 ok (status: running), 1 error, 3 status: not running.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

MARKER = "# written by t2ibench tools/slurm_cluster.py"
STATE_MARKER = ".t2ibench-slurm-cluster"
DEFAULT_STATE_DIR = Path("/tmp/t2ibench-slurm")
ETC = Path("/etc/slurm")
CONF = ETC / "slurm.conf"
GRES = ETC / "gres.conf"
PORTS = (6817, 6818)  # slurmctld, slurmd
PARTITION = "main"
NODE = "localhost"
# binary -> Debian package
PACKAGES = {
    "munged": "munge",
    "slurmctld": "slurmctld",
    "slurmd": "slurmd",
    "sbatch": "slurm-client",
    "srun": "slurm-client",
    "squeue": "slurm-client",
    "scontrol": "slurm-client",
    "scancel": "slurm-client",
    "sinfo": "slurm-client",
}
DAEMONS = ("munged", "slurmctld", "slurmd")  # start order; stopped in reverse


class ClusterError(Exception):
    """One-line error for the user."""


def _which(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def _run(cmd: list[str], env: dict | None = None, timeout: float = 60) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(f"{cmd[0]} did not answer in {timeout:.0f} s") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise ClusterError(f"{' '.join(cmd)} failed: {detail[-1] if detail else proc.returncode}")
    return proc.stdout


# ---------------------------------------------------------------- processes


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited
        return None
    return fields[19]


def _alive(record: dict) -> bool:
    """The recorded process still runs (same PID and same start time: not a reused PID)."""
    return _start_time(record["pid"]) == record["start"]


def _read_pid(path: Path, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = path.read_text().strip()
            if text:
                return int(text)
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise ClusterError(f"no PID file {path} after {timeout:.0f} s (see the logs next to it)")


def _terminate(name: str, record: dict, timeout: float = 30) -> None:
    if not _alive(record):
        return
    os.kill(record["pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(record):
            return
        time.sleep(0.1)
    os.kill(record["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(record):
        if time.monotonic() > deadline:
            raise ClusterError(f"{name} (PID {record['pid']}) did not exit")
        time.sleep(0.1)


# ---------------------------------------------------------------- state


def _load_state(state_dir: Path) -> dict | None:
    try:
        return json.loads((state_dir / "cluster.json").read_text())
    except FileNotFoundError:
        return None


def _save_state(state_dir: Path, state: dict) -> None:
    tmp = state_dir / "cluster.json.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(state_dir / "cluster.json")


def _ours(path: Path) -> bool:
    try:
        return MARKER in path.read_text(errors="replace").splitlines()
    except OSError:
        return False


def _check_writable(state_dir: Path) -> None:
    """Refuse (before writing anything) to touch files this script did not write."""
    for path in (CONF, GRES):
        if path.exists() and not _ours(path):
            raise ClusterError(
                f"{path} exists and was not written by this script; refusing to replace it "
                "(move it away, or use your own cluster)"
            )
    if state_dir.exists():
        if not state_dir.is_dir():
            raise ClusterError(f"state dir {state_dir} is not a directory")
        if any(state_dir.iterdir()) and not (state_dir / STATE_MARKER).exists():
            raise ClusterError(
                f"state dir {state_dir} is not empty and was not made by this script; "
                "pass another --state-dir"
            )
    for port in PORTS:
        with socket.socket() as sock:
            # As the daemons do: a closed connection's TIME_WAIT does not block the port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as exc:
                raise ClusterError(
                    f"port {port} on 127.0.0.1 is in use (another SLURM?): {exc.strerror}"
                ) from exc


# ---------------------------------------------------------------- install


def _missing_packages() -> list[str]:
    return sorted({pkg for binary, pkg in PACKAGES.items() if not _which(binary)})


def _ensure_packages(install: bool) -> None:
    missing = _missing_packages()
    if not missing:
        return
    if not install:
        raise ClusterError(
            f"missing Debian packages: {' '.join(missing)} "
            "(install them, or run again with --install to apt-get them)"
        )
    if not _which("apt-get"):
        raise ClusterError(f"missing packages {' '.join(missing)} and no apt-get to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"installing {' '.join(missing)} with apt-get", flush=True)
    _run(["apt-get", "update", "-q"], env=env, timeout=600)
    _run(["apt-get", "install", "-y", "-q", *missing], env=env, timeout=900)
    still = _missing_packages()
    if still:
        raise ClusterError(f"apt-get ran but these are still missing: {' '.join(still)}")


# ---------------------------------------------------------------- configs


def _node_line() -> str:
    """This machine's hardware as slurmd sees it, as node `localhost` with fake GPUs."""
    out = _run([_which("slurmd") or "slurmd", "-C"])
    line = next((x for x in out.splitlines() if x.startswith("NodeName=")), None)
    if line is None:
        raise ClusterError("slurmd -C printed no NodeName line")
    fields = dict(part.split("=", 1) for part in line.split())
    fields["NodeName"] = NODE
    fields["NodeAddr"] = "127.0.0.1"
    # Leave the OS some memory, so a job's request never exceeds what really is there.
    fields["RealMemory"] = str(max(1024, int(int(fields.get("RealMemory", "2048")) * 0.9)))
    fields["Gres"] = "gpu:fake:2"
    fields["State"] = "UNKNOWN"
    return " ".join(f"{k}={v}" for k, v in fields.items())


def _slurm_conf(state_dir: Path, node_line: str) -> str:
    s = state_dir
    return f"""{MARKER}
# A single-node test cluster on 127.0.0.1; `python tools/slurm_cluster.py stop` removes it.
ClusterName=t2ibench
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={PORTS[0]}
SlurmdPort={PORTS[1]}
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={s}/munge/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation={s}/slurmctld
SlurmdSpoolDir={s}/slurmd
SlurmctldPidFile={s}/run/slurmctld.pid
SlurmdPidFile={s}/run/slurmd.pid
SlurmctldLogFile={s}/log/slurmctld.log
SlurmdLogFile={s}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# squeue reports a finished job for MinJobAge seconds: the snakemake plugin's status checks
# need that window (it falls back to sacct below 3x its first status-check delay).
MinJobAge=600
ReturnToService=2
{node_line}
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"""


def _gres_conf() -> str:
    # A GPU line needs a device file, else the GPU is dropped and the node is invalid.
    return (
        f"{MARKER}\n"
        "# Two fake GPUs for the test cluster: SLURM allocates them, nothing can use them.\n"
        "Name=gpu Type=fake File=/dev/null\n"
        "Name=gpu Type=fake File=/dev/zero\n"
    )


# ---------------------------------------------------------------- commands


def _daemon_status(state: dict | None) -> dict[str, bool]:
    pids = (state or {}).get("pids", {})
    return {name: name in pids and _alive(pids[name]) for name in DAEMONS}


def _wait_node_idle(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    state = "?"
    while time.monotonic() < deadline:
        try:
            state = _run(["sinfo", "-h", "-N", "-n", NODE, "-o", "%T"], timeout=10).strip()
        except ClusterError:
            state = "?"
        if state in ("idle", "mixed", "allocated"):
            return
        if state.startswith(("drain", "down", "inval")):
            break
        time.sleep(0.5)
    reason = ""
    try:
        out = _run(["scontrol", "show", "node", NODE], timeout=10)
        reason = next((x.strip() for x in out.splitlines() if "Reason=" in x), "")
    except ClusterError:
        pass
    raise ClusterError(f"node {NODE} is '{state}', not idle {reason}".rstrip())


def start(state_dir: Path, install: bool) -> None:
    if os.geteuid() != 0:
        raise ClusterError("run as root: the daemons run as root and /etc/slurm is written")
    state = _load_state(state_dir)
    running = _daemon_status(state)
    if state and all(running.values()):
        print(f"cluster already running (state dir {state_dir})")
        return
    if state:  # a half-dead cluster from before: clear it, then start afresh
        stop(state_dir, quiet=True)
    _ensure_packages(install)
    try:
        pwd.getpwnam("munge")
    except KeyError as exc:
        raise ClusterError("user 'munge' is missing (reinstall the munge package)") from exc
    _check_writable(state_dir)
    node_line = _node_line()

    # From here on everything written is recorded, so `stop` can undo a failed start.
    created_state_dir = not state_dir.exists()
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / STATE_MARKER).write_text(MARKER + "\n")
    state = {
        "state_dir": str(state_dir),
        "created_state_dir": created_state_dir,
        "created_etc": not ETC.exists(),
        "written": [],
        "pids": {},
    }
    _save_state(state_dir, state)
    state_dir.chmod(0o755)  # munged runs as user munge and must reach its folder
    try:
        _start_daemons(state_dir, state, node_line)
    except BaseException:
        stop(state_dir, quiet=True)
        raise
    print(f"cluster running: node {NODE} with gpu:fake:2, partition {PARTITION}")
    print(f"state dir {state_dir}; stop with: python tools/slurm_cluster.py stop")


def _start_daemons(state_dir: Path, state: dict, node_line: str) -> None:
    for sub in ("slurmctld", "slurmd", "run", "log"):
        (state_dir / sub).mkdir(mode=0o755, exist_ok=True)
    munge_dir = state_dir / "munge"
    munge_dir.mkdir(mode=0o711, exist_ok=True)  # clients reach the socket
    munge = pwd.getpwnam("munge")
    key = munge_dir / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    for path in (munge_dir, key):
        os.chown(path, munge.pw_uid, munge.pw_gid)

    ETC.mkdir(mode=0o755, exist_ok=True)
    for path, text in ((CONF, _slurm_conf(state_dir, node_line)), (GRES, _gres_conf())):
        state["written"].append(str(path))
        _save_state(state_dir, state)
        path.write_text(text)
        path.chmod(0o644)

    munged = [
        "runuser",
        "-u",
        "munge",
        "--",
        _which("munged") or "munged",
        f"--key-file={key}",
        f"--socket={munge_dir}/munge.socket",
        f"--pid-file={munge_dir}/munged.pid",
        f"--log-file={munge_dir}/munged.log",
        f"--seed-file={munge_dir}/munged.seed",
    ]
    commands = {
        "munged": (munged, munge_dir / "munged.pid"),
        "slurmctld": ([_which("slurmctld") or "slurmctld"], state_dir / "run/slurmctld.pid"),
        "slurmd": ([_which("slurmd") or "slurmd", "-N", NODE], state_dir / "run/slurmd.pid"),
    }
    for name in DAEMONS:
        cmd, pid_file = commands[name]
        _run(cmd, timeout=60)  # each daemonizes and writes its PID file
        pid = _read_pid(pid_file)
        start_time = _start_time(pid)
        if start_time is None:
            raise ClusterError(f"{name} exited at once; see {state_dir}/log or {munge_dir}")
        state["pids"][name] = {"pid": pid, "start": start_time}
        _save_state(state_dir, state)
    _wait_node_idle()


def stop(state_dir: Path, quiet: bool = False) -> None:
    state = _load_state(state_dir)
    if state is None:
        if not quiet:
            print(f"no cluster recorded in {state_dir}: nothing to stop")
        return
    running = _daemon_status(state)
    if running["slurmctld"]:
        # Cancel the cluster's jobs first, so no job step outlives slurmd.
        try:
            _run(["scancel", "--full", "--partition", PARTITION], timeout=20)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if not _run(["squeue", "-h", "-t", "RUNNING,COMPLETING", "-o", "%i"]).strip():
                    break
                time.sleep(0.5)
        except ClusterError:
            pass
    for name in reversed(DAEMONS):
        record = state["pids"].get(name)
        if record:
            _terminate(name, record)
    for path in map(Path, state.get("written", [])):
        if path.exists() and _ours(path):
            path.unlink()
    if state.get("created_etc") and ETC.is_dir() and not any(ETC.iterdir()):
        ETC.rmdir()
    if (state_dir / STATE_MARKER).exists():
        if state.get("created_state_dir", True):
            shutil.rmtree(state_dir)
        else:  # an empty folder the user gave: empty it again
            for child in state_dir.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    if not quiet:
        print("cluster stopped; its configs and state dir are removed")


def status(state_dir: Path) -> int:
    state = _load_state(state_dir)
    if state is None:
        print(f"not running (no cluster recorded in {state_dir})")
        return 3
    running = _daemon_status(state)
    for name in DAEMONS:
        record = state["pids"].get(name)
        pid = record["pid"] if record else "-"
        print(f"{name:10s} pid {pid}: {'running' if running[name] else 'NOT running'}")
    if not all(running.values()):
        return 3
    try:
        print(_run(["sinfo", "-N", "-o", "%N %P %T %c %m %G"], timeout=10).rstrip())
        print(_run(["squeue", "-o", "%i %j %T %M %b"], timeout=10).rstrip())
    except ClusterError as exc:
        print(f"(slurm does not answer: {exc})")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="slurm_cluster.py", description="A single-node SLURM cluster for profiles/slurm."
    )
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help=f"where state, logs and PIDs go (default {DEFAULT_STATE_DIR})",
    )
    parser.add_argument(
        "--install", action="store_true", help="apt-get the missing Debian packages"
    )
    args = parser.parse_args(argv)
    state_dir = args.state_dir.absolute()
    try:
        if args.command == "start":
            start(state_dir, args.install)
        elif args.command == "stop":
            stop(state_dir)
        else:
            return status(state_dir)
    except ClusterError as exc:
        print(f"slurm_cluster: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
