"""Resolve `models[]` config entries into ModelSpecs, cheaply and without torch.

This runs when the Snakefile is parsed (also for `snakemake -n`), so it only reads
safetensors headers and small JSON files; weights are never touched here.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path

from t2ibench.errors import InputError
from t2ibench.models import families
from t2ibench.models.checks import (
    PICKLE_SUFFIXES,
    check_checkpoint,
    check_components,
    check_model_index,
    check_vae_latents,
    has_vpred_key,
)
from t2ibench.models.families.base import Resolved, read_json
from t2ibench.models.families.diffusers import required_components

BUILTIN_PREFIX = "builtin:"
# Built-ins written as one original-layout file plus a config folder, and as diffusers
# folders (each family lists its own; parsing a config never imports torch).
BUILTIN_IDS = tuple(families.builtin_ids("file"))
BUILTIN_FOLDER_IDS = tuple(families.builtin_ids("folder"))
VPRED_NAME = re.compile(r"v[-_]?pred(iction)?", re.IGNORECASE)
URL_PREFIXES = ("https://", "http://")
HF_PREFIX = "hf:"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str
    kind: str  # "builtin", "single_file" or "diffusers"
    checkpoint: str  # the .safetensors file, or the diffusers folder
    config_dir: str | None  # local diffusers config folder for single-file loading
    family: str
    prediction_type: str
    prediction_reason: str
    shared_config: bool = False  # config_dir is a family's base config folder a rule makes
    # Layers of the text encoder (the shallowest of several), when known: settings
    # that pick a layer (clip_skip, hidden_layer) are checked against it.
    text_layers: int | None = None
    # Defaults of this model that differ from its family's ((key, value), ...).
    defaults: tuple = ()
    loras: tuple = ()  # its own LoRAs, stacked: ((file, weight), ...)
    negative_prompt: bool = True  # its pipeline takes a negative prompt
    lora: bool = False  # diffusers' LoRA loaders serve its pipeline
    # Pipeline components left out when it loads: no planned image uses them (SD3's T5
    # where every cell sets t5: false; t2ibench.plan).
    unused: tuple[str, ...] = ()
    vae: str | None = None  # a VAE file or folder replacing the checkpoint's own
    url: str | None = None  # where a downloaded checkpoint comes from
    sha256: str | None = None  # its expected digest, when the config gives one

    @property
    def input_files(self) -> list[str]:
        """Files the generation rule depends on (so Snakemake materialises builtins)."""
        if self.kind == "diffusers":
            return [str(Path(self.checkpoint) / "model_index.json")]
        if self.shared_config:
            return [self.checkpoint, self.config_dir]
        # A built-in's config folder comes from the same job as its checkpoint; a user's
        # own config folder is not a rule output.
        return [self.checkpoint, *([self.vae] if self.vae else [])]


def _spec(entry: dict, kind, checkpoint, family: str, resolved: Resolved, header=None, **extra):
    """The ModelSpec of a config entry from what its family resolved."""
    fixed = families.get(family).prediction()
    if entry.get("prediction_type"):
        prediction = entry["prediction_type"], "set in config"
    elif resolved.prediction_type:
        prediction = resolved.prediction_type, resolved.prediction_reason
    elif fixed:
        prediction = fixed
    else:
        # A folder's scheduler says; a single file's config folder does not (diffusers
        # does not read a checkpoint's prediction type from it either).
        scheduler = None
        config = Path(checkpoint) / "scheduler" / "scheduler_config.json"
        if kind == "diffusers" and config.is_file():
            scheduler = read_json(config)
        prediction = _prediction_type(entry, header, scheduler)
    return ModelSpec(
        name=entry["name"],
        source=entry["source"],
        kind=kind,
        checkpoint=str(checkpoint),
        config_dir=resolved.config_dir,
        family=family,
        prediction_type=prediction[0],
        prediction_reason=prediction[1],
        shared_config=resolved.shared_config,
        text_layers=resolved.text_layers,
        defaults=resolved.defaults,
        negative_prompt=resolved.negative_prompt,
        lora=families.get(family).lora if resolved.lora is None else resolved.lora,
        **extra,
    )


def base_config_dir(resources_dir: str, name: str) -> str:
    """A family's base config folder (shipped configs + offline tokenizers), made by a rule."""
    return str(Path(resources_dir) / "configs" / name)


