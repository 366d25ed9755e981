"""`make bench`: figures for the workflow's overhead, printed (and saved as JSON).

1. Dry-run seconds (`snakemake -n`, output discarded) for a 2,000- and a 20,000-image plan.
2. Wall time of `snakemake generate` making 50 tiny-SDXL images against a plain diffusers
   loop making the same 50 images from the same checkpoint, both counted from process
   start, as a ratio; the images of both are compared pixel for pixel.
3. Peak RSS of each process.
4. Dry-run seconds and peak RSS of the largest catalogue experiment at full size (not
   quick) for 2 models and 50 prompts, 2 images per prompt.
5. Dry-run seconds of the 20,000-image plan, one job per image and in chunks of
   `images_per_job: 50`, before any image is made and once every image and record is on
   disk (the start-up check then reads each image's record against its settings).

Run from the repository root: `python tools/bench.py [--repeats N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from t2ibench.workspace import copy_workflow  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")

LOOP = r"""
import sys, time
from pathlib import Path
sys.path.insert(0, "scripts")
import torch
torch.set_num_threads(1)  # as the workflow's torch_threads: 1
from t2ibench.models.single_file import load_sdxl_single_file
from t2ibench.samplers import make_scheduler
prompts, seeds, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
import json
prompts, seeds = json.loads(prompts), json.loads(seeds)
from t2ibench.models.registry import builtin_paths
checkpoint, config_dir = builtin_paths("resources", "tiny-sdxl")
pipe = load_sdxl_single_file(Path(checkpoint), Path(config_dir))
pipe.set_progress_bar_config(disable=True)
pipe.scheduler = make_scheduler("euler_a", dict(pipe.scheduler.config), "epsilon")
out.mkdir(parents=True, exist_ok=True)
for p, text in enumerate(prompts):
    for i, seed in enumerate(seeds):
        image = pipe(prompt=text, negative_prompt=None, num_inference_steps=4,
                     guidance_scale=5.0, width=64, height=64,
                     generator=torch.Generator("cpu").manual_seed(seed)).images[0]
        image.save(out / f"p{p:03d}_i{i:02d}_s{seed}.png")
