"""Whether each LoRA of a run fits its model, checked before the first job.

A LoRA of another family names none of the model's blocks, which the plan sees in the
file's keys (t2ibench.lora.resolve). A LoRA of another base of the same family (an SD 1.x
LoRA on an SD 2.x model, SD3 Medium's on SD3.5 Large) names the right blocks with the
wrong sizes, or blocks the model does not have; that shows only when the LoRA is loaded.
So before the first job the LoRA is loaded here by diffusers' own loader, the one the
generation job uses, onto the model's denoiser and text encoders built on the meta
device from their configs: no weights are read or allocated, and a LoRA that does not
fit fails the run in one line before any image is made. The generation job checks again
when it loads the LoRA (t2ibench.lora.load).

A model whose configs are not on disk yet (a built-in that a rule of this run makes) is
checked only by its generation job.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from pathlib import Path

from t2ibench.config import REPO_ROOT
from t2ibench.errors import InputError

log = logging.getLogger("t2ibench")

# The pipeline components diffusers' LoRA loaders adapt.
TARGETS = ("unet", "transformer", "text_encoder", "text_encoder_2", "text_encoder_3")
REPO_CONFIGS = REPO_ROOT / "config"  # the shipped base configs


def config_folder(spec) -> Path | None:
    """The diffusers folder whose configs describe a model (None when not on disk yet)."""
    checkpoint = Path(spec.checkpoint)
    if checkpoint.is_dir():
        return checkpoint if (checkpoint / "model_index.json").is_file() else None
    if spec.config_dir and (Path(spec.config_dir) / "model_index.json").is_file():
        return Path(spec.config_dir)
    if spec.shared_config and spec.config_dir:
        # A base config folder a rule of this run writes: the shipped one it copies.
        shipped = REPO_CONFIGS / Path(spec.config_dir).name
        return shipped if (shipped / "model_index.json").is_file() else None
    return None


@contextlib.contextmanager
def _quiet():
    """diffusers and transformers report on every (meta) load, and diffusers logs a LoRA
    that fails to load before raising: this check says it in one line instead."""
    import diffusers
    import transformers

    levels = diffusers.logging.get_verbosity(), transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    diffusers.logging.set_verbosity(logging.CRITICAL)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        diffusers.logging.set_verbosity(levels[0])
        transformers.logging.set_verbosity(levels[1])
        if bars:
            transformers.utils.logging.enable_progress_bar()


def meta_pipeline(folder: Path):
    """The folder's pipeline with its LoRA-adapted components on the meta device (the
    others left out): enough for diffusers' LoRA loaders, no weights."""
    import diffusers
    import torch
    import transformers

    index = json.loads((folder / "model_index.json").read_text())
    pipeline = getattr(diffusers, index["_class_name"])
    components = {name: None for name in index if not name.startswith("_")}
    for name in TARGETS:
        library, cls = (index.get(name) or [None, None])[:2]
        if not library or not cls or not (folder / name / "config.json").is_file():
            continue
        with torch.device("meta"):
            if library == "diffusers":
                model = getattr(diffusers, cls)
                components[name] = model.from_config(model.load_config(folder / name))
            else:
                config = transformers.AutoConfig.from_pretrained(folder / name)
                components[name] = getattr(transformers, cls)(config)
    pipe = pipeline.__new__(pipeline)  # its __init__ wants every component
    diffusers.DiffusionPipeline.__init__(pipe)
    pipe.register_modules(**components)
    return pipe


def meta_state_dict(file: str) -> dict:
    """A LoRA file's tensors as meta tensors of their shapes; scalars (kohya's alphas,
    which the converters read) with their values."""
    import torch
    from safetensors import safe_open

    out = {}
    with safe_open(file, "pt") as handle:
        for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
            shape = handle.get_slice(key).get_shape()
            if all(size == 1 for size in shape):
                out[key] = handle.get_tensor(key)
            else:
                out[key] = torch.empty(shape, device="meta")
    return out


