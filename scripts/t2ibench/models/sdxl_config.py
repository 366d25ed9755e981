"""The SDXL base config folder that single-file SDXL checkpoints load with, offline.

`config/sdxl-base/` ships the component configs of stabilityai/stable-diffusion-xl-base-1.0
(UNet, VAE, both text encoders, scheduler). The tokenizers are built here from open_clip's
bundled BPE merges, so a real SDXL checkpoint loads with no network at all.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from t2ibench.models.clip_tokenizer import write_clip_tokenizer

SHIPPED = Path(__file__).resolve().parents[3] / "config" / "sdxl-base"


def materialise_sdxl_config(out_dir: Path, shipped: Path = SHIPPED) -> None:
    """Copy the shipped configs and add both CLIP tokenizers; the folder appears whole."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        shutil.copytree(shipped, tmp, dirs_exist_ok=True)
        write_clip_tokenizer(tmp / "tokenizer")  # CLIP ViT-L: pads with <|endoftext|>
        write_clip_tokenizer(tmp / "tokenizer_2", pad_token="!")  # OpenCLIP bigG pads with 0
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
