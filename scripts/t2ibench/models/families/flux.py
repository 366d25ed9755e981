"""FLUX.1 (dev and schnell): a flow-matching transformer on CLIP-L (pooled) and T5.

dev is guidance-distilled: `guidance` is the embedded guidance the model was trained on
(3.5 on its model card), and `guidance_scale` above 1 adds true classifier-free guidance
with the negative prompt (off by default, as FLUX is used). schnell embeds no guidance and
runs 4 steps. The sigmas follow the model's scheduler (dev: shifted by resolution between
`base_shift` and `max_shift`; schnell: not shifted) unless `shift` sets a static shift.

Models load from a diffusers folder (FLUX.1-dev's or -schnell's), or as the common single
transformer file (flux1-dev.safetensors, BFL's layout, also under ComfyUI's
`model.diffusion_model.` prefix) with the other components from a local diffusers folder
given as `models[].config`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from t2ibench.models.families.base import (
    Builtin,
    Resolved,
    Setting,
    TransformerFileFamily,
    negative_rows,
    per_row,
    read_json,
    seeded_generators,
    text_layers,
)

BFL_MARKER = "double_blocks.0.img_attn.qkv.weight"
COMFY_PREFIX = "model.diffusion_model."
SCHNELL = (("steps", 4), ("guidance_scale", 1.0), ("max_sequence_length", 256))

SHIFT = Setting(
    "shift",
    None,
    {"type": "number", "exclusiveMinimum": 0},
    "Flow-matching shift of the sigmas (null = the model's scheduler).",
    infotext=("Shift", str),
)
FLUX_SETTINGS = (
    Setting(
        "guidance",
        3.5,
        {"type": "number", "minimum": 0},
        "FLUX.1-dev's distilled guidance, embedded in the model (schnell ignores it).",
        infotext=("Distilled CFG Scale", str),  # Forge's field for it
    ),
    Setting(
        "max_sequence_length",
        512,
        {"type": "integer", "minimum": 1, "maximum": 512},
        "T5 tokens the prompt is padded or cut to (FLUX.1-dev 512, schnell 256).",
        infotext=("Max sequence length", str),
    ),
    SHIFT,
    Setting(
        "base_shift",
        None,
        {"type": "number"},
        "The resolution-dependent shift at 256 image tokens (null = the scheduler's).",
        infotext=("Base shift", str),
    ),
    Setting(
        "max_shift",
        None,
        {"type": "number"},
        "The resolution-dependent shift at 4096 image tokens (null = the scheduler's).",
        infotext=("Max shift", str),
    ),
)


def bfl_keys(header: dict) -> bool:
    return BFL_MARKER in header or COMFY_PREFIX + BFL_MARKER in header


class Flux(TransformerFileFamily):
    name = "flux"
    size_multiple = 16  # 8x VAE, 2x2 latent patches
    label = "FLUX.1"
    pipeline_class, transformer_class = "FluxPipeline", "FluxTransformer2DModel"
    file_label, example = "a FLUX.1", "FLUX.1-dev or FLUX.1-schnell"
    settings = FLUX_SETTINGS
    # FLUX.1-dev's model card: 50 steps, guidance 3.5 (distilled), 1024 x 1024, no CFG.
    steps, guidance_scale, width, height = 50, 1.0, 1024, 1024
    samplers = ("flow_match_euler",)
    pipelines = ("FluxPipeline",)
    builtins = (
        Builtin("tiny-flux-dev", "flux", "folder"),
        Builtin("tiny-flux-schnell", "flux", "folder"),
    )
    denoiser = "transformer"
    attention_backends = True
    lora = True
    lora_keys = r"(double_blocks|single_blocks|^transformer\.|^diffusion_model\.)"
    diffusers_classes = ("FluxPipeline", "FluxTransformer2DModel", "AutoencoderKL")
    transformers_classes = ("CLIPTextModel", "T5EncoderModel", "CLIPTokenizer", "T5TokenizerFast")

    def prediction(self) -> tuple[str, str]:
        return "flow_matching", "FLUX.1 is a flow-matching model"

    def _variant(self, transformer_config: dict) -> tuple:
        """schnell (no guidance embedding): its own model-card defaults."""
        return () if transformer_config.get("guidance_embeds", True) else SCHNELL

    def resolve_folder(self, path: Path, model_index: dict) -> Resolved:
        config = read_json(path / "transformer" / "config.json")
        return Resolved(text_layers=text_layers(path), defaults=self._variant(config))

    def resolve_builtin(self, builtin: Builtin, resources_dir: str) -> Resolved:
        defaults = SCHNELL if builtin.id.endswith("schnell") else ()
        return Resolved(text_layers=builtin.text_layers, defaults=defaults)

    def recognise_file(self, header: dict) -> bool:
        return bfl_keys(header)

    def resolve_file(self, entry: dict, path: Path, header: dict, resources_dir: str) -> Resolved:
        resolved = super().resolve_file(entry, path, header, resources_dir)
        guidance = any("guidance_in." in k for k in header)
        return dataclasses.replace(resolved, defaults=() if guidance else SCHNELL)

    def scheduler(self, scheduler_config: dict, settings: dict):
        from diffusers import FlowMatchEulerDiscreteScheduler

        changes = {}
        if settings["shift"] is not None:
            changes = {"shift": settings["shift"], "use_dynamic_shifting": False}
        for key in ("base_shift", "max_shift"):
            if settings[key] is not None:
                changes[key] = settings[key]
        return FlowMatchEulerDiscreteScheduler.from_config(scheduler_config, **changes)

    batches = True

    def make_images(self, pipe, scheduler_config: dict, rows: list[dict], device: str):
        settings = rows[0]
        pipe.scheduler = self.scheduler(scheduler_config, settings)
        true_cfg = settings["guidance_scale"]
        return pipe(
            prompt=per_row(rows, "prompt"),
            negative_prompt=negative_rows(rows) if true_cfg > 1 else None,
            true_cfg_scale=true_cfg,
            guidance_scale=settings["guidance"],
            num_inference_steps=settings["steps"],
            width=settings["width"],
            height=settings["height"],
            max_sequence_length=settings["max_sequence_length"],
            generator=seeded_generators(rows),
        ).images

    def count_tokens(self, pipe, prompt: str) -> int:
        """T5 carries the prompt (CLIP gives only the pooled vector)."""
        ids = pipe.tokenizer_2(prompt, truncation=False, add_special_tokens=False)["input_ids"]
        return len(ids)

    def token_limit(self, pipe, settings: dict) -> int:
        return settings["max_sequence_length"] - 1  # T5 appends </s>

    def build_builtin(self, builtin: Builtin, target: Path, config_dir: Path | None) -> None:
        from t2ibench.models.tiny_flux import save_tiny_flux

        save_tiny_flux(builtin.id, target)


FAMILY = Flux()
