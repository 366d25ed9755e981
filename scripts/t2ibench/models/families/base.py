"""What a model family provides: the interface each module of this package implements.

A family is everything particular to one kind of model: the generation settings it
accepts (with defaults, schema and infotext field), the defaults users copy from model
cards (steps, guidance, size), its samplers, how a file or folder is recognised as one of
its models, how it loads, its built-in tiny models, the generation call and its prompt
token limit. The rest of t2ibench asks the family (``families.get(spec.family)``), never
which family it is.

This module and the families' own modules stay light (no torch at import): the plan uses
them while the Snakefile is parsed. What needs torch is imported inside the methods.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from t2ibench.errors import InputError


@dataclass(frozen=True)
class Setting:
    """A generation setting of a family: a `generation:` key (and experiment axis).

    `default` is the value when the config leaves it null. `schema` is the JSON schema of
    a value (null is always allowed: it means the default). `infotext` names its field in
    the PNG's parameters text and formats it; the field is written when the value differs
    from the default, or always (`always`)."""

    key: str
    default: object
    schema: dict
    description: str = ""
    infotext: tuple[str, Callable[[object], str]] | None = None
    always: bool = False

    def json_schema(self) -> dict:
        schema = dict(self.schema)
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
        else:
            types = schema.get("type", [])
            types = [types] if isinstance(types, str) else list(types)
            schema["type"] = [*types, "null"] if types else ["null"]
        schema["default"] = None
        if self.description:
            schema["description"] = self.description
        return schema


@dataclass(frozen=True)
class Builtin:
    """A built-in tiny model: random weights from a config, made by a rule, loaded by the
    same code as a user's checkpoint. `layout` is "file" (one original-layout
    .safetensors plus a config folder) or "folder" (a diffusers folder)."""

    id: str
    family: str
    layout: str
    text_layers: int | None = None
    prediction_type: str | None = None
    settings: dict = field(default_factory=dict)  # what `build` needs beyond the id


@dataclass(frozen=True)
class Resolved:
    """What a family says about one of its model files or folders (the rest of a
    ModelSpec comes from the config entry)."""

    config_dir: str | None = None
    shared_config: bool = False  # config_dir is a base config folder a rule makes
    text_layers: int | None = None
    prediction_type: str | None = None  # when the family knows it (flow matching)
    prediction_reason: str = ""
    # Defaults of this model that differ from its family's (an SD 2.x file: 768 px).
    defaults: tuple[tuple[str, object], ...] = ()
    negative_prompt: bool = True  # whether its pipeline takes one (else "" is recorded)
    lora: bool | None = None  # whether it takes LoRAs, where its pipeline says (else the family)


class Family:
    """The defaults of every family; each module overrides what is its own."""

    name: str = ""
    label: str = ""  # "SDXL", as said in messages
    settings: tuple[Setting, ...] = ()
    # Model-card defaults for what every family takes (generation keys left null).
    steps: int = 28
    guidance_scale: float = 5.0
    width: int = 1024
    height: int = 1024
    # Width and height a multiple of this: the VAE's scale, times 2 where the denoiser
    # packs 2x2 latent patches (its pipeline refuses or resizes other sizes).
    size_multiple: int = 8
    # Samplers a config may choose (t2ibench.samplers); one entry: the family's own, fixed.
    samplers: tuple[str, ...] = ()
    pipelines: tuple[str, ...] = ()  # model_index.json `_class_name`s of its folders
    builtins: tuple[Builtin, ...] = ()
    # Base config folders (resources/configs/<name>) a rule writes for single files.
    base_configs: tuple[str, ...] = ()
    # Where the denoiser sits on its pipeline; generation.attention applies to transformers.
    denoiser: str = "unet"
    attention_backends: bool = False
    fuse_qkv: bool = True  # its denoiser has diffusers' fuse_qkv_projections
    text_encoder_device: bool = False  # memory.text_encoder_device is supported
    negative_prompt: bool = True
    lora: bool = False  # diffusers' LoRA loaders serve its pipelines
    # A LoRA of this family has at least one key matching this (kohya or PEFT names of
    # its blocks); a file with none is a LoRA of another family, refused before the run.
    lora_keys: str = ""
    # False: steps, guidance and size come from each model's pipeline (Resolved.defaults).
    own_defaults: bool = True
    # Classes imported once before jobs run as threads (lazy modules are not thread-safe
    # on first use; t2ibench.steps.load_libraries).
    diffusers_classes: tuple[str, ...] = ()
    transformers_classes: tuple[str, ...] = ()

    # --- settings ------------------------------------------------------------------
    @property
    def setting_keys(self) -> set[str]:
        keys = {s.key for s in self.settings}
        if len(self.samplers) > 1:
            keys.add("sampler")
        return keys

    def defaults(self) -> dict:
        return {s.key: s.default for s in self.settings}

    def family_settings(self, generation: dict, model_defaults=()) -> dict:
        """The family's own settings of one image, as applied: the config's, else the
        model's defaults (`Resolved.defaults`), else the family's."""
        defaults = dict(model_defaults)
        return {
            s.key: generation[s.key]
            if generation.get(s.key) is not None
            else defaults.get(s.key, s.default)
            for s in self.settings
        }

    def unused_components(self, settings: list[dict]) -> tuple[str, ...]:
        """Pipeline components none of these images (their family settings) uses, left
        out when the model loads (memory); leaving them out changes no pixel."""
        return ()

    def sampler(self, generation: dict) -> str:
        if len(self.samplers) == 1:
            return self.samplers[0]
        return generation.get("sampler") or self.samplers[0]

    def common_settings(self, generation: dict, model_defaults=()) -> dict:
        """Steps, guidance, size: the config's, else the model's, else the family's."""
        defaults = dict(model_defaults)

        def pick(key):
            value = generation.get(key)
            return defaults.get(key, getattr(self, key)) if value is None else value

        return {
            "steps": pick("steps"),
            "guidance_scale": float(pick("guidance_scale")),
            "width": pick("width"),
            "height": pick("height"),
        }

    def check_settings(self, settings: dict, where: str) -> None:
        """Checks of one image's settings beyond their schema (`where` starts a message
        that the key and a closing quote end)."""
        sampler = settings.get("sampler")
        if len(self.samplers) > 1 and sampler is not None and sampler not in self.samplers:
            raise InputError(
                f"{where}sampler': '{sampler}' is not a sampler of {self.label} models; "
                f"expected one of: {', '.join(self.samplers)}"
            )

    def check_layers(self, settings: dict, n_layers: int, model: str, where: str) -> None:
        """Settings that pick a text-encoder layer must exist in the model (n layers)."""

    def infotext_fields(self, settings: dict) -> list[tuple[str, str]]:
        out = []
        for s in self.settings:
            value = settings.get(s.key)
            if s.infotext is None or s.key not in settings or value is None:
                continue
            if s.always or value != s.default:
                out.append((s.infotext[0], s.infotext[1](value)))
        return out

    # --- recognising and resolving models (light) -------------------------------------
    def recognise_file(self, header: dict) -> bool:
        """Whether a single-file checkpoint's keys are this family's."""
        return False

    def refuse_file(self, header: dict, path: Path) -> None:
        """Raise for a file that is this family's but cannot be loaded as one file."""

    def accepts_folder(self, path: Path, model_index: dict) -> bool:
        """Whether a diffusers folder is this family's (by its pipeline class)."""
        return model_index.get("_class_name", "") in self.pipelines

    def resolve_file(self, entry: dict, path: Path, header: dict, resources_dir: str) -> Resolved:
        raise InputError(
            f"model file {path}: {self.label} models load from a diffusers folder, not a "
            "single file"
        )

    def resolve_folder(self, path: Path, model_index: dict) -> Resolved:
        return Resolved(text_layers=text_layers(path))

    def resolve_builtin(self, builtin: Builtin, resources_dir: str) -> Resolved:
        return Resolved(text_layers=builtin.text_layers)

    def resolve_download(self, entry: dict, resources_dir: str) -> Resolved:
        raise InputError(
            f"config key 'models': {entry['source']}: {self.label} models are not "
            "downloaded as one file; download the model folder and point source at it"
        )

    def prediction(self) -> tuple[str, str] | None:
        """(prediction type, why) when the family fixes it (flow matching)."""
        return None

    # --- heavy: loading and generating (torch imported inside) --------------------------
    def load(self, spec, torch_dtype):
        """The pipeline of a ModelSpec of this family."""
        raise NotImplementedError

    def place(self, pipe, device: str, memory: dict) -> None:
        """Family-particular placement after the pipeline is on its device."""

    # Whether the family makes images in batches (generation key batch_size, see
    # t2ibench.batching): its make_images takes rows that differ in prompt and seed only.
    batches = False

    def make_image(self, pipe, scheduler_config: dict, settings: dict, device: str):
        return self.make_images(pipe, scheduler_config, [settings], device)[0]

    def make_images(self, pipe, scheduler_config: dict, rows: list[dict], device: str):
        """The images of `rows` (settings alike but for prompt and seed), in one call."""
        raise NotImplementedError

    def count_tokens(self, pipe, prompt: str) -> int:
        tokenizer = pipe.tokenizer
        return len(tokenizer(prompt, truncation=False, add_special_tokens=False)["input_ids"])

    def token_limit(self, pipe, settings: dict) -> int:
        """Prompt tokens the text encoder sees before truncation."""
        return pipe.tokenizer.model_max_length - 2  # CLIP: 77 minus start and end tokens

    def build_builtin(self, builtin: Builtin, target: Path, config_dir: Path | None) -> None:
        """Write a built-in: `target` is its checkpoint (layout file) or folder."""
        raise NotImplementedError

    def build_base_config(self, name: str, folder: Path) -> None:
        raise NotImplementedError


