"""CLIP scoring throughput (images/s): batched, as the workflow scores, against one image
at a time, as a naive loop would.

- one at a time: open the PNG, preprocess, encode its prompt and the image, one forward
  each, image after image;
- model only: the same batches with pixels already decoded (the ceiling);
- batched: the workflow's path (t2ibench.scoring, t2ibench.metrics.loader): a DataLoader
  decodes and preprocesses the PNGs (with and without worker processes), each distinct
  prompt is encoded once, images go through the model `--batch-size` at a time;
- in memory: scored in the generation job (metrics.score_in_generation,
  t2ibench.inline_scores): no decoding, transforms on threads, scores cached.

The model has random weights of the named open_clip architecture (nothing is
downloaded); the speed of a network does not depend on its weights. The PNGs are
synthetic (`--size` px, smooth colour plus noise, so they do not compress to nothing).

CPU default: `python tools/bench_metrics.py` (ViT-B-32, 512 px, 128 images).
GPU: `python tools/bench_metrics.py --device cuda --model ViT-L-14 --size 1024 --images 512`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

PROMPTS = [
    "a lighthouse on a rocky coast at dusk",
    "a red fox in fresh snow",
    "a bowl of ramen, studio photo",
    "an astronaut riding a horse, oil painting",
    "a city street at night in the rain",
    "a watercolor of a mountain lake",
    "a robot reading a newspaper in a cafe",
    "a close-up of a hummingbird",
]


def _write_png(args: tuple[str, int, int]) -> None:
    import numpy as np
    from PIL import Image

    path, size, seed = args
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    base = rng.uniform(0, 255, size=3).astype(np.float32)
    pixels = base * ramp[:, None, None] + rng.normal(0, 6, size=(size, size, 3))
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path)


def make_pngs(folder: Path, count: int, size: int) -> list[str]:
    from multiprocessing import Pool

    paths = [str(folder / f"p{i % len(PROMPTS):03d}_i{i:03d}.png") for i in range(count)]
    with Pool(os.cpu_count()) as pool:
        pool.map(_write_png, [(path, size, i) for i, path in enumerate(paths)])
    return paths


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def one_at_a_time(scorer, paths: list[str], prompts: list[str], device: str) -> float:
    from PIL import Image

    start = time.perf_counter()
    for path, prompt in zip(paths, prompts, strict=True):
        with Image.open(path) as image:
            scorer.score([image.convert("RGB")], [prompt])
    synchronize(device)
    return time.perf_counter() - start


def batched(scorer, paths: list[str], prompts: list[str], workers: int, device: str) -> float:
    import torch

    from t2ibench.metrics.base import take_rows
    from t2ibench.metrics.loader import decoded_batches

    start = time.perf_counter()
    row = {text: r for r, text in enumerate(dict.fromkeys(prompts))}
    encoded = scorer.encode_prompts(list(row))
    rows = torch.tensor([row[p] for p in prompts])
    batches = decoded_batches(paths, scorer.transform(), scorer.batch_size, workers, min_batches=0)
    for pixels, index in batches:
        scorer.score_pixels(pixels, take_rows(encoded, rows[index]))
    synchronize(device)
    return time.perf_counter() - start


def in_memory(scorer, paths: list[str], prompts: list[str], workers: int, device: str) -> float:
    """Scores made in the generation job (metrics.score_in_generation): the images are
    in memory as the pipeline returned them (decoded here before the clock starts), the
    transforms run on `workers` threads, the scores go to a score cache."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    from t2ibench.metrics.cache import ScoreCache

    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    cache = ScoreCache(Path(paths[0]).parent / "scores.sqlite")
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    start = time.perf_counter()
    for begin in range(0, len(images), scorer.batch_size):
        end = begin + scorer.batch_size
        scores = scorer.score(images[begin:end], prompts[begin:end], pool)
        cache.put_many(
            {(path, "bench"): v for path, v in zip(paths[begin:end], scores, strict=True)}
        )
    synchronize(device)
    seconds = time.perf_counter() - start
    if pool is not None:
        pool.shutdown()
    return seconds


def model_only(scorer, paths: list[str], prompts: list[str], device: str) -> float:
    """The ceiling: the same batches with the pixels already decoded (model time only)."""
    import torch
    from PIL import Image

    from t2ibench.metrics.base import take_rows

    with Image.open(paths[0]) as image:
        one = scorer.transform()(image.convert("RGB"))
    pixels = one.expand(scorer.batch_size, *one.shape).contiguous()
    row = {text: r for r, text in enumerate(dict.fromkeys(prompts))}
    encoded = scorer.encode_prompts(list(row))
    rows = torch.tensor([row[p] for p in prompts])
    start = time.perf_counter()
    for begin in range(0, len(paths), scorer.batch_size):
        index = torch.arange(begin, min(begin + scorer.batch_size, len(paths)))
        scorer.score_pixels(pixels[: len(index)], take_rows(encoded, rows[index]))
    synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    from t2ibench.metrics.clip_score import ClipScorer

    torch.set_num_threads(os.cpu_count() or 1)
    scorer = ClipScorer(args.model, "", args.device, args.batch_size)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
    with tempfile.TemporaryDirectory(prefix="t2ibench-bench-metrics-") as tmp:
        paths = make_pngs(Path(tmp), args.images, args.size)
        prompts = [PROMPTS[i % len(PROMPTS)] for i in range(len(paths))]
        one_at_a_time(scorer, paths[:2], prompts[:2], args.device)  # warm-up
        figures = {
            "model": args.model,
            "device": args.device,
            "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "",
            "image_size": args.size,
            "images": len(paths),
            "batch_size": args.batch_size,
        }
        # One at a time is slow: timed on a quarter of the images.
        quarter = max(1, len(paths) // 4)
        seconds = one_at_a_time(scorer, paths[:quarter], prompts[:quarter], args.device)
        figures["one_at_a_time_images_per_s"] = round(quarter / seconds, 2)
        seconds = batched(scorer, paths, prompts, 0, args.device)
        figures["batched_no_workers_images_per_s"] = round(len(paths) / seconds, 2)
        # Workers fork from a forkserver started on first use (imports torch once); later
        # jobs of the same Snakemake process find it running.
        for run in ("first", "warm"):
            seconds = batched(scorer, paths, prompts, args.workers, args.device)
            key = f"batched_{args.workers}_workers_{run}_images_per_s"
            figures[key] = round(len(paths) / seconds, 2)
        for workers in sorted({0, args.workers}):
            seconds = in_memory(scorer, paths, prompts, workers, args.device)
            figures[f"in_memory_{workers}_threads_images_per_s"] = round(len(paths) / seconds, 2)
        seconds = model_only(scorer, paths, prompts, args.device)
        figures["model_only_images_per_s"] = round(len(paths) / seconds, 2)
    best = max(v for k, v in figures.items() if k.startswith(("batched", "in_memory")))
    figures["speedup"] = round(best / figures["one_at_a_time_images_per_s"], 2)
    for key, value in figures.items():
        print(f"{key}: {value}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
