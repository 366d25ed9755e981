"""Any other diffusers text-to-image pipeline: a diffusers folder loaded through diffusers'
own AutoPipelineForText2Image (PixArt, Sana, Lumina 2, Chroma, AuraFlow, Qwen-Image, ...).

Such a model takes the settings every text-to-image pipeline takes (steps, guidance,
size, seed, a negative prompt and LoRAs where the pipeline has them) and the pipeline's own
defaults: steps and guidance from its `__call__` signature, the size from its configs
(the denoiser's `sample_size` times the VAE's scale factor, as the pipelines compute
it), its own scheduler. All of that is read from diffusers' source and the folder's JSON
files while the plan is made: nothing is imported then.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import inspect
import re
from pathlib import Path

from t2ibench.errors import InputError
from t2ibench.models.families.base import (
    Builtin,
    Family,
    Resolved,
    negative_rows,
    per_row,
    read_json,
    seeded_generators,
    text_layers,
)


@functools.cache
def _pipelines_dir() -> Path:
    return Path(importlib.util.find_spec("diffusers").origin).parent / "pipelines"


@functools.cache
def text_to_image_pipelines() -> frozenset[str]:
    """The pipeline classes of diffusers' AutoPipelineForText2Image, read from its source."""
    text = (_pipelines_dir() / "auto_pipeline.py").read_text(encoding="utf-8")
    block = text.split("AUTO_TEXT2IMAGE_PIPELINES_MAPPING = OrderedDict(", 1)[1].split("\n)", 1)[0]
    names = set(re.findall(r'\(\s*"[^"]+",\s*(\w+)\s*\)', block))
    # ... and the entries added where optional libraries are there (Kolors: sentencepiece)
    names |= set(re.findall(r'AUTO_TEXT2IMAGE_PIPELINES_MAPPING\["[^"]+"\]\s*=\s*(\w+)', text))
    return frozenset(names)


def _subpackage(class_name: str) -> Path | None:
    """The pipelines subpackage whose `_import_structure` entry lists the class (in
    diffusers' pipelines/__init__.py), or None."""
    text = (_pipelines_dir() / "__init__.py").read_text(encoding="utf-8")
    at = text.find(f'"{class_name}"')
    keys = re.findall(r'_import_structure\["([\w.]+)"\]', text[:at]) if at >= 0 else []
    folder = _pipelines_dir().joinpath(*keys[-1].split(".")) if keys else None
    return folder if folder is not None and folder.is_dir() else None


@functools.cache
def _class_node(class_name: str) -> ast.ClassDef | None:
    """A pipeline class's definition in diffusers' source (its subpackage first)."""
    pattern = re.compile(rf"^class {class_name}\(", re.MULTILINE)
    first = _subpackage(class_name)
    paths = sorted(first.rglob("pipeline_*.py")) if first else []
    for path in [*paths, *sorted(_pipelines_dir().rglob("pipeline_*.py"))]:
        text = path.read_text(encoding="utf-8")
        if not pattern.search(text):
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.name == class_name:
                return node
    return None


@functools.cache
def _call_defaults(class_name: str) -> dict:
    """The literal defaults of a pipeline class's __call__, from its source file."""
    for item in getattr(_class_node(class_name), "body", []):
        if isinstance(item, ast.FunctionDef) and item.name == "__call__":
            return _defaults(item.args)
    return {}


@functools.cache
def takes_lora(class_name: str) -> bool:
    """Whether a pipeline class has one of diffusers' LoRA loaders (`...LoraLoaderMixin`),
    its own or a base pipeline's."""
    bases = [getattr(b, "id", "") for b in getattr(_class_node(class_name), "bases", [])]
    return any(
        b.endswith("LoraLoaderMixin") or (b.endswith("Pipeline") and takes_lora(b)) for b in bases
    )


@functools.cache
def required_components(class_name: str) -> tuple[str, ...] | None:
    """The components a pipeline class cannot load without, read from its source as
    diffusers' from_pretrained decides it: its __init__'s parameters without a default,
    less its `_optional_components`. None when its source does not say (no class, or no
    __init__ of its own)."""
    if not class_name.isidentifier():
        return None
    node = _class_node(class_name)
    body = getattr(node, "body", [])
    init = next((i for i in body if isinstance(i, ast.FunctionDef) and i.name == "__init__"), None)
    if init is None:
        return None
    optional: set[str] = set()
    for item in node.body:
        targets = item.targets if isinstance(item, ast.Assign) else []
        if any(getattr(t, "id", "") == "_optional_components" for t in targets):
            try:
                optional = set(ast.literal_eval(item.value))
            except ValueError:
                return None
    positional = init.args.args[1 : len(init.args.args) - len(init.args.defaults)]
    pairs = zip(init.args.kwonlyargs, init.args.kw_defaults, strict=True)
    keyword = [arg for arg, default in pairs if default is None]
    return tuple(a.arg for a in [*positional, *keyword] if a.arg not in optional)


def _defaults(args: ast.arguments) -> dict:
    out = {}
    positional = args.args[len(args.args) - len(args.defaults) :]
    pairs = [*zip(positional, args.defaults, strict=True)]
    pairs += zip(args.kwonlyargs, args.kw_defaults, strict=True)
    for arg, default in pairs:
        try:
            out[arg.arg] = ast.literal_eval(default) if default is not None else None
        except ValueError:
            continue
    return out