class TransformerFileFamily(Family):
    """A family whose models load from a diffusers folder, or as one transformer file
    (the original keys) with the other components from a local diffusers folder given as
    `models[].config` (FLUX.1, SD3)."""

    pipeline_class = ""  # the diffusers pipeline (also the folder's `_class_name`)
    transformer_class = ""
    file_label = ""  # "a FLUX.1", as said in messages
    example = ""  # the folder to name in the message for a file without one

    def resolve_file(self, entry: dict, path: Path, header: dict, resources_dir: str) -> Resolved:
        folder = entry.get("config")
        if not folder:
            raise InputError(
                f"model file {path}: {self.file_label} transformer checkpoint; its text "
                "encoders, VAE and scheduler come from a diffusers folder: set "
                f"models[].config to one (e.g. a download of {self.example})"
            )
        if read_json(Path(folder) / "model_index.json").get("_class_name") != self.pipeline_class:
            raise InputError(
                f"config key 'models[].config': {folder} is not {self.file_label} diffusers "
                f"folder (model_index.json does not name {self.pipeline_class})"
            )
        return Resolved(config_dir=str(folder), text_layers=text_layers(Path(folder)))

    def load(self, spec, torch_dtype):
        import diffusers

        pipeline = getattr(diffusers, self.pipeline_class)
        left_out = dict.fromkeys(spec.unused)  # e.g. text_encoder_3=None
        if spec.kind != "single_file":
            return pipeline.from_pretrained(
                spec.checkpoint,
                dtype=torch_dtype,
                local_files_only=True,
                use_safetensors=True,
                **left_out,
            )
        from t2ibench.models.checks import check_checkpoint

        check_checkpoint(Path(spec.checkpoint))
        transformer = getattr(diffusers, self.transformer_class).from_single_file(
            spec.checkpoint,
            config=spec.config_dir,
            subfolder="transformer",
            torch_dtype=torch_dtype,
            local_files_only=True,
        )
        return pipeline.from_pretrained(
            spec.config_dir,
            transformer=transformer,
            dtype=torch_dtype,
            local_files_only=True,
            use_safetensors=True,
            **left_out,
        )


