"""Local multi-GPU: concurrent generation jobs each get a device of their own."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from t2ibench import devices, generate
from t2ibench.devices import DevicePool, candidate_devices
from t2ibench.generate import Generator
from t2ibench.models import families


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


class FakeGPUs:
    """A Generator on two pretend GPUs that records loads and checks that no device
    makes two images at once."""

    def __init__(self, monkeypatch):
        monkeypatch.setattr(generate, "candidate_devices", lambda device: ["cuda:0", "cuda:1"])
        monkeypatch.setattr(generate, "DEVICES", DevicePool())
        monkeypatch.setattr(generate, "image_flag", lambda image: "")
        monkeypatch.setattr(generate, "encode_png", lambda *args: b"png")
        monkeypatch.setattr(families.get("sdxl"), "token_limit", lambda pipe, settings: 77)
        monkeypatch.setattr(families.get("sdxl"), "count_tokens", lambda pipe, prompt: 3)
        self.gen = Generator()
        monkeypatch.setattr(self.gen, "_load", self.load)
        monkeypatch.setattr(self.gen, "_run", self.run)
        self.loads: list[str] = []
        self.running: list[str] = []
        self.overlap = threading.Event()
        self.lock = threading.Lock()
        self.clashes: list[str] = []

    def load(self, spec, device, dtype, sha_cache, memory):
        self.loads.append(device)
        return generate.LoadedModel(pipe=None, scheduler_config={}, sha256="")

    def run(self, loaded, rows, device):
        with self.lock:
            if device in self.running:
                self.clashes.append(device)  # a device making two images at once
            self.running.append(device)
            if len(self.running) == 2:
                self.overlap.set()
        time.sleep(0.05)
        with self.lock:
            self.running.remove(device)
        return [None] * len(rows), 0.05


SPEC = SimpleNamespace(name="m", checkpoint="m.safetensors", prediction_reason="", family="sdxl")


def test_generate_loads_once_per_device_and_runs_devices_in_parallel(monkeypatch, tmp_path):
    """Four concurrent jobs on two (pretend) GPUs: each device loads the model once and
    makes images while the other does."""
    fake = FakeGPUs(monkeypatch)
    gen, loads, overlap, spec = fake.gen, fake.loads, fake.overlap, SPEC
    devices: list[str] = []

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
    assert fake.clashes == []


def test_a_batch_keeps_one_device_for_all_its_images(monkeypatch, tmp_path):
    """Three concurrent batch jobs of five images on two (pretend) GPUs: each batch runs
    every image on the one device it holds, two batches run at once, the third waits."""
    fake = FakeGPUs(monkeypatch)
    used: dict[int, set[str]] = {}

    def batch(b: int):
        with fake.gen.hold_device(SPEC, "auto") as held:
            for i in range(5):
                record = fake.gen.generate(
                    SPEC, {"dtype": "fp16", "prompt": "p"}, str(tmp_path / f"{b}_{i}.png"),
                    str(tmp_path / f"{b}_{i}.json"), "auto",
                )  # fmt: skip
                used.setdefault(b, set()).update({record["device"], held})

    threads = [threading.Thread(target=batch, args=(b,), daemon=True) for b in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a batch waits for a device it holds"
    assert all(len(devices) == 1 for devices in used.values()), used
    assert {d for devices in used.values() for d in devices} == {"cuda:0", "cuda:1"}
    assert sorted(fake.loads) == ["cuda:0", "cuda:1"]
    assert fake.overlap.is_set() and fake.clashes == []
    # Outside a batch, a job takes a device per image again.
    assert getattr(devices.HELD, "device", None) is None
