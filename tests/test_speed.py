"""Speed options (t2ibench.speed): in an image's settings only when set, each runs on the
CPU or is refused there in one line, and how far each moves the pixels."""

from __future__ import annotations

import numpy as np
import pytest
from test_families import build, image, settings_for

from t2ibench import speed
from t2ibench.config import validate_config
from t2ibench.errors import InputError
from t2ibench.plan import build_plan

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def resources(tmp_path_factory):
    return str(tmp_path_factory.mktemp("resources"))


def test_options_are_in_the_settings_only_when_set(base_config):
    plain = build_plan(validate_config(base_config))
    assert not set(speed.DEFAULTS) & set(plain.settings(plain.jobs[0]))
    gen = {**base_config["generation"], "fuse_qkv": True, "vae_upcast": False}
    fast = build_plan(validate_config({**base_config, "generation": gen}))
    settings = fast.settings(fast.jobs[0])
    assert settings["fuse_qkv"] is True and settings["vae_upcast"] is False
    assert "compile" not in settings


def with_models(base_config, gen=None, memory=None, **models):
    config = {**base_config, "models": [{"name": n, "source": s} for n, s in models.items()]}
    config["generation"] = {**base_config["generation"], **(gen or {})}
    if memory:
        config["memory"] = memory
    return build_plan(validate_config(config))


def test_an_attention_backend_is_a_setting_of_transformer_models_only(base_config):
    plan = with_models(
        base_config, {"attention": "_native_math"}, z="builtin:tiny-zimage", s="builtin:tiny-sdxl"
    )
    by_model = {job.model: plan.settings(job) for job in plan.jobs}
    assert by_model["z"]["attention"] == "_native_math"
    assert "attention" not in by_model["s"]  # a UNet: SDPA whatever the config says
    # null and native are diffusers' default: images made before the option stay done.
    for gen in ({"attention": "native"}, {}):
        plan = with_models(base_config, gen, z="builtin:tiny-zimage")
        assert "attention" not in plan.settings(plan.jobs[0])
    # memory.attention (hardware profiles) fills it where generation.attention is null.
    plan = with_models(base_config, memory={"attention": "flex"}, z="builtin:tiny-zimage")
    assert plan.settings(plan.jobs[0])["attention"] == "flex"
    plan = with_models(
        base_config, {"attention": "_native_math"}, {"attention": "flex"}, z="builtin:tiny-zimage"
    )
    assert plan.settings(plan.jobs[0])["attention"] == "_native_math"


def test_options_a_family_or_machine_cannot_take_are_refused_when_the_plan_is_built(
    base_config, monkeypatch
):
    with pytest.raises(InputError, match="fuse_qkv': model 'z' \\(Z-Image\\): its transformer"):
        with_models(base_config, {"fuse_qkv": True}, z="builtin:tiny-zimage")
    with_models(base_config, {"fuse_qkv": True}, s="builtin:tiny-sdxl")  # SDXL has them
    monkeypatch.setitem(speed.ATTENTION_PACKAGES, "sage", "no_such_package_here")
    with pytest.raises(InputError, match="attention': backend 'sage' needs the no_such_package"):
        with_models(base_config, {"attention": "sage"}, z="builtin:tiny-zimage")


def test_an_attention_backend_can_be_an_experiments_axis(base_config, tmp_path):
    experiment = tmp_path / "attention.yaml"
    experiment.write_text(
        "name: attention\ndescription: two backends\nfamilies: [zimage]\n"
        "variables: {attention: [native, _native_math]}\n"
    )
    config = {**base_config, "models": [{"name": "z", "source": "builtin:tiny-zimage"}]}
    config["experiments"] = [str(experiment)]
    plan = build_plan(validate_config(config))
    cells = {plan.settings(j).get("attention") for j in plan.jobs if j.experiment == "attention"}
    assert cells == {None, "_native_math"}


