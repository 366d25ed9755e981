"""Tiny LoRA files for the built-in models, in the two formats users bring.

- "peft": diffusers / PEFT keys (``unet.<module>.lora_A.weight``), as diffusers'
  ``save_lora_weights`` writes them after training with peft;
- "kohya": sd-scripts keys (``lora_unet_<module>.lora_down.weight``, ``.lora_up``,
  ``.alpha``; ``lora_te1_`` for the text encoder), the UNet's modules under their original
  (ldm) names for SDXL, as sd-scripts writes SDXL LoRAs.

The weights are random (seeded), the up matrices too, so that a LoRA visibly changes the
image; what is tested is the road a real LoRA travels (diffusers' loaders and converters).
"""

from __future__ import annotations

from pathlib import Path

import torch

from t2ibench.seeding import seeded

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


def _lora_weights(model, targets, rank: int, scale: float) -> dict[str, tuple]:
    """{module path: (down [rank, in], up [out, rank])} for each targeted Linear."""
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name.endswith(targets):
            down = torch.randn(rank, module.in_features) * scale
            up = torch.randn(module.out_features, rank) * scale
            out[name] = (down, up)
    return out


def _ldm_name(module: str, unet) -> str:
    """A UNet module's original (ldm) name, as sd-scripts writes SDXL LoRAs."""
    from t2ibench.models.single_file import _unet_prefixes

    for prefix, (ldm_prefix, _) in _unet_prefixes(unet.config).items():
        if (module + ".").startswith(prefix):
            return ldm_prefix + module[len(prefix) :]
    raise ValueError(f"unet module {module!r} has no original name")


def write_tiny_lora(
    pipe,
    path: Path,
    fmt: str = "peft",
    seed: int = 0,
    rank: int = 4,
    scale: float = 0.3,
    text_encoder: bool = True,
) -> None:
    """A LoRA for `pipe`'s UNet (and first text encoder) in format "peft" or "kohya"."""
    from safetensors.torch import save_file

    denoiser = "unet" if getattr(pipe, "unet", None) is not None else "transformer"
    if denoiser == "transformer" and fmt != "peft":
        raise ValueError("transformer LoRAs are written in PEFT keys only")
    with seeded(seed):
        unet = _lora_weights(getattr(pipe, denoiser), UNET_TARGETS, rank, scale)
        text = _lora_weights(pipe.text_encoder, TEXT_TARGETS, rank, scale) if text_encoder else {}
    tensors: dict[str, torch.Tensor] = {}
    sdxl = hasattr(pipe, "text_encoder_2")
    for part, weights in ((denoiser, unet), ("text_encoder", text)):
        for module, (down, up) in weights.items():
            if fmt == "peft":
                # Files from diffusers' trainers name CLIP's modules under text_model.
                if part == "text_encoder" and not module.startswith("text_model."):
                    module = f"text_model.{module}"
                key = f"{part}.{module}"
                tensors[f"{key}.lora_A.weight"] = down
                tensors[f"{key}.lora_B.weight"] = up
            else:
                name = _ldm_name(module, pipe.unet) if part == "unet" and sdxl else module
                if part == "text_encoder" and not name.startswith("text_model."):
                    name = f"text_model.{name}"
                prefix = "lora_unet_" if part == "unet" else ("lora_te1_" if sdxl else "lora_te_")
                key = prefix + name.replace(".", "_")
                tensors[f"{key}.lora_down.weight"] = down
                tensors[f"{key}.lora_up.weight"] = up
                tensors[f"{key}.alpha"] = torch.tensor(float(rank))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata={"format": "pt"})
