"""Per-image generation times measured on this machine, and estimates made from them.

Every generated image appends one JSON line to ``<resources_dir>/cache/timings.jsonl``
(host, model, device, dtype, size, steps, seconds). The plan preview estimates a job
from the median seconds per (step x megapixel) of the same model, device and dtype on
the same host; a model never timed here has no estimate, and the preview says so.
Model loading is not included (it is paid once per process).
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import threading
from dataclasses import dataclass
from pathlib import Path

_LOCK = threading.Lock()


def timings_path(resources_dir: str) -> Path:
    return Path(resources_dir) / "cache" / "timings.jsonl"


def record(path: Path, settings: dict, device: str, seconds: float) -> None:
    """Append one measurement (one short line, appended whole: safe across processes)."""
    entry = {
        "host": socket.gethostname(),
        "model": settings["model"],
        "device": device,
        "dtype": settings["dtype"],
        "width": settings["width"],
        "height": settings["height"],
        "steps": settings["steps"],
        "seconds": round(seconds, 4),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(entry, sort_keys=True) + "\n").encode()
    with _LOCK:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # less the umask
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def _unit(entry: dict) -> float:
    return entry["steps"] * entry["width"] * entry["height"] / 1e6


def load_rates(path: Path, host: str | None = None) -> dict[tuple[str, str, str], float]:
    """Median seconds per (step x megapixel) by (model, device, dtype), for this host."""
    host = host or socket.gethostname()
    samples: dict[tuple[str, str, str], list[float]] = {}
    if not path.exists():
        return {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
            if entry["host"] != host or _unit(entry) <= 0:
                continue
            key = (entry["model"], entry["device"], entry["dtype"])
            samples.setdefault(key, []).append(entry["seconds"] / _unit(entry))
        except (ValueError, KeyError, TypeError):
            continue  # a torn or foreign line: skip it, never fail a plan over it
    return {key: statistics.median(values) for key, values in samples.items()}


@dataclass
class Estimator:
    rates: dict[tuple[str, str, str], float]
    device: str

    def seconds(self, settings: dict) -> float | None:
        """Estimated seconds for one image. With device "auto" (resolving it would import
        torch while the Snakefile is parsed), the fastest device timed for the model."""
        model, dtype = settings["model"], settings["dtype"]
        if self.device == "auto":
            rates = [r for (m, _, d), r in self.rates.items() if (m, d) == (model, dtype)]
            rate = min(rates) if rates else None
        else:
            rate = self.rates.get((model, self.device, dtype))
        return None if rate is None else rate * _unit(settings)


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