@pytest.mark.parametrize("builtin_id", ["tiny-sdxl", "tiny-sd15", "tiny-flux-dev"])
def test_fused_qkv_and_vae_dtype_run_on_the_cpu(builtin_id, resources):
    import torch

    family, spec = build(builtin_id, resources)
    pipe = family.load(spec, torch.float32)
    pipe.set_progress_bar_config(disable=True)
    settings = settings_for(family, spec)
    before = image(family, pipe, settings).astype(int)
    speed.apply(pipe, {"fuse_qkv": True, "vae_upcast": False}, "cpu", builtin_id)
    after = image(family, pipe, settings).astype(int)
    difference = np.abs(before - after)
    mean = difference.mean()
    print(f"{builtin_id}: fused QKV, float32 CPU: max {difference.max()}, mean {mean:.4f}")
    assert difference.max() <= 2  # a rounding apart at most, in 8-bit pixels


def test_compile_off_cuda_and_fused_qkv_without_it_are_one_line(resources):
    import torch

    family, spec = build("tiny-sdxl", resources)
    pipe = family.load(spec, torch.float32)
    with pytest.raises(
        InputError, match="model 'm': generation key 'compile': torch.compile is used on CUDA"
    ):
        speed.apply(pipe, {"compile": True}, "cpu", "m")
    zimage, zspec = build("tiny-zimage", resources)
    zpipe = zimage.load(zspec, torch.float32)
    with pytest.raises(InputError, match="'fuse_qkv': ZImageTransformer2DModel has no fused QKV"):
        speed.apply(zpipe, {"fuse_qkv": True}, "cpu", "m")


def test_compile_off_cuda_stops_the_run_before_the_first_job(base_config):
    import torch

    from t2ibench import preflight

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: compile is allowed")
    gen = {**base_config["generation"], "compile": True}
    plan = build_plan(validate_config({**base_config, "generation": gen}))
    with pytest.raises(InputError, match="generation key 'compile': torch.compile is used on CUDA"):
        preflight.check_compile(plan)


@pytest.mark.slow
def test_the_gpu_bench_runs_on_the_cpu_with_the_tiny_models(tmp_path):
    """`make gpu-bench`'s code path, on the tiny built-ins: engine and loop agree."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "gpu_bench.json"
    proc = subprocess.run(
        [sys.executable, "tools/gpu_bench.py", "--tiny", "--json", str(out)],
        cwd=repo, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(out.read_text())
    assert [m["model"] for m in found["models"]] == ["sdxl", "zimage"]
    for model in found["models"]:
        assert model["engine_vs_loop"]["images_differing"] == 0
        assert model["profile"] and model["options"]
    assert "| sdxl | engine |" in proc.stdout
    for model in found["models"]:
        assert [b["batch_size"] for b in model["batches"]] == [1, 2, 4, 8]
        assert all(b["images_per_s"] > 0 for b in model["batches"])
    assert "| sdxl | engine, batch_size 4 |" in proc.stdout
    assert "| zimage | engine, batch_size 8 |" in proc.stdout
    scoring = found["scoring"]
    assert scoring["scoring_images"] == 16 and scoring["in_memory_images_per_s"] > 0
    assert "| open_clip-tiny | CLIP score in memory, 16 images |" in proc.stdout


@pytest.mark.parametrize("tool", ["gpu_bench.py", "gpu_check.py"])
def test_the_gpu_tools_without_a_gpu_stop_in_one_line(tool, monkeypatch):
    """`make gpu-bench` and `make gpu-check` where torch sees no CUDA device: one line
    naming the tool and the device, exit 1, no traceback."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    import torch

    from t2ibench.devices import require_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    require_device("cuda:1", "t")  # there: nothing happens
    for device, message in [
        ("cuda:2", "t: --device cuda:2: torch sees 2 CUDA device(s) here; run it on a GPU machine"),
        ("cuda:one", "t: --device cuda:one: expected cpu, cuda or cuda:N"),
    ]:
        with pytest.raises(SystemExit, match="^" + re.escape(message) + "$"):
            require_device(device, "t")
    monkeypatch.undo()
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here")
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, f"tools/{tool}"], cwd=repo, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith(f"{tool}: --device cuda: torch sees 0 CUDA device(s) here")