def vae_scale_factor(vae: dict) -> int:
    """2 ** (levels - 1): AutoencoderKL's block_out_channels, a DC-AE's encoder blocks."""
    channels = vae.get("block_out_channels") or vae.get("encoder_block_out_channels") or [0] * 4
    return 2 ** (len(channels) - 1)


class Diffusers(Family):
    name = "diffusers"
    label = "diffusers pipeline"
    samplers = ("scheduler",)  # the pipeline's own
    builtins = (
        Builtin("tiny-pixart-sigma", "diffusers", "folder"),
        Builtin("tiny-chroma", "diffusers", "folder"),
    )
    denoiser = "transformer"
    own_defaults = False
    diffusers_classes = ("AutoPipelineForText2Image",)

    def accepts_folder(self, path: Path, model_index: dict) -> bool:
        pipeline = model_index.get("_class_name", "")
        if pipeline in text_to_image_pipelines():
            return True
        known = (_pipelines_dir() / "__init__.py").read_text(encoding="utf-8")
        if re.search(rf'"{re.escape(pipeline)}"', known):
            raise InputError(
                f"model folder {path}: its pipeline '{pipeline}' is not a text-to-image "
                "pipeline (diffusers' AutoPipelineForText2Image does not take it)"
            )
        return False

    def resolve_folder(self, path: Path, model_index: dict) -> Resolved:
        pipeline = model_index.get("_class_name", "")
        if pipeline not in text_to_image_pipelines():
            self.accepts_folder(path, model_index)
            raise InputError(f"model folder {path}: unsupported pipeline '{pipeline}'")
        call = _call_defaults(pipeline)
        defaults = {
            "steps": call.get("num_inference_steps"),
            "guidance_scale": call.get("guidance_scale"),
            "width": call.get("width"),
            "height": call.get("height"),
        }
        for denoiser in ("transformer", "unet", "prior"):
            config = path / denoiser / "config.json"
            if config.is_file() and (path / "vae" / "config.json").is_file():
                size = read_json(config).get("sample_size")
                if isinstance(size, int):
                    side = size * vae_scale_factor(read_json(path / "vae" / "config.json"))
                    defaults["width"] = defaults["width"] or side
                    defaults["height"] = defaults["height"] or side
                break
        defaults = {k: v for k, v in defaults.items() if isinstance(v, int | float)}
        scheduler = model_index.get("scheduler") or [None, ""]
        if str(scheduler[1]).startswith("FlowMatch"):
            prediction = ("flow_matching", f"the pipeline's scheduler is {scheduler[1]}")
        else:
            config = path / "scheduler" / "scheduler_config.json"
            kind = read_json(config).get("prediction_type") if config.is_file() else None
            prediction = (kind or "epsilon", "scheduler config" if kind else "default")
        return Resolved(
            text_layers=text_layers(path),
            defaults=tuple(sorted(defaults.items())),
            prediction_type=prediction[0],
            prediction_reason=prediction[1],
            negative_prompt="negative_prompt" in call,
            lora=takes_lora(pipeline),
        )

    def resolve_builtin(self, builtin: Builtin, resources_dir: str) -> Resolved:
        # The built-ins' settings are their pipelines' (PixArt-Sigma: 20 steps, guidance
        # 4.5; Chroma: 35 steps, guidance 5.0), at the tiny models' 64 px.
        pipeline = {"tiny-pixart-sigma": "PixArtSigmaPipeline", "tiny-chroma": "ChromaPipeline"}
        call = _call_defaults(pipeline[builtin.id])
        defaults = (
            ("guidance_scale", call["guidance_scale"]),
            ("height", 64),
            ("steps", call["num_inference_steps"]),
            ("width", 64),
        )
        flow = builtin.id == "tiny-chroma"
        return Resolved(
            defaults=defaults,
            lora=takes_lora(pipeline[builtin.id]),
            prediction_type="flow_matching" if flow else "epsilon",
            prediction_reason="the pipeline's scheduler" if flow else "default",
        )

    def load(self, spec, torch_dtype):
        from diffusers import AutoPipelineForText2Image

        return AutoPipelineForText2Image.from_pretrained(
            spec.checkpoint, dtype=torch_dtype, local_files_only=True, use_safetensors=True
        )

    batches = True

    def make_images(self, pipe, scheduler_config: dict, rows: list[dict], device: str):
        settings = rows[0]
        takes = inspect.signature(pipe.__call__).parameters
        extra = {}
        if "negative_prompt" in takes and settings["negative_prompt"]:
            extra["negative_prompt"] = negative_rows(rows)
        return pipe(
            prompt=per_row(rows, "prompt"),
            num_inference_steps=settings["steps"],
            guidance_scale=settings["guidance_scale"],
            width=settings["width"],
            height=settings["height"],
            generator=seeded_generators(rows),
            **extra,
        ).images

    def token_limit(self, pipe, settings: dict) -> int:
        length = _call_defaults(type(pipe).__name__).get("max_sequence_length")
        return length if isinstance(length, int) else pipe.tokenizer.model_max_length - 2

    def build_builtin(self, builtin: Builtin, target: Path, config_dir: Path | None) -> None:
        from t2ibench.models.tiny_generic import save_tiny_generic

        save_tiny_generic(builtin.id, target)


FAMILY = Diffusers()