# Where the built-in models are materialised, by the version of their definitions (the
# tiny SDXL text encoders got a fourth layer in v2): a changed built-in is built anew,
# beside (not over) the files an earlier version left.
BUILTIN_FOLDER = "models/builtin-v2"


def builtin_dir(resources_dir: str) -> Path:
    return Path(resources_dir) / BUILTIN_FOLDER


def builtin_paths(resources_dir: str, builtin_id: str) -> tuple[str, str]:
    base = builtin_dir(resources_dir)
    return str(base / f"{builtin_id}.safetensors"), str(base / f"{builtin_id}.config")


def _prediction_type(entry: dict, header: dict | None, scheduler_config: dict | None):
    """The name, then a `v_pred` key, then the scheduler config (the config entry's
    `prediction_type` comes first, in _spec)."""
    for text in (entry["name"], Path(entry["source"]).name):
        match = VPRED_NAME.search(text)
        if match:
            return "v_prediction", f"name contains '{match.group(0)}'"
    if header is not None and has_vpred_key(header):
        return "v_prediction", "checkpoint has a 'v_pred' key"
    if scheduler_config and scheduler_config.get("prediction_type"):
        return scheduler_config["prediction_type"], "scheduler config"
    return "epsilon", "default"


def resolve_model(entry: dict, where: int | str, resources_dir: str) -> ModelSpec:
    """Resolve one entry; `where` (an index into `models`, or a label) names it in errors."""
    where = f"models[{where}]" if isinstance(where, int) else where
    key = f"{where}.source" if where.startswith("models[") else where
    source = entry["source"]
    if source.startswith(BUILTIN_PREFIX):
        return _resolve_builtin(entry, key, resources_dir)
    if source.startswith(URL_PREFIXES):
        return _resolve_url(entry, where, resources_dir)
    path = (
        Path(hf_cached_folder(source[len(HF_PREFIX) :], key))
        if source.startswith(HF_PREFIX)
        else Path(source)
    )
    if not path.exists():
        raise InputError(f"config key '{key}': {source} does not exist")
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise InputError(
                f"config key '{key}': folder {source} is not a diffusers model "
                "(no model_index.json)"
            )
        model_index = read_json(path / "model_index.json")
        check_model_index(path, model_index, key)
        family = (
            families.get(entry["family"])
            if entry.get("family")
            else families.for_folder(path, model_index)
        )
        if entry.get("family") and not family.accepts_folder(path, model_index):
            pipeline = model_index.get("_class_name") or "no _class_name"
            theirs = ", ".join(family.pipelines) or "text-to-image pipelines"
            raise InputError(
                f"config key '{where}.family': {family.name}, but folder {source} holds a "
                f"{pipeline} ({family.label} folders hold {theirs}); remove `family`, or "
                "give it family: diffusers"
            )
        required = required_components(str(model_index.get("_class_name", "")))
        check_components(path, model_index, key, required)
        return _spec(
            entry, "diffusers", path, family.name, family.resolve_folder(path, model_index)
        )

    if path.suffix.lower() in PICKLE_SUFFIXES or path.suffix.lower() != ".safetensors":
        # check_checkpoint gives the pickle refusal its own message.
        check_checkpoint(path)
        raise InputError(f"config key '{key}': {source} is not a .safetensors file")
    if path.suffix != ".safetensors":
        raise InputError(
            f"config key '{key}': {source}: diffusers reads a checkpoint as safetensors only "
            f"with the suffix .safetensors in lower case; rename it to "
            f"{path.with_suffix('.safetensors').name}"
        )
    header = check_checkpoint(path)
    if entry.get("family"):
        family = families.get(entry["family"])
        _check_forced_family(family, header, source, where)
    else:
        family = families.for_file(header, path)
    config_dir = entry.get("config")
    if config_dir and not (Path(config_dir) / "model_index.json").is_file():
        raise InputError(f"config key '{where}.config': {config_dir} has no model_index.json")
    resolved = family.resolve_file(entry, path, header, resources_dir)
    return _spec(entry, "single_file", path, family.name, resolved, header)