"""


def run(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """Run a command; return (wall seconds from process start, peak RSS in MiB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{proc.stderr.read().decode()[-3000:]}")
    return seconds, usage.ru_maxrss / 1024


def workdir(root: Path, name: str) -> Path:
    return copy_workflow(root / name)


def bench_config(work: Path, n_prompts: int, images_per_prompt: int) -> dict:
    prompts = {
        f"bench_{i:05d}": {"text": f"a photo of object number {i}", "category": "bench"}
        for i in range(n_prompts)
    }
    (work / "prompts" / "bench.json").write_text(json.dumps(prompts))
    config = {
        "models": [{"name": "tiny-sdxl", "source": "builtin:tiny-sdxl"}],
        "prompts": {"sources": ["prompts/bench.json"]},
        "generation": {
            "sampler": "euler_a",
            "steps": 4,
            "guidance_scale": 5.0,
            "seed": 218,
            "images_per_prompt": images_per_prompt,
            "width": 64,
            "height": 64,
            "negative_prompt": "",
        },
        "torch_threads": 1,
        "max_images": 1_000_000,  # the guard against runaway sweeps is not measured here
    }
    (work / "bench.yaml").write_text(yaml.safe_dump(config))
    return config


def dry_run(root: Path, images: int) -> float:
    work = workdir(root, f"dry{images}")
    bench_config(work, images // 10, 10)
    seconds, _ = run([SNAKEMAKE, "-n", "--cores", "1", "--configfile", "bench.yaml"], work)
    return seconds


def made_dry_run(root: Path, images: int, per_job: int) -> dict:
    """Dry runs of a plan with `per_job` images a job: nothing made, then everything made
    (fake images with their records)."""
    from t2ibench.config import validate_config
    from t2ibench.io import write_json
    from t2ibench.plan import build_plan

    work = workdir(root, f"made{images}-{per_job}")
    config = bench_config(work, images // 10, 10)
    config["images_per_job"] = per_job
    (work / "bench.yaml").write_text(yaml.safe_dump(config))
    cmd = [SNAKEMAKE, "-n", "--cores", "1", "--configfile", "bench.yaml"]
    empty, _ = run(cmd, work)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        plan = build_plan(validate_config(config))
        for job in plan.jobs:
            path = Path(plan.path(job))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
            write_json(path.with_suffix(".json"), {"settings": plan.settings(job)})
    finally:
        os.chdir(cwd)
    full, _ = run(cmd, work)
    name = f"dry_run_{images}_by_{per_job}"
    return {f"{name}_empty_s": round(empty, 2), f"{name}_made_s": round(full, 2)}


def largest_sweep_dry_run(root: Path) -> dict:
    """`snakemake -n` of the catalogue experiment with the most cells, at full size."""
    from t2ibench.experiments import catalogue, load_experiment

    experiments = [load_experiment(str(path)) for path in catalogue()]
    largest = max(experiments, key=lambda e: len(e.cells))
    family = (largest.families or ["sdxl"])[0]
    builtin = {"sdxl": "tiny-sdxl", "zimage": "tiny-zimage"}[family]
    work = workdir(root, "sweep")
    config = bench_config(work, 50, 2)
    config["models"] = [{"name": f"{builtin}-{n}", "source": f"builtin:{builtin}"} for n in "ab"]
    config["experiments"] = [largest.name]
    (work / "bench.yaml").write_text(yaml.safe_dump(config))
    seconds, rss = run([SNAKEMAKE, "-n", "--cores", "1", "--configfile", "bench.yaml"], work)
    return {
        "sweep": largest.name,
        "sweep_cells": len(largest.cells),
        "sweep_images": 2 * len(largest.cells) * 50 * 2,
        "sweep_dry_run_s": round(seconds, 2),
        "sweep_dry_run_rss_mib": round(rss, 1),
    }


def compare_images(a: Path, b: Path) -> int:
    """How many of the images in `a` differ in pixels from the same-named ones in `b`."""
    from PIL import Image, ImageChops

    differ = 0
    for path in sorted(a.glob("*.png")):
        with Image.open(path) as x, Image.open(b / path.name) as y:
            if ImageChops.difference(x.convert("RGB"), y.convert("RGB")).getbbox():
                differ += 1
    return differ


def workflow_vs_loop(root: Path, repeats: int) -> dict:
    work = workdir(root, "ratio")
    config = bench_config(work, 25, 2)  # 25 prompts x 2 images = 50 images
    # Targets go before --configfile, which takes every argument after it.
    from t2ibench.models.registry import builtin_paths

    checkpoint = builtin_paths("resources", "tiny-sdxl")[0]
    run([SNAKEMAKE, checkpoint, "--cores", "1", "--configfile", "bench.yaml"], work)
    prompts = [f"a photo of object number {i}" for i in range(25)]
    seeds = [config["generation"]["seed"] + i for i in range(2)]
    results = {"workflow_s": [], "loop_s": [], "workflow_rss_mib": 0.0, "loop_rss_mib": 0.0}
    for _ in range(repeats):
        shutil.rmtree(work / "results", ignore_errors=True)
        shutil.rmtree(work / ".snakemake", ignore_errors=True)
        seconds, rss = run(
            [SNAKEMAKE, "generate", "--cores", "2", "--configfile", "bench.yaml"], work
        )
        results["workflow_s"].append(round(seconds, 2))
        results["workflow_rss_mib"] = max(results["workflow_rss_mib"], round(rss, 1))
        shutil.rmtree(work / "loop", ignore_errors=True)
        seconds, rss = run(
            [sys.executable, "-c", LOOP, json.dumps(prompts), json.dumps(seeds), "loop"], work
        )
        results["loop_s"].append(round(seconds, 2))
        results["loop_rss_mib"] = max(results["loop_rss_mib"], round(rss, 1))
    results["ratio"] = round(min(results["workflow_s"]) / min(results["loop_s"]), 3)
    results["images_differing"] = compare_images(
        work / "loop", work / "results" / "baseline" / "tiny-sdxl" / "default"
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "out" / "bench.json")
    parser.add_argument(
        "--only",
        choices=["dry-run", "chunks", "sweep", "ratio"],
        help="measure one figure only",
    )
    args = parser.parse_args()
    figures = {"cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="t2ibench-bench-") as tmp:
        root = Path(tmp)
        if args.only in (None, "dry-run"):
            for images in (2000, 20000):
                figures[f"dry_run_{images}_s"] = round(dry_run(root, images), 2)
                seconds = figures[f"dry_run_{images}_s"]
                print(f"dry run, {images:>6} images: {seconds:.2f} s", flush=True)
        if args.only in (None, "chunks"):
            for per_job in (1, 50):
                made = made_dry_run(root, 20000, per_job)
                figures.update(made)
                name = f"dry_run_20000_by_{per_job}"
                print(
                    f"dry run, 20000 images, {per_job} a job: {made[name + '_empty_s']:.2f} s "
                    f"with no image made, {made[name + '_made_s']:.2f} s with all made",
                    flush=True,
                )
        if args.only in (None, "sweep"):
            sweep = largest_sweep_dry_run(root)
            figures.update(sweep)
            print(
                f"dry run, largest catalogue sweep {sweep['sweep']} ({sweep['sweep_cells']} "
                f"cells x 2 models x 50 prompts x 2 images = {sweep['sweep_images']} images): "
                f"{sweep['sweep_dry_run_s']:.2f} s, peak RSS {sweep['sweep_dry_run_rss_mib']:.0f}"
                " MiB",
                flush=True,
            )
        ratio = workflow_vs_loop(root, args.repeats) if args.only in (None, "ratio") else None
    _save(args, figures, ratio)


def _save(args, figures: dict, ratio: dict | None) -> None:
    if ratio is None:
        _write(args, figures)
        return
    figures.update(ratio)
    print(
        f"50 images, workflow (snakemake generate): {ratio['workflow_s']} s, "
        f"peak RSS {ratio['workflow_rss_mib']:.0f} MiB"
    )
    print(
        f"50 images, plain diffusers loop:          {ratio['loop_s']} s, "
        f"peak RSS {ratio['loop_rss_mib']:.0f} MiB"
    )
    print(f"ratio workflow/loop (best of {args.repeats}): {ratio['ratio']:.3f}")
    print(f"images that differ between the two: {ratio['images_differing']} of 50")
    _write(args, figures)


def _write(args, figures: dict) -> None:
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"figures saved to {args.json}")


if __name__ == "__main__":
    main()
