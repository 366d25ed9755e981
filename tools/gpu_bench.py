"""`make gpu-bench`: the generation engine against a plain diffusers loop, on a GPU.

Full-size SDXL (the shipped config/sdxl-base architecture, seeded random weights,
nothing downloaded) at 1024x1024, 28 steps, bf16, over the same images (4 prompts x 4
seeds): a plain diffusers loop (the pipeline called per image, the scheduler set once)
and the workflow's engine (t2ibench.generate.Generator: settings as the plan makes them,
the prompt cache, PNGs and records written on the writer thread, as a chunk job does).
Per case: seconds per image in steady state (the first image is a warm-up), wall time
from process start, peak GPU memory, the images' pixel differences against the loop's;
then a profiler table of one engine image (where its time goes), and each speed option
(t2ibench.speed, the attention backend among them) on a pipeline of its own: seconds per
image and its pixel difference from the default. With `--zimage-config DIR` (a
Z-Image-Turbo diffusers folder: its configs and tokenizer, no weights needed), the same for
Z-Image at 9 steps.

Prints a table and writes JSON (`--json`, default bench/out/gpu_bench.json). Meant to
fit in 8 minutes on an H200; `--quick` times fewer images and options.

A CPU run of the same code on the tiny built-in models (what the tests run):
`python tools/gpu_bench.py --tiny`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

START = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
REPO = Path(__file__).resolve().parents[1]
PROMPTS = [
    "a lighthouse on a rocky coast at dusk, oil painting",
    "a red fox in fresh snow, telephoto photograph",
    "an isometric illustration of a tiny city on a floating island",
    "a bowl of ramen on a wooden table, studio lighting",
]
OPTIONS = [
    ("fuse_qkv", {"fuse_qkv": True}),
    ("vae_upcast false", {"vae_upcast": False}),
    ("attention native math", {"attention": "_native_math"}),
    ("compile", {"compile": True}),
]


def plan_for(root: Path, args, builtin: str, family_name: str):
    """A plan of 4 prompts x 4 seeds on one model (the builtin names the family), in the
    shape a real run makes, and the model's spec."""
    from t2ibench.config import validate_config
    from t2ibench.plan import build_plan

    root.mkdir(parents=True, exist_ok=True)
    prompts = root / "prompts.json"
    prompts.write_text(json.dumps({f"p{i}": {"text": t} for i, t in enumerate(PROMPTS)}))
    gen = {"steps": args.steps if family_name == "sdxl" else args.zsteps}
    gen.update({"width": args.size, "height": args.size, "images_per_prompt": args.seeds})
    config = {
        "models": [{"name": "bench", "source": f"builtin:{builtin}"}],
        "prompts": {"sources": [str(prompts)], "num_prompts": args.prompts},
        "generation": gen,
        "dtype": args.dtype,
        "device": args.device,
        "results_dir": str(root / "results"),
        "resources_dir": str(root / "resources"),
        "max_pixels": args.size * args.size,
    }
    plan = build_plan(validate_config(config))
    return plan, plan.models["bench"]


def build_pipe(args, family_name: str, spec, seed: int = 0):
    """The pipeline: full size with random weights, or the tiny built-in from disk."""
    import torch

    from t2ibench.generate import DTYPES
    from t2ibench.models import families

    dtype = getattr(torch, DTYPES[args.dtype])
    family = families.get(family_name)
    if args.tiny:
        builtin = families.builtins()[Path(spec.source).name.split(":")[-1]]
        if builtin.layout == "file":
            family.build_builtin(builtin, Path(spec.checkpoint), Path(spec.config_dir))
        else:
            family.build_builtin(builtin, Path(spec.checkpoint), None)
        pipe = family.load(spec, dtype)
    elif family_name == "sdxl":
        from gpu_check import build_pipeline

        from t2ibench.models.sdxl_config import materialise_sdxl_config

        config_dir = Path(tempfile.mkdtemp()) / "sdxl-base"
        materialise_sdxl_config(config_dir)
        pipe = build_pipeline(config_dir, args.device, seed).to(dtype)
    else:
        from diffusers import ZImagePipeline

        torch.manual_seed(seed)
        pipe = ZImagePipeline.from_pretrained(args.zimage_config, torch_dtype=dtype)
    pipe.to(args.device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_mib(device: str):
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**20) if device.startswith("cuda") else None


def reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def plain_loop(pipe, plan, spec, args) -> dict:
    """diffusers' pipeline per image, the family's scheduler set once."""
    import numpy as np
    import torch

    from t2ibench.models import families
    from t2ibench.samplers import make_scheduler

    jobs = plan.jobs
    first = plan.settings(jobs[0])
    family = families.get(spec.family)
    if spec.family == "sdxl":
        pipe.scheduler = make_scheduler(
            first["sampler"], dict(pipe.scheduler.config), first["prediction_type"]
        )
    reset_peak(args.device)
    images, times = [], []
    for job in jobs:
        settings = plan.settings(job)
        start = time.perf_counter()
        if spec.family == "zimage":
            image = family.make_image(pipe, dict(pipe.scheduler.config), settings, args.device)
        else:
            image = pipe(
                prompt=settings["prompt"],
                negative_prompt=settings["negative_prompt"] or None,
                num_inference_steps=settings["steps"],
                guidance_scale=settings["guidance_scale"],
                width=settings["width"],
                height=settings["height"],
                generator=torch.Generator("cpu").manual_seed(settings["seed"]),
            ).images[0]
        sync(args.device)
        times.append(time.perf_counter() - start)
        images.append(np.asarray(image))
    return {"times": times, "images": images, "peak_gpu_mib": peak_mib(args.device)}


def engine(pipe, plan, spec, args, out: Path, options: dict | None = None) -> dict:
    """The workflow's engine over the plan's images, the pipeline handed to its cache."""
    import numpy as np
    from PIL import Image

    from t2ibench import prompt_cache
    from t2ibench.generate import Generator, LoadedModel
    from t2ibench.writer import Writer

    generator = Generator()
    memory = plan.config["memory"]
    options = options or {}
    prompt_cache.install(pipe, memory["prompt_cache"])
    key = generator.model_key(spec, args.device, args.dtype, memory, options)
    generator._models[key] = LoadedModel(pipe, dict(pipe.scheduler.config), "")
    reset_peak(args.device)
    times, paths = [], []
    out.mkdir(parents=True, exist_ok=True)
    with Writer() as writer:
        for n, job in enumerate(plan.jobs):
            settings = {**plan.settings(job), **options}
            path = out / f"{n:03d}.png"
            start = time.perf_counter()
            generator.generate(
                spec, settings, str(path), str(path.with_suffix(".json")), args.device,
                memory=memory, writer=writer,
            )  # fmt: skip
            sync(args.device)
            times.append(time.perf_counter() - start)
            paths.append(path)
    if generator.load_count:
        raise RuntimeError("the engine loaded a model of its own: the bench's key is stale")
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    return {"times": times, "images": images, "peak_gpu_mib": peak_mib(args.device)}


def batched(pipe, plan, spec, args, size: int, out: Path) -> dict:
    """The engine in batches of `size` (t2ibench.batching) over the plan's images, twice
    (the first pass warms the kernels for that shape): images per second of the second."""
    from t2ibench import batching, prompt_cache
    from t2ibench.generate import Generator, LoadedModel

    generator = Generator()
    memory = plan.config["memory"]
    prompt_cache.install(pipe, memory["prompt_cache"])
    key = generator.model_key(spec, args.device, args.dtype, memory, {})
    generator._models[key] = LoadedModel(pipe, dict(pipe.scheduler.config), "")
    out.mkdir(parents=True, exist_ok=True)
    rows = [{**plan.settings(j), **batching.settings_of({"batch_size": size})} for j in plan.jobs]
    groups = batching.batches(list(range(len(rows))), lambda n: rows[n])
    reset_peak(args.device)
    for _ in range(2):
        start = time.perf_counter()
        for group in groups:
            items = [
                (rows[n], str(out / f"{n:03d}.png"), str(out / f"{n:03d}.json")) for n in group
            ]
            generator.generate_batch(spec, items, args.device, memory=memory)
        sync(args.device)
        seconds = time.perf_counter() - start
    return {
        "batch_size": size,
        "images_per_s": len(rows) / seconds,
        "s_per_image": seconds / len(rows),
        "peak_gpu_mib": peak_mib(args.device),
    }


def profile_one(pipe, plan, spec, args, out: Path) -> str:
    """torch.profiler's table of one engine image (by device time on CUDA)."""
    from torch.profiler import ProfilerActivity, profile

    from t2ibench.generate import Generator, LoadedModel

    generator = Generator()
    memory = plan.config["memory"]
    key = generator.model_key(spec, args.device, args.dtype, memory, {})
    generator._models[key] = LoadedModel(pipe, dict(pipe.scheduler.config), "")
    cuda = args.device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    job = plan.jobs[-1]
    out.mkdir(parents=True, exist_ok=True)
    with profile(activities=activities) as prof:
        generator.generate(
            spec, plan.settings(job), str(out / "p.png"), str(out / "p.json"), args.device,
            memory=memory,
        )  # fmt: skip
        sync(args.device)
    sort = "cuda_time_total" if cuda else "cpu_time_total"
    return prof.key_averages().table(sort_by=sort, row_limit=15)