def _check_forced_family(family, header: dict, source: str, where: str) -> None:
    """A `family` given for a single file that another family's keys are in: refused (it
    would fail in the job, with a message about the family's config)."""
    if family.recognise_file(header):
        return
    found = next((f for f in families.all_families() if f.recognise_file(header)), None)
    if found is not None:
        raise InputError(
            f"config key '{where}.family': {family.name}, but {source} has the keys of "
            f"{found.label} checkpoints (family {found.name}); remove `family` or give a "
            f"{family.label} file"
        )


def _resolve_builtin(entry: dict, key: str, resources_dir: str) -> ModelSpec:
    builtin_id = entry["source"][len(BUILTIN_PREFIX) :]
    builtin = families.builtins().get(builtin_id)
    if builtin is None:
        valid = ", ".join(BUILTIN_PREFIX + b for b in families.builtins())
        raise InputError(
            f"config key '{key}': unknown built-in model '{builtin_id}'; expected one of: {valid}"
        )
    if entry.get("family") and entry["family"] != builtin.family:
        raise InputError(
            f"config key '{key.rsplit('.', 1)[0]}.family': {entry['family']}, but built-in "
            f"model '{builtin_id}' is of family {builtin.family}; remove `family`"
        )
    family = families.get(builtin.family)
    resolved = family.resolve_builtin(builtin, resources_dir)
    if builtin.layout == "folder":
        return _spec(
            entry, "builtin", builtin_dir(resources_dir) / builtin_id, family.name, resolved
        )
    checkpoint, config_dir = builtin_paths(resources_dir, builtin_id)
    scheduler = {"prediction_type": builtin.prediction_type} if builtin.prediction_type else None
    resolved = dataclasses.replace(resolved, config_dir=config_dir)
    spec = _spec(entry, "builtin", checkpoint, family.name, resolved)
    if not entry.get("prediction_type") and scheduler:
        pred, why = _prediction_type(entry, None, scheduler)
        spec = dataclasses.replace(spec, prediction_type=pred, prediction_reason=why)
    return spec


