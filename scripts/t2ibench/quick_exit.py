"""The end of a Snakemake process, without the waits that do no work.

Two waits followed the last job of a run that loaded a model, measured with the 50-image
`make bench` run (tools/bench.py): the workflow's `Workflow Finished` came 2.9 s before the
process ended, against 1.4 s for the plain diffusers loop after its last image.

1. Snakemake's scheduler starts a `threading.Timer` on every pass (the re-evaluation of
   its job rate limiter, one second). Timers are not daemon threads, so the finished
   process waited up to a second for the last one (`stop_scheduler_timers`, called once
   the scheduler has returned: onsuccess and onerror).
2. Python's exit runs the cyclic garbage collector over every object left, and torch,
   diffusers and transformers leave millions: 1.4 s of an `import torch, diffusers,
   transformers` process's exit, 0.3 s once they are frozen first (`gc.freeze` at exit,
   `freeze_at_exit`). Objects are still released by reference counting and atexit
   handlers (logging's flush and close among them) still run; only garbage in reference
   cycles is left to the operating system, which takes the whole process's memory back.
"""

from __future__ import annotations

import atexit
import gc
import threading


def freeze_at_exit() -> None:
    """Move every object into the collector's permanent generation when the process exits
    (registered once, when the Snakefile is read)."""
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)


def stop_scheduler_timers() -> int:
    """Cancel the timers still waiting once the scheduler is done (onsuccess / onerror);
    return how many there were."""
    timers = [t for t in threading.enumerate() if isinstance(t, threading.Timer)]
    for timer in timers:
        timer.cancel()
    return len(timers)
