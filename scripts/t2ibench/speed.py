"""Speed options: generation settings that make images faster and may change their
pixels a little, so each is part of the image's settings (its provenance, and what a
change remakes) when it is not its default.

- ``fuse_qkv``: the denoiser's query, key and value projections fused into one matrix
  product (diffusers' ``fuse_qkv_projections``); refused for a denoiser without it.
- ``vae_upcast``: ``false`` keeps the VAE in the model's dtype where its config would run
  it in float32 (the SDXL VAE in fp16 does, ``force_upcast``); nothing changes in float32.
- ``compile``: ``torch.compile`` of the denoiser, in channels-last memory format for a
  UNet; CUDA only (refused on other devices in one line).

The attention backend is ``memory.attention``. Which option is worth what on a GPU, and
how far each moves the pixels: docs/performance.md.
"""

from __future__ import annotations

from t2ibench.errors import InputError

DEFAULTS = {"fuse_qkv": False, "vae_upcast": True, "compile": False}


def settings_of(gen: dict) -> dict:
    """The speed options of a cell's settings that are not their defaults (so that the
    settings of images made without them stay what they were)."""
    return {k: gen[k] for k, default in DEFAULTS.items() if gen.get(k, default) != default}


def denoiser(pipe):
    return getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)


def apply(pipe, options: dict, device: str, model: str) -> None:
    """Apply the options to a loaded pipeline (before its first image)."""
    where = f"model '{model}': generation key"
    net = denoiser(pipe)
    if options.get("compile") and not str(device).startswith("cuda"):
        raise InputError(
            f"{where} 'compile': torch.compile is used on CUDA devices only, and this "
            f"model runs on {device}; set compile: false (or run on a GPU)"
        )
    if options.get("fuse_qkv"):
        if net is None or not hasattr(net, "fuse_qkv_projections"):
            name = type(net).__name__ if net is not None else "its pipeline"
            raise InputError(
                f"{where} 'fuse_qkv': {name} has no fused QKV projections in diffusers; "
                "set fuse_qkv: false for this model"
            )
        net.fuse_qkv_projections()
    if options.get("vae_upcast") is False:
        vae = getattr(pipe, "vae", None)
        if vae is not None and getattr(vae.config, "force_upcast", False):
            vae.register_to_config(force_upcast=False)
    if options.get("compile"):
        import torch

        if getattr(pipe, "unet", None) is not None:
            pipe.unet.to(memory_format=torch.channels_last)
        net.compile()
