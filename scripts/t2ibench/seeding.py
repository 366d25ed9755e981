"""Seeded random weights that are the same in every run, also when Snakemake runs jobs as
threads of one process.

Random weights (the built-in tiny models, a metric model with `pretrained: ""`) are drawn
from torch's global generator. `seeded(seed)` seeds it for the block and restores it
after, and lets one such block run at a time in the process: two jobs building models at
once would otherwise interleave their draws and get other weights under the same name.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

_LOCK = threading.RLock()


@contextmanager
def seeded(seed: int):
    import torch

    with _LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
