"""The end of a process (t2ibench.quick_exit): Snakemake's waiting timers are cancelled
once the scheduler is done, and objects are frozen out of the collector at exit."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from t2ibench import quick_exit

SCRIPTS = str(Path(__file__).resolve().parents[1] / "scripts")


def test_a_waiting_timer_is_cancelled_without_running():
    ran = []
    timer = threading.Timer(600, lambda: ran.append(True))
    timer.start()
    assert quick_exit.stop_scheduler_timers() >= 1
    timer.join(timeout=10)
    assert not timer.is_alive() and not ran


def test_other_threads_are_left_running():
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait, daemon=True)
    worker.start()
    try:
        quick_exit.stop_scheduler_timers()
        assert worker.is_alive()
    finally:
        stop.set()


def test_objects_are_frozen_once_at_exit_before_earlier_handlers_run():
    # atexit runs handlers last-registered first: one registered before freeze_at_exit
    # (as logging's shutdown is) runs after the freeze and still runs.
    program = f"""
import atexit, gc, sys
sys.path.insert(0, {SCRIPTS!r})
atexit.register(lambda: print("frozen", gc.get_freeze_count() > 0, flush=True))
from t2ibench import quick_exit
quick_exit.freeze_at_exit()
quick_exit.freeze_at_exit()  # the Snakefile is read again in a job's subprocess
cycle = []
cycle.append(cycle)
print("frozen before exit", gc.get_freeze_count() > 0, flush=True)
"""
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["frozen before exit False", "frozen True"]
