"""The SDXL base config folder that single-file SDXL checkpoints load with, offline.

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
    with building_dir(out_dir) as tmp:
        shutil.copytree(shipped, tmp, dirs_exist_ok=True)
        write_clip_tokenizer(tmp / "tokenizer")  # CLIP ViT-L: pads with <|endoftext|>
        write_clip_tokenizer(tmp / "tokenizer_2", pad_token="!")  # OpenCLIP bigG pads with 0
