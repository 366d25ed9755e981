"""Where generation runs: the torch device a config names, the devices a job may use,
one device per concurrent job (DevicePool), and a pipeline placed on its device with the
config's memory options."""

from __future__ import annotations

import contextlib
import logging
import threading

from t2ibench.errors import InputError

log = logging.getLogger("t2ibench")


def cuda_index(device: str) -> int | None:
    """The index of a CUDA device name: 0 for `cuda`, N for `cuda:N`; None otherwise."""
    if device == "cuda":
        return 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return int(device[5:])
    return None


def resolve_device(device: str, key: str = "device") -> str:
    """The torch device for a config device value (`key` names it in errors).

    Checked when a job runs, and before the first job of a local run (t2ibench.preflight),
    not when the workflow is parsed: a cluster's login node often has no GPU while its
    compute nodes do.
    """
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    index = cuda_index(device)
    if index is not None:
        if index >= torch.cuda.device_count():
            raise InputError(
                f"config key '{key}': {device} requested, but torch sees "
                f"{torch.cuda.device_count()} CUDA device(s) here; use 'auto' or 'cpu'"
            )
    if device == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"config key '{key}': mps requested, but it is not available here")
    return device


def configure_torch(threads: int) -> None:
    """Apply the config's `torch_threads` (0 keeps torch's default). Process-wide."""
    import torch

    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def candidate_devices(device: str) -> list[str]:
    """The devices a generation job may run on: every CUDA device when the config says
    `auto` or `cuda` (no index) and torch sees several, else the one resolved device."""
    import torch

    resolved = resolve_device(device)
    if device in ("auto", "cuda") and resolved == "cuda" and torch.cuda.device_count() > 1:
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return [resolved]


class DevicePool:
    """Gives each concurrent job a device of its own.

    Snakemake counts GPUs (`--resources gpu=N`) but does not say which one a job gets.
    Jobs that run as threads of one process (the default profile) take a free device
    here for the length of the job, and wait while every candidate is busy; a device
    that already holds the job's model is preferred, so each model is loaded once per
    device.
    """

    def __init__(self):
        self._free = threading.Condition()
        self._busy: set[str] = set()

    @contextlib.contextmanager
    def acquire(self, candidates: list[str], preferred: set[str] = frozenset()):
        with self._free:
            while all(d in self._busy for d in candidates):
                self._free.wait()
            free = [d for d in candidates if d not in self._busy]
            device = next((d for d in free if d in preferred), free[0])
            self._busy.add(device)
        try:
            yield device
        finally:
            with self._free:
                self._busy.discard(device)
                self._free.notify_all()


DEVICES = DevicePool()
HELD = threading.local()  # the device a chunk job holds (Generator.hold_device)


def place_pipeline(pipe, device: str, memory: dict, family) -> None:
    """Put the pipeline on `device` with the config's memory options.

    CPU offload keeps weights in CPU memory and moves each component (model) or layer
    (sequential) to the GPU when it runs: slower, but fits big models on small GPUs.
    VAE tiling and slicing decode large images and batches in pieces.
    """
    offload = memory.get("cpu_offload", "none")
    if offload != "none":
        if not device.startswith("cuda"):
            raise InputError(
                f"config key 'memory.cpu_offload': '{offload}' needs a CUDA device, got {device}"
            )
        gpu_id = cuda_index(device) or 0
        if offload == "model":
            pipe.enable_model_cpu_offload(gpu_id=gpu_id)
        else:
            pipe.enable_sequential_cpu_offload(gpu_id=gpu_id)
    else:
        pipe.to(device)
    encoder_device = memory.get("text_encoder_device")
    if encoder_device and family.text_encoder_device:  # encoding moves between devices
        pipe.text_encoder.to(resolve_device(encoder_device))
    if memory.get("vae_tiling"):
        pipe.vae.enable_tiling()
    if memory.get("vae_slicing"):
        pipe.vae.enable_slicing()


def require_device(device: str, program: str, hint: str = "run it on a GPU machine") -> None:
    """Exit with one line when a tool's `--device` is not usable here (a CUDA device that
    torch does not see: no GPU, no driver, or an index past the last)."""
    import sys

    import torch

    if not device.startswith("cuda"):
        return
    index = cuda_index(device)
    if index is None:
        sys.exit(f"{program}: --device {device}: expected cpu, cuda or cuda:N")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if index >= count:
        sys.exit(f"{program}: --device {device}: torch sees {count} CUDA device(s) here; {hint}")
