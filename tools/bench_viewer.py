"""Viewer build and load times on a synthetic run (default 2,000 images of 256 px).

What is measured:

- build, cold: `build_viewer` into an empty report folder: reading the CSVs, writing one
  thumbnail (WebP) and one pixel-copy script per image, data.js and the page;
- build, warm: the same call again (every thumbnail reused: only the CSVs, stat() of
  each image and data.js);
- the report folder's size (thumbnails, pixel copies, data.js), per image;
- page load in headless Chromium from file://, in a fresh browser context each run:
  time from navigation start to `data-ready` (viewer.js has rendered the grid's first
  page), and to `data-thumbs-ready` (every thumbnail of that page inside the viewport has
  loaded and is displayed), plus DOMContentLoaded and the number of tiles on the page.

The images are smooth random colour fields with a little noise (like generated images,
they compress; pure noise would not), in two experiments: 4 models x 10 seeds, and one
model x 10 cells x 4 seeds, over N/80 prompts each. Chromium: $T2IBENCH_CHROMIUM, else
`chromium`, `chromium-browser` or `google-chrome` on PATH.

    python tools/bench_viewer.py                     # 2,000 images
    python tools/bench_viewer.py --images 5000 --json bench/out/bench_viewer.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from t2ibench.io import write_rows  # noqa: E402
from t2ibench.report.viewer import build_viewer, find_chromium  # noqa: E402

METRICS = ["clip_score", "pickscore", "hps", "image_reward"]


def random_image(rng: np.random.Generator, size: int) -> Image.Image:
    """A smooth random colour field plus +-3 levels of noise."""
    small = Image.fromarray(rng.integers(0, 256, (5, 5, 3), dtype=np.uint8))
    field = np.asarray(small.resize((size, size), Image.Resampling.BICUBIC), dtype=np.int16)
    noise = rng.integers(-3, 4, field.shape, dtype=np.int16)
    return Image.fromarray(np.clip(field + noise, 0, 255).astype(np.uint8))


def write_experiment(
    root: Path,
    name: str,
    models: list[str],
    cells: list[str],
    seeds: list[int],
    prompts: int,
    size: int,
) -> int:
    """One synthetic experiment under root/results/name; returns its number of images."""
    rng = np.random.default_rng(len(name))
    exp = root / "results" / name
    rows = []
    for model in models:
        for cell in cells:
            for p in range(prompts):
                for i, seed in enumerate(seeds):
                    path = exp / model / cell / f"p{p:03d}_i{i:02d}_s{seed}.png"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    random_image(rng, size).save(path, compress_level=1)
                    row = {"experiment": name, "model": model, "cell": cell}
                    row.update(prompt_id=f"prompt_{p}", prompt_index=p, seed=seed)
                    row.update(prompt_text=f"synthetic prompt number {p}", image_index=i)
                    row.update({m: float(rng.normal(20, 3)) for m in METRICS})
                    row["image_path"] = path.relative_to(root).as_posix()
                    rows.append(row)
    write_rows(exp / "results.csv", rows)
    summary = []
    for model in models:
        for cell in cells:
            group = [r for r in rows if r["model"] == model and r["cell"] == cell]
            row = {"model": model, "cell": cell, "images": len(group)}
            row.update({f"{m}_mean": statistics.fmean(r[m] for r in group) for m in METRICS})
            summary.append(row)
    write_rows(exp / "summary.csv", summary)
    meta = {
        "experiment": name,
        "description": f"Synthetic benchmark experiment {name}",
        "models": [{"name": m} for m in models],
        "cells": {c: {"values": {}} for c in cells},
        "variables": {},
        "seeds": seeds,
    }
    (exp / "metadata.json").write_text(json.dumps(meta), encoding="utf-8")
    return len(rows)


def make_run(root: Path, images: int, size: int) -> int:
    """Two experiments with about `images` images in all; returns the exact count."""
    prompts = max(1, round(images / 80))
    n = write_experiment(
        root, "bench_models", [f"model-{k}" for k in range(4)], ["default"], list(range(10)),
        prompts, size,
    )  # fmt: skip
    n += write_experiment(
        root, "bench_sweep", ["model-0"], [f"cell-{k}" for k in range(10)], list(range(4)),
        prompts, size,
    )  # fmt: skip
    return n


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def time_builds(root: Path) -> dict:
    """Cold and warm build times and the report folder's size."""
    results, out = root / "results", root / "results" / "report"
    if hasattr(os, "sync"):
        os.sync()  # the PNGs just written are flushed before, not during, the timed build
    start = time.perf_counter()
    build_viewer(results, out)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    build_viewer(results, out)
    warm = time.perf_counter() - start
    return {
        "build_cold_s": cold,
        "build_warm_s": warm,
        "thumbs_bytes": folder_bytes(out / "thumbs"),
        "pixels_bytes": folder_bytes(out / "px"),
        "data_js_bytes": (out / "data.js").stat().st_size,
        "report_bytes": folder_bytes(out),
        "originals_bytes": folder_bytes(results) - folder_bytes(out),
    }