def read_json(path: Path) -> dict:
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # ValueError: not JSON, or not UTF-8
        raise InputError(f"model folder file {path}: missing or not valid JSON") from None
    if not isinstance(data, dict):
        raise InputError(f"model folder file {path}: expected a JSON object ({{...}})")
    return data


def text_layers(path: Path) -> int | None:
    """The text encoders' layer count from a diffusers (config) folder, without loading
    them: the smallest over text_encoder, text_encoder_2, ... (None when none says)."""
    counts = [
        read_json(config).get("num_hidden_layers")
        for config in sorted(Path(path).glob("text_encoder*/config.json"))
    ]
    counts = [n for n in counts if isinstance(n, int)]
    return min(counts) if counts else None


def per_row(rows: list[dict], key: str):
    """A setting of one image as it is, of a batch as a list (one image's call stays
    what it always was)."""
    return rows[0][key] if len(rows) == 1 else [r[key] for r in rows]


def negative_rows(rows: list[dict]):
    """The negative prompt as the pipeline takes it beside `per_row`'s prompt (None:
    none)."""
    return per_row(rows, "negative_prompt") if rows[0]["negative_prompt"] else None


def seeded_generators(rows: list[dict]):
    """One seeded generator per image: each image's initial noise is its seed's."""
    if len(rows) == 1:
        return seeded_generator(rows[0]["seed"])
    return [seeded_generator(r["seed"]) for r in rows]


def seeded_generator(seed: int):
    """The initial noise comes from a CPU generator: the same seed gives the same latents
    on any device."""
    import torch

    return torch.Generator("cpu").manual_seed(seed)
