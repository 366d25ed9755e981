"""SD 1.x and SD 2.x: a UNet on one CLIP text encoder (ViT-L for 1.x, OpenCLIP ViT-H for
2.x), A1111-style samplers, clip skip.

Single files in the original layout load with the shipped base configs (config/sd15-base,
SD 1.5's; config/sd2-base, SD 2.1's 768 px v-prediction) chosen by the file's text
encoder keys, or a config folder of the user's; diffusers folders load whole. SD 2.x
files carry no mark of their prediction type: like diffusers, t2ibench takes the 768 px
v-prediction model unless the name, a `v_pred` key or `prediction_type` says otherwise
(set `prediction_type: epsilon` for SD 2.x base 512).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from t2ibench.models.families.base import Builtin, Resolved
from t2ibench.models.families.sdxl import TINY_TEXT_LAYERS, UNetFamily

SD1_MARKER = "cond_stage_model.transformer.text_model."
SD2_MARKER = "cond_stage_model.model."


class SD15(UNetFamily):
    name = "sd15"
    label = "SD 1.x/2.x"
    # Model-card settings: SD 1.5 at 512 px, SD 2.1 at 768 px (per model, see
    # resolve_file), guidance 7.5; 30 steps of the default euler_a.
    steps, guidance_scale, width, height = 30, 7.5, 512, 512
    pipelines = ("StableDiffusionPipeline",)
    pipeline_class = "StableDiffusionPipeline"
    diffusers_classes = ("StableDiffusionPipeline", "UNet2DConditionModel", "AutoencoderKL")
    base_configs = ("sd15-base", "sd2-base")
    builtins = (
        Builtin("tiny-sd15", "sd15", "file", TINY_TEXT_LAYERS, None, {"layout": "sd1"}),
        Builtin(
            "tiny-sd2-vpred", "sd15", "file", TINY_TEXT_LAYERS, "v_prediction", {"layout": "sd2"}
        ),
    )

    def recognise_file(self, header: dict) -> bool:
        return any(k.startswith((SD1_MARKER, SD2_MARKER)) for k in header)

    def shipped_config(self, entry: dict, header: dict | None) -> str:
        if header is not None and any(k.startswith(SD2_MARKER) for k in header):
            return "sd2-base"
        return "sd15-base"

    def resolve_file(self, entry: dict, path: Path, header: dict, resources_dir: str) -> Resolved:
        resolved = super().resolve_file(entry, path, header, resources_dir)
        if not any(k.startswith(SD2_MARKER) for k in header):
            return resolved
        # diffusers' rule for SD 2.x files: v-prediction at 768 px (its one exception, a
        # global_step of 875000, is SD 2.0 base; set prediction_type for such a model).
        return dataclasses.replace(
            resolved,
            defaults=(("width", 768), ("height", 768)),
            prediction_type="v_prediction",
            prediction_reason="SD 2.x file: 768 px v-prediction unless set",
        )

    def load_single_file(self, path: Path, config_dir: Path, torch_dtype):
        from diffusers import StableDiffusionPipeline

        from t2ibench.models.checks import check_checkpoint
        from t2ibench.models.single_file import (
            check_original_checkpoint,
            layout_of,
            load_original_single_file,
        )

        layout = layout_of(check_checkpoint(path))
        check_original_checkpoint(
            path, config_dir, layout, "SD 2.x" if layout == "sd2" else "SD 1.x"
        )
        return load_original_single_file(StableDiffusionPipeline, path, config_dir, torch_dtype)

    def call_arguments(self, pipe, settings: dict) -> dict:
        """Clip skip as diffusers' StableDiffusionPipeline does it (hidden state
        -(clip_skip + 1), then the final layer norm; the negative prompt without it), here
        because the pipeline reaches the layer norm through `text_model`, which
        transformers 5.6 and later no longer have."""
        if settings["clip_skip"] is None:
            return {"guidance_rescale": settings["guidance_rescale"]}
        import torch

        encoder = pipe.text_encoder
        tokens = pipe.tokenizer(
            settings["prompt"],
            padding="max_length",
            max_length=pipe.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(encoder.device)
        with torch.no_grad():
            hidden = encoder(tokens, output_hidden_states=True).hidden_states
            norm = getattr(encoder, "text_model", encoder).final_layer_norm
            embeds = norm(hidden[-(settings["clip_skip"] + 1)])
        return {
            "guidance_rescale": settings["guidance_rescale"],
            "prompt": None,
            "prompt_embeds": embeds.to(encoder.dtype),
        }

    def build_builtin(self, builtin: Builtin, target: Path, config_dir: Path | None) -> None:
        from t2ibench.models.tiny_sd import materialise_tiny_sd

        materialise_tiny_sd(builtin.id, target, config_dir)

    def build_base_config(self, name: str, folder: Path) -> None:
        from t2ibench.models.families.sdxl import REPO_CONFIGS
        from t2ibench.models.sdxl_config import materialise_base_config

        pad = None if name == "sd15-base" else "!"  # CLIP ViT-L vs OpenCLIP's padding
        materialise_base_config(folder, REPO_CONFIGS / name, {"tokenizer": pad})


FAMILY = SD15()
