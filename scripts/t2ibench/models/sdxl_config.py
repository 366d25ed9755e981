"""The base config folders that single-file checkpoints load with, offline.

`config/sdxl-base/` ships the component configs of stabilityai/stable-diffusion-xl-base-1.0
(UNet, VAE, both text encoders, scheduler). The tokenizers are built here from open_clip's
bundled BPE merges, so a real SDXL checkpoint loads with no network at all.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from t2ibench.io import building_dir
from t2ibench.models.clip_tokenizer import write_clip_tokenizer

SHIPPED = Path(__file__).resolve().parents[3] / "config" / "sdxl-base"


def materialise_sdxl_config(out_dir: Path, shipped: Path = SHIPPED) -> None:
    """Copy the shipped configs and add both CLIP tokenizers; the folder appears whole."""
    # CLIP ViT-L pads with <|endoftext|>; OpenCLIP bigG pads with 0 ("!").
    materialise_base_config(out_dir, shipped, {"tokenizer": None, "tokenizer_2": "!"})


def materialise_base_config(out_dir: Path, shipped: Path, tokenizers: dict) -> None:
    """A shipped config folder plus its CLIP tokenizers ({folder: pad token or None for
    <|endoftext|>}), built offline; the folder appears whole."""
    with building_dir(out_dir) as tmp:
        shutil.copytree(shipped, tmp, dirs_exist_ok=True)
        for name, pad in tokenizers.items():
            write_clip_tokenizer(tmp / name, **({"pad_token": pad} if pad else {}))
