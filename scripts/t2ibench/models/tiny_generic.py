"""Two tiny diffusers pipelines that no t2ibench family knows by name, for the generic
`diffusers` family: PixArt-Sigma (a DiT on T5, 4-channel VAE) and Chroma (a FLUX-like
transformer on T5 alone, 16-channel VAE). Real architectures at toy size, seeded random
weights, saved as diffusers folders and loaded back through AutoPipelineForText2Image.
"""

from __future__ import annotations

from pathlib import Path

from diffusers import (
    ChromaPipeline,
    ChromaTransformer2DModel,
    DPMSolverMultistepScheduler,
    FlowMatchEulerDiscreteScheduler,
    PixArtSigmaPipeline,
    PixArtTransformer2DModel,
)

from t2ibench.models.tiny import tiny_vae
from t2ibench.models.tiny_flux import T5_WIDTH, _t5, flux_vae, t5_tokenizer
from t2ibench.seeding import seeded

TINY_GENERIC = ("tiny-pixart-sigma", "tiny-chroma")


def build_tiny_pixart(seed: int = 0) -> PixArtSigmaPipeline:
    tokenizer = t5_tokenizer()
    with seeded(seed):
        vae = tiny_vae()
        transformer = PixArtTransformer2DModel(
            num_attention_heads=2,
            attention_head_dim=8,
            in_channels=4,
            out_channels=8,
            num_layers=2,
            cross_attention_dim=16,
            caption_channels=T5_WIDTH,
            # PixArt bins sizes by sample_size (32: its 256 px bins); the pipeline makes
            # the bin's size and resizes to the one asked for.
            sample_size=32,
            patch_size=2,
        )
        text_encoder = _t5(len(tokenizer))
    return PixArtSigmaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder.eval(),
        vae=vae,
        transformer=transformer,
        scheduler=DPMSolverMultistepScheduler(),
    )


def build_tiny_chroma(seed: int = 0) -> ChromaPipeline:
    tokenizer = t5_tokenizer()
    with seeded(seed):
        vae = flux_vae()
        transformer = ChromaTransformer2DModel(
            patch_size=1,
            in_channels=64,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=T5_WIDTH,
            axes_dims_rope=(4, 6, 6),
            approximator_num_channels=8,
            approximator_hidden_dim=32,
            approximator_layers=1,
        )
        text_encoder = _t5(len(tokenizer))
    return ChromaPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0),
        vae=vae,
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        transformer=transformer,
        image_encoder=None,
        feature_extractor=None,
    )


def save_tiny_generic(model_id: str, folder: Path) -> None:
    from t2ibench.io import building_dir

    build = {"tiny-pixart-sigma": build_tiny_pixart, "tiny-chroma": build_tiny_chroma}[model_id]
    with building_dir(folder) as staging:
        pipe = build()
        pipe.save_pretrained(staging)
