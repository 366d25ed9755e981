"""VQAScore throughput (images/s): batched, as the workflow scores (left-padded batches of
`--batch-size`), against one image at a time.

`--shape tiny` (default, the CPU figure of `make bench`): the built-in tiny Qwen2.5-VL.
`--shape 7b`: a Qwen2.5-VL-7B-shaped model (28 layers of width 3584, a 32-layer ViT of
width 1280) with random weights, built on the device in bfloat16: the speed of a network
does not depend on its weights, so this measures what a real 7B VLM costs without
downloading one. For a GPU: `python tools/bench_vqascore.py --shape 7b --device cuda
--size 1024 --images 64`.

Images are synthetic PNG-like noise of `--size` px; prompts cycle through a short list.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

PROMPTS = [
    "a lighthouse on a rocky coast at dusk",
    "three red apples on a wooden table",
    "a blue bicycle left of a yellow car",
    "an astronaut riding a horse, oil painting",
]
SHAPE_7B = {
    "vision": {
        "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
        "out_hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2,
        "temporal_patch_size": 2, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31],
    },
    "text": {
        "vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944,
        "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
        "max_position_embeddings": 128000,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6,
                            "mrope_section": [16, 24, 24]},
    },
}  # fmt: skip


def build_model(shape: str, folder: Path, device: str) -> str:
    """A model folder of the shape: the tiny one as written, or the 7B shape's config with
    the tiny one's tokenizer and processor (the tokenizer's ids fit any vocabulary)."""
    from t2ibench.metrics.tiny_vlm import write_tiny_vlm

    write_tiny_vlm(folder, "qwen2_5_vl", seed=0)
    if shape == "tiny":
        return str(folder)
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tiny = json.loads((folder / "config.json").read_text())
    names = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    special = {name: tiny[name] for name in names}
    config = Qwen2_5_VLConfig(
        vision_config=SHAPE_7B["vision"], text_config=SHAPE_7B["text"], **special
    )
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16)
    for name in folder.glob("model*.safetensors"):
        name.unlink()
    model.save_pretrained(folder)
    del model
    return str(folder)


def make_images(count: int, size: int):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    return [
        Image.fromarray(
            (rng.uniform(0, 255, 3) * ramp[:, None, None] + rng.normal(0, 6, (size, size, 3)))
            .clip(0, 255)
            .astype(np.uint8)
        )
        for _ in range(count)
    ]


def timed(scorer, images, prompts, device: str) -> float:
    import torch

    scorer.score(images[:2], prompts[:2])  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    scorer.score(images, prompts)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=["tiny", "7b"], default="tiny")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-pixels", type=int, default=0, help="0: the processor's own")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    from t2ibench.metrics.vqascore import VqaScorer

    if args.device == "cpu":
        torch.set_num_threads(1)
    images = make_images(args.images, args.size)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.images)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_model(args.shape, Path(tmp) / "vlm", args.device)
        results = {"shape": args.shape, "size": args.size, "images": args.images}
        for name, batch in [("batched", args.batch_size), ("one_at_a_time", 1)]:
            scorer = VqaScorer(
                folder, device=args.device, batch_size=batch, max_pixels=args.max_pixels
            )
            seconds = timed(scorer, images, prompts, args.device)
            results[f"{name}_images_per_s"] = round(args.images / seconds, 2)
            print(
                f"VQAScore {args.shape} {args.size}px, {name} (batch {batch}): "
                f"{args.images / seconds:.2f} images/s ({seconds:.2f} s for {args.images})"
            )
            del scorer
        ratio = results["batched_images_per_s"] / results["one_at_a_time_images_per_s"]
        results["speedup"] = round(ratio, 2)
        print(f"batched / one at a time: {ratio:.2f}x")
        if args.device.startswith("cuda"):
            results["max_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            print(f"peak GPU memory: {results['max_memory_gib']} GiB")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
