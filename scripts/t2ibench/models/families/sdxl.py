"""SDXL: UNet, two CLIP text encoders, A1111-style samplers.

Single files in Stability's original layout load with the shipped base configs
(config/sdxl-base) or a config folder of the user's; diffusers folders load whole. The
built-in tiny models are written in the original layout and read back through the same
single-file loader (t2ibench.models.single_file, t2ibench.models.tiny).
"""

from __future__ import annotations

from pathlib import Path

from t2ibench.errors import InputError
from t2ibench.models.families.base import (
    Builtin,
    Family,
    Resolved,
    Setting,
    negative_rows,
    per_row,
    seeded_generators,
    text_layers,
)
from t2ibench.samplers import SAMPLERS, ZERO_SNR

REPO_CONFIGS = Path(__file__).resolve().parents[4] / "config"
TINY_TEXT_LAYERS = 4  # t2ibench.models.tiny.TEXT_LAYERS (tests check they agree)

# CLIP skip (diffusers' count: None reads hidden state -2, k reads -(k + 2); A1111 writes
# k + 1) and guidance rescale (0 = off; 0.7 is the usual value for v-prediction models).
CLIP_SKIP = Setting(
    "clip_skip",
    None,
    {"type": "integer", "minimum": 1},
    "CLIP skip, diffusers' count (1 = the penultimate layer, A1111's 'clip skip 2').",
    infotext=("Clip skip", lambda v: str(v + 1)),  # A1111 counts the last layer as 1
)
GUIDANCE_RESCALE = Setting(
    "guidance_rescale",
    0.0,
    {"type": "number", "minimum": 0, "maximum": 1},
    "Guidance rescale (0 = off; 0.7 is usual for v-prediction models).",
    infotext=("Guidance rescale", str),
)
ZERO_TERMINAL_SNR = Setting(
    "zero_terminal_snr",
    False,
    {"type": "boolean"},
    "Rescale betas to zero terminal SNR (for v-prediction models); euler, euler_a, "
    "dpmpp_2m*, ddim and unipc only.",
    infotext=("Noise Schedule", lambda v: "Zero Terminal SNR"),
)


