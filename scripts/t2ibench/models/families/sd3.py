"""SD3 and SD3.5: a flow-matching MMDiT on three text encoders (CLIP-L, CLIP-G, T5).

Defaults are SD3.5 Large's model card (28 steps, guidance 3.5, 1024 x 1024, 256 T5
tokens). `t5: false` leaves T5 out of the prompt encoding (diffusers' zeros in its place,
what SD3's pipeline does without its third encoder), and out of memory when no image of
the run uses it; `shift` sets a static shift of the
sigmas instead of the model's scheduler (3.0 in SD3's).

Models load from a diffusers folder, or as a single transformer file (the original MMDiT
keys, `model.diffusion_model.joint_blocks.*`, as sd3.5_large.safetensors has them) with
the text encoders, VAE and scheduler from a local diffusers folder given as
`models[].config`.
"""

from __future__ import annotations

from pathlib import Path

from t2ibench.models.families.base import (
    Builtin,
    Setting,
    TransformerFileFamily,
    negative_rows,
    per_row,
    seeded_generators,
)
from t2ibench.models.families.flux import SHIFT

MMDIT_MARKER = "joint_blocks.0.x_block.attn.qkv.weight"

SD3_SETTINGS = (
    SHIFT,
    Setting(
        "max_sequence_length",
        256,
        {"type": "integer", "minimum": 1, "maximum": 512},
        "T5 tokens the prompt is padded or cut to (SD3: 256).",
        infotext=("Max sequence length", str),
    ),
    Setting(
        "t5",
        True,
        {"type": "boolean"},
        "SD3: encode the prompt with T5 too (false: CLIP-L and CLIP-G only).",
        infotext=("T5", str),
    ),
)


class SD3(TransformerFileFamily):
    name = "sd3"
    size_multiple = 16  # 8x VAE, 2x2 latent patches
    label = "SD3"
    pipeline_class, transformer_class = "StableDiffusion3Pipeline", "SD3Transformer2DModel"
    file_label, example = "an SD3", "stable-diffusion-3.5-large"
    settings = SD3_SETTINGS
    steps, guidance_scale, width, height = 28, 3.5, 1024, 1024
    samplers = ("flow_match_euler",)
    pipelines = ("StableDiffusion3Pipeline",)
    builtins = (Builtin("tiny-sd3", "sd3", "folder"),)
    denoiser = "transformer"
    attention_backends = True
    # diffusers reads SD3 LoRAs in diffusers / PEFT keys (no kohya converter for SD3).
    lora = True
    lora_keys = r"^(transformer\.|text_encoder)"
    diffusers_classes = ("StableDiffusion3Pipeline", "SD3Transformer2DModel", "AutoencoderKL")
    transformers_classes = ("CLIPTextModelWithProjection", "T5EncoderModel", "CLIPTokenizer")

    def prediction(self) -> tuple[str, str]:
        return "flow_matching", "SD3 is a flow-matching model"

    def recognise_file(self, header: dict) -> bool:
        return MMDIT_MARKER in header or "model.diffusion_model." + MMDIT_MARKER in header

    def unused_components(self, settings: list[dict]) -> tuple[str, ...]:
        """T5 (about 9 GB in 16 bits) is not loaded when no image uses it."""
        if settings and not any(s["t5"] for s in settings):
            return ("text_encoder_3", "tokenizer_3")
        return ()

    batches = True

    def make_images(self, pipe, scheduler_config: dict, rows: list[dict], device: str):
        from diffusers import FlowMatchEulerDiscreteScheduler

        settings = rows[0]
        changes = {} if settings["shift"] is None else {"shift": settings["shift"]}
        pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(scheduler_config, **changes)
        t5 = pipe.text_encoder_3
        if not settings["t5"]:
            pipe.text_encoder_3 = None  # the pipeline puts zeros in T5's place
        try:
            return pipe(
                prompt=per_row(rows, "prompt"),
                negative_prompt=negative_rows(rows),
                num_inference_steps=settings["steps"],
                guidance_scale=settings["guidance_scale"],
                width=settings["width"],
                height=settings["height"],
                max_sequence_length=settings["max_sequence_length"],
                generator=seeded_generators(rows),
            ).images
        finally:
            pipe.text_encoder_3 = t5

    def count_tokens(self, pipe, prompt: str) -> int:
        tokenizer = pipe.tokenizer_3 or pipe.tokenizer
        return len(tokenizer(prompt, truncation=False, add_special_tokens=False)["input_ids"])

    def token_limit(self, pipe, settings: dict) -> int:
        if settings["t5"] and pipe.tokenizer_3 is not None:
            return settings["max_sequence_length"] - 1  # T5 appends </s>
        return pipe.tokenizer.model_max_length - 2

    def build_builtin(self, builtin: Builtin, target: Path, config_dir: Path | None) -> None:
        from t2ibench.models.tiny_sd3 import save_tiny_sd3

        save_tiny_sd3(target)


FAMILY = SD3()
