"""Z-Image: a flow-matching transformer with a Qwen3 text encoder, encoded our way.

The prompt encoding (chat template, think block, hidden layer, long prompts) is
t2ibench.models.zimage; this module is the family's face to the rest of t2ibench. Defaults
follow DiffSynth-Studio (the seed tool's table) and Z-Image-Turbo's model card: think
block on, interpolate long prompts, penultimate hidden layer, shift 3.0, 9 steps, no
classifier-free guidance, 1024 x 1024.
"""

from __future__ import annotations

import json
from pathlib import Path

from t2ibench.errors import InputError
from t2ibench.models.families.base import Builtin, Family, Resolved, Setting, per_row

TINY_TEXT_LAYERS = 6  # t2ibench.models.zimage.TEXT_LAYERS (tests check they agree)
LONG_PROMPT_MODES = ["truncate", "interpolate", "pool", "attention_pool"]

# Named presets (the seed tool's values); any other string is used as the text itself.
# The settings record the text, so results show what was really applied.
SYSTEM_PROMPT_PRESETS = {
    "photographer": "You are a professional photographer. Compose the described scene as a "
    "well-lit, sharply focused photograph with natural colours and a clear subject.",
    "painter": "You are a fine-art painter. Render the described scene as a painting with "
    "deliberate brushwork, a harmonious palette and a strong composition.",
    "illustrator": "You are an illustrator. Depict the described scene as a clean, detailed "
    "illustration with clear shapes, readable forms and consistent style.",
    "generic": "You are an assistant that creates images. Follow the description closely "
    "and render every object, attribute and relation it mentions.",
}
THINKING_PRESETS = {
    "quality": "The image should be high quality: sharp details, clean edges, accurate "
    "anatomy and no artifacts.",
    "mood": "Focus on the mood and atmosphere: lighting, colour temperature and emotional "
    "tone that fit the scene.",
    "technical": "Plan the composition: camera angle, focal length, depth of field and the "
    "placement of each subject in the frame.",
}


def _blend(blend: dict) -> str:
    return json.dumps({str(k): v for k, v in blend.items()})


SHIFT = Setting(
    "shift",
    3.0,
    {"type": "number", "exclusiveMinimum": 0},
    "Flow-matching shift of the sigmas (high values spend the steps on composition).",
    infotext=("Shift", str),
    always=True,
)
ENCODING = (
    Setting(
        "hidden_layer",
        -2,
        {"type": "integer"},
        "Hidden state of the text encoder the prompt is read from (-1 = the last layer).",
        infotext=("Hidden layer", str),
    ),
    Setting(
        "hidden_layer_blend",
        None,
        {
            "type": "object",
            "propertyNames": {"pattern": "^-?[0-9]+$"},
            "additionalProperties": {"type": "number", "minimum": 0},
        },
        "Weights over hidden-state indices, e.g. {-2: 0.5, -3: 0.5}.",
        infotext=("Hidden layer blend", _blend),
    ),
    Setting(
        "system_prompt",
        None,
        {"type": "string"},
        f"A system message before the prompt: a text, or a preset "
        f"({', '.join(SYSTEM_PROMPT_PRESETS)}).",
        infotext=("System prompt", str),
    ),
    Setting(
        "think_block",
        True,
        {"type": "boolean"},
        "End the chat template with a think block.",
        infotext=("Think block", str),
    ),
    Setting(
        "thinking_content",
        None,
        {"type": "string"},
        f"Text inside the think block: a text, or a preset ({', '.join(THINKING_PRESETS)}).",
        infotext=("Thinking content", str),
    ),
    Setting(
        "long_prompt_mode",
        "interpolate",
        {"enum": LONG_PROMPT_MODES},
        "How a prompt longer than the encoder's sequence is brought down to it.",
        infotext=("Long prompt mode", str),
    ),
)