class UNetFamily(Family):
    """What SDXL and SD 1.x/2.x share: CLIP text encoders, a UNet, every sampler of
    t2ibench.samplers, clip skip, guidance rescale, zero terminal SNR, single files in
    the original layout."""

    settings = (CLIP_SKIP, GUIDANCE_RESCALE, ZERO_TERMINAL_SNR)
    samplers = ("euler_a", *(s for s in SAMPLERS if s != "euler_a"))
    lora = True
    lora_keys = (
        r"(down_blocks|up_blocks|mid_block|input_blocks|output_blocks|middle_block|lora_te"
        r"|^text_encoder|^unet\.)"
    )
    pipeline_class = ""  # the diffusers pipeline
    transformers_classes = ("CLIPTextModel", "CLIPTextModelWithProjection", "CLIPTokenizer")
    base_config = ""  # the shipped config folder a single file loads with by default

    def check_settings(self, settings: dict, where: str) -> None:
        super().check_settings(settings, where)
        sampler = self.sampler(settings)
        if settings.get("zero_terminal_snr") and SAMPLERS[sampler][0] not in ZERO_SNR:
            raise InputError(
                f"{where}zero_terminal_snr': sampler '{sampler}' does not support it; use "
                f"one of: {', '.join(n for n, (c, _) in SAMPLERS.items() if c in ZERO_SNR)}"
            )

    def check_layers(self, settings: dict, n_layers: int, model: str, where: str) -> None:
        clip_skip = settings.get("clip_skip")
        if clip_skip is not None and not 1 <= clip_skip <= n_layers - 1:
            raise InputError(
                f"{where}clip_skip': {clip_skip} is out of range for model '{model}', whose "
                f"text encoders have {n_layers} layers (valid: 1 to {n_layers - 1}, or null "
                "for none)"
            )

    # --- resolving -----------------------------------------------------------------
    def shipped_config(self, entry: dict, header: dict | None) -> str:
        """The shipped base config folder a single file of this family loads with."""
        return self.base_config

    def resolve_file(self, entry: dict, path: Path, header: dict, resources_dir: str) -> Resolved:
        return self._configured(entry, header, resources_dir)

    def resolve_download(self, entry: dict, resources_dir: str) -> Resolved:
        return self._configured(entry, None, resources_dir)

    def _configured(self, entry: dict, header: dict | None, resources_dir: str) -> Resolved:
        """A single file's config folder: the entry's `config`, else a shipped base."""
        config_dir = entry.get("config")
        if config_dir:
            return Resolved(config_dir=str(config_dir), text_layers=text_layers(Path(config_dir)))
        base = self.shipped_config(entry, header)
        return Resolved(
            config_dir=str(Path(resources_dir) / "configs" / base),
            shared_config=True,
            text_layers=text_layers(REPO_CONFIGS / base),
        )

    # --- loading and generating ----------------------------------------------------------
    def load(self, spec, torch_dtype):
        import diffusers

        pipeline = getattr(diffusers, self.pipeline_class)
        if spec.kind == "diffusers":
            return pipeline.from_pretrained(
                spec.checkpoint, dtype=torch_dtype, local_files_only=True, use_safetensors=True
            )
        return self.load_single_file(Path(spec.checkpoint), Path(spec.config_dir), torch_dtype)

    def load_single_file(self, path: Path, config_dir: Path, torch_dtype):
        raise NotImplementedError

    def call_arguments(self, pipe, settings: dict) -> dict:
        return {
            "guidance_rescale": settings["guidance_rescale"],
            "clip_skip": settings["clip_skip"],
        }

    batches = True

    def make_images(self, pipe, scheduler_config: dict, rows: list[dict], device: str):
        from t2ibench.samplers import make_scheduler

        settings = rows[0]
        pipe.scheduler = make_scheduler(
            settings["sampler"],
            scheduler_config,
            settings["prediction_type"],
            seed=settings["seed"],
            zero_snr=settings["zero_terminal_snr"],
        )
        arguments = {
            "prompt": per_row(rows, "prompt"),
            "negative_prompt": negative_rows(rows),
            "num_inference_steps": settings["steps"],
            "guidance_scale": settings["guidance_scale"],
            "width": settings["width"],
            "height": settings["height"],
            "generator": seeded_generators(rows),
        }
        return pipe(**{**arguments, **self.call_arguments(pipe, settings)}).images


class SDXL(UNetFamily):
    name = "sdxl"
    label = "SDXL"
    steps, guidance_scale, width, height = 28, 5.0, 1024, 1024
    pipelines = ("StableDiffusionXLPipeline",)
    pipeline_class = "StableDiffusionXLPipeline"
    diffusers_classes = ("StableDiffusionXLPipeline", "UNet2DConditionModel", "AutoencoderKL")
    base_config = "sdxl-base"
    base_configs = ("sdxl-base",)
    builtins = (
        Builtin("tiny-sdxl", "sdxl", "file", TINY_TEXT_LAYERS, None),
        Builtin("tiny-sdxl-vpred", "sdxl", "file", TINY_TEXT_LAYERS, "v_prediction"),
    )

    def recognise_file(self, header: dict) -> bool:
        from t2ibench.models.single_file import TEXT_ENCODER_2_PREFIX

        return any(k.startswith(TEXT_ENCODER_2_PREFIX) for k in header)

    def load_single_file(self, path: Path, config_dir: Path, torch_dtype):
        from t2ibench.models.single_file import load_sdxl_single_file

        return load_sdxl_single_file(path, config_dir, torch_dtype)

    def build_builtin(self, builtin: Builtin, target: Path, config_dir: Path | None) -> None:
        from t2ibench.models.tiny import materialise_builtin

        materialise_builtin(builtin.id, target, config_dir)

    def build_base_config(self, name: str, folder: Path) -> None:
        from t2ibench.models.sdxl_config import materialise_sdxl_config

        materialise_sdxl_config(folder)


FAMILY = SDXL()
