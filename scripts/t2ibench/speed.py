"""Speed options: generation settings that make images faster and may change their
pixels a little, so each is part of the image's settings (its provenance, and what a
change remakes) when it is not its default.

- ``fuse_qkv``: the denoiser's query, key and value projections fused into one matrix
  product (diffusers' ``fuse_qkv_projections``); refused for a denoiser without it.
- ``vae_upcast``: ``false`` keeps the VAE in the model's dtype where its config would run
  it in float32 (the SDXL VAE in fp16 does, ``force_upcast``); nothing changes in float32.
- ``compile``: ``torch.compile`` of the denoiser, in channels-last memory format for a
  UNet; CUDA only (refused on other devices in one line).
- ``attention``: the attention backend of a transformer denoiser (diffusers'
  ``set_attention_backend``); null and ``native`` are PyTorch's SDPA, diffusers' default.
  ``memory.attention`` (hardware profiles set it) fills it where it is null. A UNet
  family's attention is SDPA whatever it says, so it is not in those images' settings.

Each option is checked against the model's family when the plan is built (`check`):
before any job, and in dry runs. Which option is worth what on a GPU, and how far each
moves the pixels: docs/performance.md.
"""

from __future__ import annotations

import importlib.util
import logging

from t2ibench.errors import InputError

log = logging.getLogger("t2ibench")

DEFAULTS = {"fuse_qkv": False, "vae_upcast": True, "compile": False, "attention": None}
# Backends that need a package of their own, and its import name.
ATTENTION_PACKAGES = {"flash": "flash_attn", "sage": "sageattention", "xformers": "xformers"}
_WARNED: set = set()


def settings_of(gen: dict, family=None) -> dict:
    """The speed options of a cell's settings that are not their defaults (so that the
    settings of images made without them stay what they were); `attention` only for a
    family whose denoiser takes a backend."""
    out = {k: gen[k] for k, default in DEFAULTS.items() if gen.get(k, default) != default}
    if out.get("attention") == "native" or (family is not None and not family.attention_backends):
        out.pop("attention", None)
    return out


def check(family, gen: dict, where: str, model: str) -> None:
    """One model's speed options in one cell, before anything runs: fused QKV needs a
    denoiser that has it, and an attention backend its package; an attention backend
    for a UNet family is said once (it has no effect there)."""
    if gen.get("fuse_qkv") and not family.fuse_qkv:
        raise InputError(
            f"{where}fuse_qkv': model '{model}' ({family.label}): its {family.denoiser} has "
            "no fused QKV projections in diffusers; set fuse_qkv: false for this model"
        )
    attention = gen.get("attention")
    if not attention:
        return
    if not family.attention_backends:
        if family.name not in _WARNED:
            _WARNED.add(family.name)
            log.warning(
                "generation.attention '%s' applies to transformer models; %s's %s uses "
                "PyTorch's scaled_dot_product_attention as it is",
                attention,
                family.label,
                family.denoiser,
            )
        return
    package = ATTENTION_PACKAGES.get(attention)
    if package and importlib.util.find_spec(package) is None:
        raise InputError(
            f"{where}attention': backend '{attention}' needs the {package} package, which "
            f"is not installed here; install it, or choose native"
        )


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
    if options.get("attention"):
        try:
            net.set_attention_backend(options["attention"])
        except Exception as err:  # a kernel missing at run time fails in many ways
            raise InputError(
                f"{where} 'attention': backend '{options['attention']}' is not usable here "
                f"({type(err).__name__}: {str(err).splitlines()[0][:200]})"
            ) from None
    if options.get("compile"):
        import torch

        if getattr(pipe, "unet", None) is not None:
            pipe.unet.to(memory_format=torch.channels_last)
        net.compile()
