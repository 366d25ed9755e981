"""Full-size SDXL check on a GPU: `python tools/gpu_check.py [--json FILE]`.

Builds the full-size SDXL architecture from the shipped configs (config/sdxl-base) with
seeded random weights (nothing is downloaded), then for each dtype makes 1024x1024
images at 28 steps, reports seconds per image and peak GPU memory, and checks that the
output has no NaN (random weights make noise, but a dtype overflow shows as NaN); with
`--offload`, also bf16 with model CPU offload. Exit status 1 when any output has NaN.

A CPU smoke run of the same code: `--device cpu --size 64 --steps 2 --dtypes fp32`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def build_pipeline(config_dir: Path, device: str, seed: int):
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTokenizer

    from t2ibench.models.single_file import build_sdxl_components

    torch.manual_seed(seed)
    # Initialise the weights where they will run: fast.
    unet, vae, text_encoder, text_encoder_2 = build_sdxl_components(config_dir, device)
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=CLIPTokenizer.from_pretrained(config_dir / "tokenizer"),
        tokenizer_2=CLIPTokenizer.from_pretrained(config_dir / "tokenizer_2"),
        unet=unet,
        scheduler=EulerDiscreteScheduler.from_pretrained(config_dir / "scheduler"),
    )


def run_case(pipe, args, label: str) -> dict:
    import numpy as np
    import torch

    cuda = args.device.startswith("cuda")

    def once(steps: int):
        return pipe(
            prompt="a lighthouse on a rocky coast at dusk, oil painting",
            negative_prompt="blurry",
            num_inference_steps=steps,
            guidance_scale=5.0,
            width=args.size,
            height=args.size,
            output_type="np",
            generator=torch.Generator("cpu").manual_seed(218),
        ).images[0]

    once(2)  # warm-up: kernels, allocator
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times, nan = [], False
    for _ in range(args.repeats):
        start = time.perf_counter()
        image = once(args.steps)
        if cuda:
            torch.cuda.synchronize()
        times.append(round(time.perf_counter() - start, 3))
        nan = nan or bool(np.isnan(image).any())
    result = {
        "case": label,
        "size": args.size,
        "steps": args.steps,
        "seconds_per_image": times,
        "nan": nan,
        "all_black": bool(np.nan_to_num(image).max() <= 0.0),
        "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20) if cuda else None,
    }
    print(json.dumps(result), flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dtypes", nargs="+", default=["bf16", "fp16"], choices=list(DTYPES))
    parser.add_argument("--offload", action="store_true", help="also: model CPU offload (bf16)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from t2ibench.devices import require_device

    require_device(args.device, "gpu_check.py")
    import torch

    from t2ibench.models.sdxl_config import materialise_sdxl_config

    results = {"device": args.device, "cases": []}
    if args.device.startswith("cuda"):
        results["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    results["torch"] = torch.__version__
    with tempfile.TemporaryDirectory() as tmp:
        config_dir = Path(tmp) / "sdxl-base"
        materialise_sdxl_config(config_dir)
        for dtype in args.dtypes:
            pipe = build_pipeline(config_dir, args.device, seed=0)
            pipe.to(getattr(torch, DTYPES[dtype]))
            pipe.set_progress_bar_config(disable=True)
            results["cases"].append(run_case(pipe, args, dtype))
            del pipe
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
        if args.offload:
            pipe = build_pipeline(config_dir, "cpu", seed=0).to(torch.bfloat16)
            pipe.set_progress_bar_config(disable=True)
            pipe.enable_model_cpu_offload(device=args.device)
            results["cases"].append(run_case(pipe, args, "bf16 + model CPU offload"))
            del pipe
            torch.cuda.empty_cache()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if any(c["nan"] for c in results["cases"]) else 0


if __name__ == "__main__":
    sys.exit(main())