def steady(times: list[float]) -> float:
    rest = times[1:] or times
    return sum(rest) / len(rest)


def differences(a: list, b: list) -> dict:
    import numpy as np

    diffs = [np.abs(x.astype(int) - y.astype(int)) for x, y in zip(a, b, strict=True)]
    return {
        "images_differing": sum(int(d.max() > 0) for d in diffs),
        "max_abs": int(max(d.max() for d in diffs)),
        "mean_abs": float(np.mean([d.mean() for d in diffs])),
    }


def bench_model(args, root: Path, family_name: str, builtin: str) -> dict:
    import torch

    plan, spec = plan_for(root / family_name, args, builtin, family_name)
    pipe = build_pipe(args, family_name, spec)
    plain_loop(pipe, plan, spec, args)  # warm-up: kernels, allocator, cuDNN choices
    loop = plain_loop(pipe, plan, spec, args)
    eng = engine(pipe, plan, spec, args, root / family_name / "engine")
    result = {
        "model": family_name,
        "images": len(plan.jobs),
        "size": args.size,
        "steps": plan.settings(plan.jobs[0])["steps"],
        "dtype": args.dtype,
        "loop_s_per_image": steady(loop["times"]),
        "engine_s_per_image": steady(eng["times"]),
        "ratio": steady(eng["times"]) / steady(loop["times"]),
        "loop_peak_gpu_mib": loop["peak_gpu_mib"],
        "engine_peak_gpu_mib": eng["peak_gpu_mib"],
        "engine_vs_loop": differences(eng["images"], loop["images"]),
        "wall_from_start_s": time.perf_counter() - START,
    }
    print(json.dumps({k: v for k, v in result.items()}), flush=True)
    result["profile"] = profile_one(pipe, plan, spec, args, root / family_name / "profile")
    print(result["profile"], flush=True)
    result["options"] = []
    chosen = OPTIONS[:2] if args.quick else OPTIONS
    from t2ibench import speed
    from t2ibench.models import families

    for label, settings in chosen:
        if "compile" in settings and not args.device.startswith("cuda"):
            result["options"].append({"option": label, "skipped": "CUDA only"})
            continue
        if "attention" in settings and not families.get(family_name).attention_backends:
            result["options"].append({"option": label, "skipped": "a UNet: SDPA as it is"})
            continue
        del pipe
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
        pipe = build_pipe(args, family_name, spec)
        try:
            speed.apply(pipe, settings, args.device, spec.name)
        except Exception as err:  # a refused option is a figure too
            result["options"].append({"option": label, "refused": str(err).splitlines()[0]})
            continue
        run = engine(pipe, plan, spec, args, root / family_name / label.replace(" ", "_"), settings)
        entry = {
            "option": label,
            "s_per_image": steady(run["times"]),
            "speedup_vs_engine": steady(eng["times"]) / steady(run["times"]),
            "first_image_s": run["times"][0],
            "peak_gpu_mib": run["peak_gpu_mib"],
            "pixels_vs_default": differences(run["images"], eng["images"]),
        }
        result["options"].append(entry)
        print(json.dumps(entry), flush=True)
    result["batches"] = []
    if families.get(family_name).batches:
        pipe = build_pipe(args, family_name, spec)
        for size in args.batch_sizes:
            entry = batched(pipe, plan, spec, args, size, root / family_name / f"batch{size}")
            result["batches"].append(entry)
            print(json.dumps(entry), flush=True)
    del pipe
    return result


def bench_scoring(args, root: Path) -> dict:
    """CLIP score throughput (images/s) from images in memory, as a generation job scores
    them (metrics.score_in_generation): ViT-L-14 (random weights; the tiny open_clip on
    --tiny), `--size` px, transforms on one thread per core, scores cached; against the
    model alone on pre-decoded pixels."""
    import os

    import torch
    from bench_metrics import PROMPTS, in_memory, make_pngs, model_only

    from t2ibench.metrics.clip_score import ClipScorer

    model = str(REPO / "config/models/open_clip-tiny.json") if args.tiny else "ViT-L-14"
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
    scorer = ClipScorer(model, "", args.device, 64)
    folder = root / "scoring"
    folder.mkdir(parents=True, exist_ok=True)
    paths = make_pngs(folder, args.scoring_images, args.size)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(len(paths))]
    threads = os.cpu_count() or 1
    in_memory(scorer, paths[:64], prompts[:64], threads, args.device)  # warm-up
    seconds = in_memory(scorer, paths, prompts, threads, args.device)
    entry = {
        "scoring_model": Path(model).stem if args.tiny else model,
        "scoring_images": len(paths),
        "scoring_threads": threads,
        "in_memory_images_per_s": round(len(paths) / seconds, 1),
        "model_only_images_per_s": round(len(paths) / model_only(scorer, paths, prompts,
                                                                  args.device), 1),
    }  # fmt: skip
    print(json.dumps(entry), flush=True)
    return entry


