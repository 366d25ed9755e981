"""Local multi-GPU: concurrent generation jobs each get a device of their own."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from t2ibench import generate
from t2ibench.generate import DevicePool, Generator, candidate_devices


@pytest.fixture
def gpus(monkeypatch):
    """Pretend torch sees `n` CUDA devices."""

    def fake(n: int):
        monkeypatch.setattr("torch.cuda.is_available", lambda: n > 0)
        monkeypatch.setattr("torch.cuda.device_count", lambda: n)

    return fake


def test_candidate_devices(gpus):
    gpus(4)
    assert candidate_devices("auto") == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert candidate_devices("cuda") == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert candidate_devices("cuda:2") == ["cuda:2"]  # an explicit index is kept
    assert candidate_devices("cpu") == ["cpu"]
    gpus(1)
    assert candidate_devices("auto") == ["cuda"]


def test_pool_never_gives_one_device_to_two_jobs():
    pool = DevicePool()
    busy: dict[str, int] = {}
    seen: list[str] = []
    peak = [0]
    lock = threading.Lock()

    def job():
        with pool.acquire(["cuda:0", "cuda:1"]) as device:
            with lock:
                busy[device] = busy.get(device, 0) + 1
                seen.append(device)
                assert busy[device] == 1, f"{device} given to two jobs"
                peak[0] = max(peak[0], sum(busy.values()))
            time.sleep(0.02)
            with lock:
                busy[device] -= 1

    threads = [threading.Thread(target=job) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8 and set(seen) == {"cuda:0", "cuda:1"}
    assert peak[0] == 2  # both devices in use at once


def test_pool_prefers_a_device_that_holds_the_model():
    pool = DevicePool()
    with pool.acquire(["cuda:0", "cuda:1", "cuda:2"], preferred={"cuda:2"}) as device:
        assert device == "cuda:2"
    with pool.acquire(["cuda:0", "cuda:1"], preferred={"cuda:9"}) as device:
        assert device == "cuda:0"


def test_generate_loads_once_per_device_and_runs_devices_in_parallel(monkeypatch, tmp_path):
    """Four concurrent jobs on two (pretend) GPUs: each device loads the model once and
    makes images while the other does."""
    monkeypatch.setattr(generate, "candidate_devices", lambda device: ["cuda:0", "cuda:1"])
    monkeypatch.setattr(generate, "DEVICES", DevicePool())
    gen = Generator()
    loads: list[str] = []
    running: list[str] = []
    overlap = threading.Event()
    lock = threading.Lock()

    def fake_load(spec, device, dtype, sha_cache, memory):
        loads.append(device)
        return generate.LoadedModel(pipe=None, scheduler_config={}, sha256="")

    def fake_run(loaded, settings, device):
        with lock:
            assert device not in running, f"{device} runs two images at once"
            running.append(device)
            if len(running) == 2:
                overlap.set()
        time.sleep(0.05)
        with lock:
            running.remove(device)
        return None, 3, 0.05

    monkeypatch.setattr(gen, "_load", fake_load)
    monkeypatch.setattr(gen, "_run", fake_run)
    monkeypatch.setattr(generate, "image_flag", lambda image: "")
    monkeypatch.setattr(generate, "token_limit", lambda pipe, settings: 77)
    monkeypatch.setattr(generate, "save_png", lambda *args: None)
    devices: list[str] = []
    spec = SimpleNamespace(name="m", checkpoint="m.safetensors", prediction_reason="")

    def job(i: int):
        record = gen.generate(
            spec, {"dtype": "fp16", "prompt": "p"}, str(tmp_path / f"{i}.png"),
            str(tmp_path / f"{i}.json"), "auto",
        )  # fmt: skip
        devices.append(record["device"])

    threads = [threading.Thread(target=job, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(loads) == ["cuda:0", "cuda:1"]  # once per device
    assert sorted(devices) == ["cuda:0", "cuda:0", "cuda:1", "cuda:1"]
    assert overlap.is_set()  # the two devices worked at the same time