class ZImage(Family):
    name = "zimage"
    size_multiple = 16  # 8x VAE, 2x2 latent patches
    label = "Z-Image"
    settings = (SHIFT, *ENCODING)
    steps, guidance_scale, width, height = 9, 0.0, 1024, 1024
    samplers = ("flow_match_euler",)
    pipelines = ("ZImagePipeline",)
    builtins = (Builtin("tiny-zimage", "zimage", "folder", TINY_TEXT_LAYERS),)
    denoiser = "transformer"
    attention_backends = True
    fuse_qkv = False  # ZImageTransformer2DModel has no fuse_qkv_projections
    text_encoder_device = True
    # diffusers' ZImageLoraLoaderMixin: transformer LoRAs in diffusers / PEFT keys.
    lora = True
    lora_keys = r"^(transformer\.|diffusion_model\.)"
    diffusers_classes = (
        "ZImagePipeline",
        "ZImageTransformer2DModel",
        "AutoencoderKL",
        "FlowMatchEulerDiscreteScheduler",
    )
    transformers_classes = ("Qwen3Model", "Qwen2Tokenizer")

    def family_settings(self, generation: dict, model_defaults=()) -> dict:
        settings = super().family_settings(generation, model_defaults)
        if settings["system_prompt"] in SYSTEM_PROMPT_PRESETS:
            settings["system_prompt"] = SYSTEM_PROMPT_PRESETS[settings["system_prompt"]]
        if settings["thinking_content"] in THINKING_PRESETS:
            settings["thinking_content"] = THINKING_PRESETS[settings["thinking_content"]]
        if settings["hidden_layer_blend"]:
            settings["hidden_layer_blend"] = {
                int(layer): float(w) for layer, w in settings["hidden_layer_blend"].items()
            }
        return settings

    def check_layers(self, settings: dict, n_layers: int, model: str, where: str) -> None:
        """Hidden-state indices run from -(n + 1) to n for n layers (0 = the embeddings)."""
        layers = []
        if settings.get("hidden_layer") is not None:
            layers.append(("hidden_layer", int(settings["hidden_layer"])))
        for layer in settings.get("hidden_layer_blend") or {}:
            layers.append(("hidden_layer_blend", int(layer)))
        for key, layer in layers:
            if not -(n_layers + 1) <= layer <= n_layers:
                raise InputError(
                    f"{where}{key}': layer {layer} is out of range for model '{model}', "
                    f"whose text encoder has {n_layers} layers (valid: {-(n_layers + 1)} to "
                    f"{n_layers})"
                )

    def refuse_file(self, header: dict, path: Path) -> None:
        if any(".context_refiner." in f".{k}" for k in header):
            # A Z-Image transformer (its caption refiner blocks); diffusers 0.42 has no
            # single-file loader for a whole Z-Image pipeline.
            raise InputError(
                f"model file {path}: a Z-Image transformer checkpoint (context_refiner "
                "keys); single-file Z-Image is not supported, use its diffusers folder "
                "(e.g. hf:Tongyi-MAI/Z-Image-Turbo)"
            )

    def prediction(self) -> tuple[str, str]:
        return "flow_matching", "Z-Image is a flow-matching model"

    def resolve_builtin(self, builtin: Builtin, resources_dir: str) -> Resolved:
        return Resolved(text_layers=builtin.text_layers)

    def load(self, spec, torch_dtype):
        from diffusers import ZImagePipeline

        return ZImagePipeline.from_pretrained(
            spec.checkpoint, dtype=torch_dtype, local_files_only=True, use_safetensors=True
        )

    batches = True

    def make_images(self, pipe, scheduler_config: dict, rows: list[dict], device: str):
        from t2ibench.models.zimage import ZImageEncoding, generate_zimage

        settings = rows[0]
        encoding = ZImageEncoding(**{s.key: settings[s.key] for s in ENCODING})
        made = generate_zimage(
            pipe,
            per_row(rows, "prompt"),
            settings["negative_prompt"],
            encoding,
            steps=settings["steps"],
            guidance_scale=settings["guidance_scale"],
            shift=settings["shift"],
            width=settings["width"],
            height=settings["height"],
            seed=per_row(rows, "seed"),
            device=device,
        )
        return [made] if len(rows) == 1 else made

    def token_limit(self, pipe, settings: dict) -> int:
        from t2ibench.models.zimage import ZImageEncoding

        return ZImageEncoding().max_sequence_length

    def build_builtin(self, builtin: Builtin, target: Path, config_dir: Path | None) -> None:
        from t2ibench.models.zimage import save_tiny_zimage

        save_tiny_zimage(target)


FAMILY = ZImage()