def table(results: dict) -> str:
    rows = [("model", "case", "s/image", "vs loop", "peak GPU MiB", "pixels vs default")]
    for r in results["models"]:
        m, loop = r["model"], r["loop_s_per_image"]
        rows.append((m, "plain loop", f"{loop:.3f}", "1.00", r["loop_peak_gpu_mib"], "-"))
        d = r["engine_vs_loop"]
        pixels = f"{d['images_differing']} differ, max {d['max_abs']}"
        rows.append((m, "engine", f"{r['engine_s_per_image']:.3f}", f"{r['ratio']:.2f}",
                     r["engine_peak_gpu_mib"], pixels))  # fmt: skip
        for o in r["options"]:
            if "s_per_image" not in o:
                rows.append((m, o["option"], o.get("skipped") or o.get("refused"), "", "", ""))
                continue
            d = o["pixels_vs_default"]
            pixels = f"{d['images_differing']} differ, max {d['max_abs']}, mean {d['mean_abs']:.3f}"
            rows.append((m, f"engine + {o['option']}", f"{o['s_per_image']:.3f}",
                         f"{o['s_per_image'] / loop:.2f}", o["peak_gpu_mib"], pixels))  # fmt: skip
        for b in r.get("batches", []):
            rows.append((m, f"engine, batch_size {b['batch_size']}", f"{b['s_per_image']:.3f}",
                         f"{b['s_per_image'] / loop:.2f}", b["peak_gpu_mib"],
                         f"{b['images_per_s']:.2f} images/s"))  # fmt: skip
    if "scoring" in results:
        sc = results["scoring"]
        rows.append((sc["scoring_model"], f"CLIP score in memory, {sc['scoring_images']} images",
                     "", "", "", f"{sc['in_memory_images_per_s']} images/s (model alone "
                     f"{sc['model_only_images_per_s']})"))  # fmt: skip
    lines = ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join([lines[0], "|---|---|---|---|---|---|", *lines[1:]])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--zsteps", type=int, default=9)
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    parser.add_argument("--prompts", type=int, help="prompts (default 4; --tiny: 2)")
    parser.add_argument("--seeds", type=int, help="seeds per prompt (default 4; --tiny: 2)")
    parser.add_argument("--zimage-config", type=Path, help="a Z-Image-Turbo diffusers folder")
    parser.add_argument("--quick", action="store_true", help="fewer speed options")
    parser.add_argument(
        "--batch-sizes",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 2, 4, 8],
        help="batch sizes to time (images per second each), e.g. 1,2,4,8",
    )
    parser.add_argument(
        "--scoring-images", type=int, default=1024,
        help="images for the in-memory CLIP scoring throughput (0: skip it)",
    )  # fmt: skip
    parser.add_argument("--tiny", action="store_true", help="CPU run on the tiny built-ins")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "out" / "gpu_bench.json")
    args = parser.parse_args()
    if args.tiny:
        args.device, args.size, args.steps, args.zsteps, args.dtype = "cpu", 64, 2, 2, "fp32"
        args.scoring_images = min(args.scoring_images, 16)
    default_count = 2 if args.tiny else 4
    args.prompts = args.prompts or default_count
    args.seeds = args.seeds or default_count
    from t2ibench.devices import require_device

    require_device(
        args.device, "gpu_bench.py", "run it on a GPU machine (--tiny: its code path on the CPU)"
    )
    import torch

    results = {"device": args.device, "torch": torch.__version__, "models": []}
    if args.device.startswith("cuda"):
        results["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    with tempfile.TemporaryDirectory(prefix="t2ibench-gpu-bench-") as tmp:
        root = Path(tmp)
        results["models"].append(bench_model(args, root, "sdxl", "tiny-sdxl"))
        if args.tiny or args.zimage_config:
            results["models"].append(bench_model(args, root, "zimage", "tiny-zimage"))
        else:
            print("Z-Image: skipped (give --zimage-config, a Z-Image-Turbo diffusers folder)")
        if args.scoring_images:
            results["scoring"] = bench_scoring(args, root)
    results["wall_s"] = time.perf_counter() - START
    print(table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json} ({results['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