def misfit(folder: Path, file: str) -> str | None:
    """Why a LoRA file does not fit the model of a config folder (None: it fits)."""
    from t2ibench import lora

    wanted = lora.lora_modules(lora.read_safetensors_header(Path(file)))
    with _quiet():
        try:
            pipe = meta_pipeline(folder)
        except Exception as err:  # noqa: BLE001 (not the LoRA's fault: its job checks it)
            log.debug("LoRA check skipped for %s: %s", folder, err)
            return None
        try:
            pipe.load_lora_weights(meta_state_dict(file), adapter_name="fit")
        except (ValueError, KeyError, RuntimeError, AttributeError) as err:
            return _reason(err)
    landed = lora.adapter_layers(pipe, "fit")
    if wanted and landed < wanted:
        return f"only {landed} of its {wanted} layers match the model"
    return None


def configs_digest(folder: Path) -> str:
    """What the check depends on in a config folder: its pipeline and the adapted
    components' configs."""
    digest = hashlib.sha256((folder / "model_index.json").read_bytes())
    for name in TARGETS:
        config = folder / name / "config.json"
        if config.is_file():
            digest.update(name.encode() + config.read_bytes())
    return digest.hexdigest()


def _reason(err: Exception) -> str:
    text = str(err)
    size = re.search(
        r"size mismatch for ([\w.]+?)(?:\.lora_[AB]\.[\w]+)?\.weight: copying a param with "
        r"shape torch\.Size\(\[([\d, ]+)\]\) from checkpoint, the shape in current model is "
        r"torch\.Size\(\[([\d, ]+)\]\)",
        text,
    )
    if size:
        layer, theirs, ours = size.groups()
        return f"layer {layer} has LoRA weights of shape [{theirs}], the model's take [{ours}]"
    if "Target modules" in text or type(err).__name__ == "NoMatchingPeftModuleError":
        return "none of its layers are in the model"
    first = text.splitlines()[0][:200] if text else type(err).__name__
    return first


def pairs(plan) -> list[tuple[str, object, dict]]:
    """(where, model spec, LoRA entry) of every LoRA of the plan, each pair once."""
    seen, out = set(), []
    for name, exp in plan.experiments.items():
        for cell in exp.cells:
            gen = plan.cell_settings(name, cell.name)
            for model_name in exp.models:
                model = plan.models[model_name]
                own = {file for file, _ in model.loras}
                for entry in plan.loras(model, gen):
                    key = (model_name, entry["sha256"])
                    if key in seen:
                        continue
                    seen.add(key)
                    where = (
                        f"config key 'models' (model '{model_name}')"
                        if entry["file"] in own
                        else f"experiment '{name}', cell '{cell.name}': key 'lora'"
                    )
                    out.append((where, model, entry))
    return out


def check_plan(plan) -> int:
    """Every LoRA of the plan fits its model; the first that does not is one line.
    Pairs that fit are remembered (resources/cache/lora-fit.json: model configs and LoRA
    by content). Returns how many pairs were loaded to check."""
    cache_file = Path(plan.config["resources_dir"]) / "cache" / "lora-fit.json"
    fits = set(_read_cache(cache_file))
    verdicts: dict[str, str | None] = {}
    for where, model, entry in pairs(plan):
        folder = config_folder(model)
        if folder is None:
            continue
        key = f"{configs_digest(folder)}:{entry['sha256']}"
        if key in fits:
            continue
        if key not in verdicts:
            verdicts[key] = misfit(folder, entry["file"])
        if verdicts[key]:
            raise InputError(
                f"{where}: LoRA file {entry['file']} does not fit model '{model.name}' "
                f"({verdicts[key]}); a LoRA of another base or model family?"
            )
    new = [key for key, reason in verdicts.items() if reason is None]
    if new:
        _write_cache(cache_file, sorted(fits | set(new)))
        log.debug("%d LoRA(s) checked: they fit their models", len(new))
    return len(verdicts)


def _read_cache(path: Path) -> list[str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [k for k in data.get("fit", []) if isinstance(k, str)] if isinstance(data, dict) else []


def _write_cache(path: Path, keys: list[str]) -> None:
    """Best effort: a cache that cannot be written is checked again next time."""
    from t2ibench.io import write_json

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {"fit": keys})
    except OSError as err:
        log.debug("LoRA check cache not written: %s", err)