def time_loads(index: Path, chromium: str, runs: int) -> list[dict]:
    """Load the page `runs` times from file://, each in a fresh browser context."""
    from playwright.sync_api import sync_playwright

    loads = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        for _ in range(runs):
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            start = time.perf_counter()
            page.goto(index.as_uri())
            page.wait_for_selector("html[data-thumbs-ready]", timeout=60_000)
            wall = time.perf_counter() - start
            loads.append(page.evaluate(
                """() => ({
                    ready_ms: +document.documentElement.dataset.ready,
                    thumbs_ms: +document.documentElement.dataset.thumbsReady,
                    dcl_ms: performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd,
                    tiles: document.querySelectorAll('#grid img.thumb').length,
                })"""
            ) | {"wall_s": wall})  # fmt: skip
            context.close()
        browser.close()
    return loads


def report(n: int, size: int, builds: dict, loads: list[dict]) -> None:
    """Print the figures."""
    mb = 1024 * 1024
    print(f"Synthetic run: {n} images of {size}x{size} px, 2 experiments")
    print(f"  originals:        {builds['originals_bytes'] / mb:8.1f} MB")
    print(f"build_viewer, cold (thumbnails + pixel copies): {builds['build_cold_s']:.2f} s "
          f"({1000 * builds['build_cold_s'] / n:.2f} ms/image, {os.cpu_count()} CPUs)")  # fmt: skip
    print(f"build_viewer, warm (all reused):                {builds['build_warm_s']:.2f} s")
    print("report folder:")
    for key, label in [("thumbs_bytes", "thumbnails"), ("pixels_bytes", "pixel copies"),
                       ("data_js_bytes", "data.js"), ("report_bytes", "total")]:  # fmt: skip
        per = builds[key] / n / 1024
        print(f"  {label:<16}  {builds[key] / mb:8.1f} MB  ({per:6.1f} KB/image, "
              f"{builds[key] * 5000 / n / mb:7.1f} MB for 5,000 images)")  # fmt: skip
    if not loads:
        return
    print(f"page load from file:// in headless Chromium, {len(loads)} runs "
          "(ms from navigation start):")  # fmt: skip
    for name, key in [("DOMContentLoaded", "dcl_ms"), ("grid rendered (data-ready)", "ready_ms"),
                      ("first page's visible thumbnails shown", "thumbs_ms")]:  # fmt: skip
        values = [load[key] for load in loads]
        print(f"  {name:<40} median {statistics.median(values):7.1f}   "
              f"runs {', '.join(f'{v:.1f}' for v in values)}")  # fmt: skip
    print(f"  tiles on the first page: {loads[0]['tiles']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="about this many (x80)")
    parser.add_argument("--size", type=int, default=256, help="image side in px")
    parser.add_argument("--runs", type=int, default=3, help="page loads to time")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", type=Path, help="build in this folder and keep it")
    args = parser.parse_args(argv)

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_viewer_"))
    try:
        if (root / "results").exists():
            shutil.rmtree(root / "results")
        start = time.perf_counter()
        n = make_run(root, args.images, args.size)
        print(f"(wrote {n} PNGs in {time.perf_counter() - start:.1f} s; not part of the figures)")
        builds = time_builds(root)
        chromium = find_chromium()
        loads = []
        if chromium is None:
            print("no Chromium found: page load not measured (set T2IBENCH_CHROMIUM)")
        else:
            loads = time_loads(root / "results" / "report" / "index.html", chromium, args.runs)
        report(n, args.size, builds, loads)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            figures = {"images": n, "size": args.size, "cpus": os.cpu_count(), **builds,
                       "loads": loads, "chromium": chromium}  # fmt: skip
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