def hf_cached_folder(repo_id: str, key: str) -> str:
    """The local snapshot of a Hugging Face model repo; never downloads.

    Honours the usual cache settings (HF_HOME, HF_HUB_CACHE). A repo that is not cached
    is an error that says how to fetch it.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    if not re.fullmatch(r"[A-Za-z0-9._-]+/[A-Za-z0-9._-]+", repo_id):
        raise InputError(f"config key '{key}': expected hf:<org>/<name>, got hf:{repo_id}")
    try:
        return snapshot_download(repo_id, local_files_only=True)
    except LocalEntryNotFoundError:
        raise InputError(
            f"config key '{key}': hf:{repo_id} is not in the local Hugging Face cache and "
            f"nothing is downloaded during a run; fetch it first with "
            f"`hf download {repo_id}` (or set HF_HUB_CACHE)"
        ) from None


def download_path(resources_dir: str, name: str) -> str:
    return str(Path(resources_dir) / "models" / "downloads" / f"{name}.safetensors")


def _resolve_url(entry: dict, where: str, resources_dir: str) -> ModelSpec:
    """A checkpoint fetched by rule download_model into resources/models/downloads/.

    Its header cannot be read before the download, so the prediction type comes from the
    config or the name, and the family from the config (default sdxl).
    """
    config_dir = entry.get("config")
    if config_dir and not (Path(config_dir) / "model_index.json").is_file():
        raise InputError(f"config key '{where}.config': {config_dir} has no model_index.json")
    family = families.get(entry.get("family", "sdxl"))
    resolved = family.resolve_download(entry, resources_dir)
    return _spec(
        entry,
        "single_file",
        download_path(resources_dir, entry["name"]),
        family.name,
        resolved,
        url=entry["source"],
        sha256=entry.get("sha256"),
    )


def model_name_from_file(path: Path) -> str:
    """A valid model name from a file stem: other characters become '_'."""
    return re.sub(r"\.{2,}", "_", re.sub(r"[^A-Za-z0-9._-]", "_", path.stem)).strip(".") or "_"


def models_dir_entries(folder: str, listed=()) -> list[dict]:
    """One model entry per .safetensors in `folder` (sorted by file name); not hidden
    files (macOS's `._model.safetensors`), and not the files `listed` under `models:`,
    whose entry (its config, LoRAs, name) is the one that counts."""
    path = Path(folder)
    if not path.is_dir():
        raise InputError(f"config key 'models_dir': {folder} is not a folder")
    listed = {os.path.realpath(source) for source in listed}
    files = sorted(
        p
        for p in path.iterdir()
        if p.suffix.lower() == ".safetensors"
        and not p.name.startswith(".")
        and os.path.realpath(p) not in listed
    )
    return [{"name": model_name_from_file(p), "source": str(p)} for p in files]


def _with_vae(spec: ModelSpec, entry: dict, where: str) -> ModelSpec:
    vae = entry.get("vae")
    if not vae:
        return spec
    key = f"{where}.vae" if where.startswith("models[") else f"{where} (vae)"
    path, header = Path(vae), None
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(f"config key '{key}': folder {vae} has no config.json")
    elif path.exists():
        if path.suffix.lower() != ".safetensors":
            check_checkpoint(path)  # names pickles as such
            raise InputError(f"config key '{key}': {vae} is not a .safetensors file")
        header = check_checkpoint(path)
    else:
        raise InputError(f"config key '{key}': {vae} does not exist")
    check_vae_latents(path, header, Path(spec.config_dir or spec.checkpoint), key, spec)
    return dataclasses.replace(spec, vae=str(path))


# What an experiment's folder holds besides its models' folders (the rules' outputs there;
# a test reads them off rules/*.smk): no model may take a name.
EXPERIMENT_FOLDER_ITEMS = frozenset(
    {"grids", "plots", "metrics", "logs", "benchmarks", "sequential", "index.html",
     "images.txt", "metadata.json", "results.csv", "summary.csv", "comparisons.csv",
     "findings.md", "findings.json", "human.csv", "human.json"}
)  # fmt: skip


def resolve_models(config: dict) -> list[ModelSpec]:
    """The listed models, then one per checkpoint in `models_dir`; names must be unique."""
    entries = [(f"models[{i}]", m) for i, m in enumerate(config["models"])]
    if config.get("models_dir"):
        listed = [m["source"] for m in config["models"]]
        entries += [
            (f"models_dir file {e['source']}", e)
            for e in models_dir_entries(config["models_dir"], listed)
        ]
    if not entries:
        if config.get("models_dir"):
            pickles = sorted(
                p.name
                for p in Path(config["models_dir"]).iterdir()
                if p.suffix.lower() in PICKLE_SUFFIXES
            )
            also = (
                f" (only pickles: {', '.join(pickles[:3])}, which are not loaded because "
                "they run code)"
                if pickles
                else ""
            )
            raise InputError(
                f"config key 'models_dir': {config['models_dir']} holds no .safetensors file"
                f"{also}, and 'models' lists none; expected checkpoints there, or models listed"
            )
        raise InputError("config key 'models': no models; list some or set 'models_dir'")
    seen: dict[str, str] = {}
    for where, entry in entries:
        name = entry["name"]
        if name in EXPERIMENT_FOLDER_ITEMS or name.startswith("."):
            key = f"config key '{where}.name'" if where.startswith("models[") else where
            raise InputError(
                f"{key}: model name '{name}' would be a folder beside the experiment "
                f"folder's own files and folders or a hidden one; choose another "
                f"(taken: {', '.join(sorted(EXPERIMENT_FOLDER_ITEMS))})"
            )
        if entry["name"] in seen:
            raise InputError(
                f"{where}: duplicate model name '{entry['name']}' "
                f"(already used by {seen[entry['name']]}); names must be unique"
            )
        seen[entry["name"]] = where
    return [
        _with_loras(
            _with_vae(resolve_model(entry, where, config["resources_dir"]), entry, where), entry
        )
        for where, entry in entries
    ]


def _with_loras(spec: ModelSpec, entry: dict) -> ModelSpec:
    loras = tuple((lora["file"], lora.get("weight", 1.0)) for lora in entry.get("loras") or [])
    return dataclasses.replace(spec, loras=loras) if loras else spec
