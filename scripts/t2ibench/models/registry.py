"""Resolve `models[]` config entries into ModelSpecs, cheaply and without torch.

This runs when the Snakefile is parsed (also for `snakemake -n`), so it only reads
safetensors headers and small JSON files; weights are never touched here.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path

from t2ibench.errors import InputError
from t2ibench.models.checks import PICKLE_SUFFIXES, check_checkpoint, has_vpred_key

BUILTIN_PREFIX = "builtin:"
# Kept in sync with t2ibench.models.tiny.BUILTIN_MODELS (tests check it); listed here so
# that parsing a config never imports torch.
BUILTIN_IDS = ("tiny-sdxl", "tiny-sdxl-vpred")
# Built-ins materialised as diffusers folders rather than single files.
BUILTIN_FOLDER_IDS = {"tiny-zimage": "zimage"}
# The built-ins' text encoder depths (tests check they agree with t2ibench.models.tiny and
# t2ibench.models.zimage): settings that pick a layer are checked against them.
TINY_SDXL_TEXT_LAYERS = 4
TINY_ZIMAGE_TEXT_LAYERS = 6
SHIPPED_SDXL_CONFIG = Path(__file__).resolve().parents[3] / "config" / "sdxl-base"
PIPELINE_FAMILIES = {"StableDiffusionXLPipeline": "sdxl", "ZImagePipeline": "zimage"}
VPRED_NAME = re.compile(r"v[-_]?pred(iction)?", re.IGNORECASE)
SDXL_MARKER = "conditioner.embedders.1.model."
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
    shared_config: bool = False  # config_dir is the SDXL base folder a rule makes
    # Layers of the text encoder (SDXL: the shallower of its two), when known: settings
    # that pick a layer (clip_skip, hidden_layer) are checked against it.
    text_layers: int | None = None
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


def _spec(entry: dict, kind, checkpoint, config_dir, family, prediction, **extra) -> ModelSpec:
    """The ModelSpec of a config entry; `prediction` is (prediction type, why)."""
    return ModelSpec(
        name=entry["name"],
        source=entry["source"],
        kind=kind,
        checkpoint=str(checkpoint),
        config_dir=None if config_dir is None else str(config_dir),
        family=family,
        prediction_type=prediction[0],
        prediction_reason=prediction[1],
        **extra,
    )


def sdxl_base_config_dir(resources_dir: str) -> str:
    """The SDXL base config folder (shipped configs + offline tokenizers), made by a rule."""
    return str(Path(resources_dir) / "configs" / "sdxl-base")


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
    """Config first, then the name, then a `v_pred` key, then the scheduler config."""
    if entry.get("prediction_type"):
        return entry["prediction_type"], "set in config"
    for text in (entry["name"], Path(entry["source"]).name):
        match = VPRED_NAME.search(text)
        if match:
            return "v_prediction", f"name contains '{match.group(0)}'"
    if header is not None and has_vpred_key(header):
        return "v_prediction", "checkpoint has a 'v_pred' key"
    if scheduler_config and scheduler_config.get("prediction_type"):
        return scheduler_config["prediction_type"], "scheduler config"
    return "epsilon", "default"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise InputError(f"model folder file {path}: missing or not valid JSON") from None


def resolve_model(entry: dict, where: int | str, resources_dir: str) -> ModelSpec:
    """Resolve one entry; `where` (an index into `models`, or a label) names it in errors."""
    where = f"models[{where}]" if isinstance(where, int) else where
    key = f"{where}.source" if where.startswith("models[") else where
    source = entry["source"]
    if source.startswith(BUILTIN_PREFIX):
        builtin_id = source[len(BUILTIN_PREFIX) :]
        if builtin_id in BUILTIN_FOLDER_IDS:
            folder = str(builtin_dir(resources_dir) / builtin_id)
            pred, why = _prediction_type(entry, None, None)
            return _spec(
                entry,
                "builtin",
                folder,
                None,
                BUILTIN_FOLDER_IDS[builtin_id],
                (pred, why),
                text_layers=TINY_ZIMAGE_TEXT_LAYERS,
            )
        if builtin_id not in BUILTIN_IDS:
            valid = [*BUILTIN_IDS, *BUILTIN_FOLDER_IDS]
            raise InputError(
                f"config key '{key}': unknown built-in model '{builtin_id}'; "
                f"expected one of: {', '.join(BUILTIN_PREFIX + b for b in valid)}"
            )
        checkpoint, config_dir = builtin_paths(resources_dir, builtin_id)
        scheduler = {"prediction_type": "v_prediction"} if "vpred" in builtin_id else None
        pred, why = _prediction_type(entry, None, scheduler)
        return _spec(
            entry,
            "builtin",
            checkpoint,
            config_dir,
            entry.get("family", "sdxl"),
            (pred, why),
            text_layers=TINY_SDXL_TEXT_LAYERS,
        )

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
        scheduler = (
            _read_json(path / "scheduler" / "scheduler_config.json")
            if (path / "scheduler" / "scheduler_config.json").is_file()
            else None
        )
        pred, why = _prediction_type(entry, None, scheduler)
        return _spec(
            entry,
            "diffusers",
            str(path),
            None,
            entry.get("family") or _folder_family(path),
            (pred, why),
            text_layers=_text_layers(path),
        )

    if path.suffix.lower() in PICKLE_SUFFIXES or path.suffix.lower() != ".safetensors":
        # check_checkpoint gives the pickle refusal its own message.
        check_checkpoint(path)
        raise InputError(f"config key '{key}': {source} is not a .safetensors file")
    header = check_checkpoint(path)
    family = entry.get("family") or _detect_family(header, path)
    config_dir = entry.get("config")
    if not config_dir:
        pred, why = _prediction_type(entry, header, None)
        return _spec(
            entry,
            "single_file",
            str(path),
            sdxl_base_config_dir(resources_dir),
            family,
            (pred, why),
            shared_config=True,
            text_layers=_text_layers(SHIPPED_SDXL_CONFIG),
        )
    if not (Path(config_dir) / "model_index.json").is_file():
        raise InputError(f"config key '{where}.config': {config_dir} has no model_index.json")
    pred, why = _prediction_type(entry, header, None)
    return _spec(
        entry,
        "single_file",
        str(path),
        str(config_dir),
        family,
        (pred, why),
        text_layers=_text_layers(Path(config_dir)),
    )


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
    pred, why = _prediction_type(entry, None, None)
    return _spec(
        entry,
        "single_file",
        download_path(resources_dir, entry["name"]),
        config_dir or sdxl_base_config_dir(resources_dir),
        entry.get("family", "sdxl"),
        (pred, why),
        shared_config=not config_dir,
        text_layers=_text_layers(Path(config_dir) if config_dir else SHIPPED_SDXL_CONFIG),
        url=entry["source"],
        sha256=entry.get("sha256"),
    )


def _text_layers(path: Path) -> int | None:
    """The text encoders' layer count from a diffusers (config) folder, without loading
    them: the smallest over text_encoder, text_encoder_2, ... (None when none says)."""
    counts = [
        _read_json(config).get("num_hidden_layers")
        for config in sorted(path.glob("text_encoder*/config.json"))
    ]
    counts = [n for n in counts if isinstance(n, int)]
    return min(counts) if counts else None


def _folder_family(path: Path) -> str:
    pipeline = _read_json(path / "model_index.json").get("_class_name", "")
    if pipeline not in PIPELINE_FAMILIES:
        raise InputError(
            f"model folder {path}: unsupported architecture '{pipeline}' in model_index.json; "
            f"supported: {', '.join(PIPELINE_FAMILIES)}"
        )
    return PIPELINE_FAMILIES[pipeline]


def _detect_family(header: dict, path: Path) -> str:
    if any(k.startswith(SDXL_MARKER) for k in header):
        return "sdxl"
    if any(".context_refiner." in f".{k}" for k in header):
        # A Z-Image transformer (its caption refiner blocks); diffusers 0.42 has no
        # single-file loader for a whole Z-Image pipeline.
        raise InputError(
            f"model file {path}: a Z-Image transformer checkpoint (context_refiner keys); "
            "single-file Z-Image is not supported, use its diffusers folder "
            "(e.g. hf:Tongyi-MAI/Z-Image-Turbo)"
        )
    sample = ", ".join(sorted(k for k in header if k != "__metadata__")[:3])
    raise InputError(
        f"model file {path}: unsupported architecture (no SDXL text encoder keys; "
        f"found keys such as {sample}); supported families: sdxl"
    )


def model_name_from_file(path: Path) -> str:
    """A valid model name from a file stem: other characters become '_'."""
    return re.sub(r"\.{2,}", "_", re.sub(r"[^A-Za-z0-9._-]", "_", path.stem)).strip(".") or "_"


def models_dir_entries(folder: str) -> list[dict]:
    """One model entry per .safetensors in `folder` (sorted by file name)."""
    path = Path(folder)
    if not path.is_dir():
        raise InputError(f"config key 'models_dir': {folder} is not a folder")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".safetensors")
    return [{"name": model_name_from_file(p), "source": str(p)} for p in files]


def _with_vae(spec: ModelSpec, entry: dict, where: str) -> ModelSpec:
    vae = entry.get("vae")
    if not vae:
        return spec
    key = f"{where}.vae" if where.startswith("models[") else f"{where} (vae)"
    path = Path(vae)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(f"config key '{key}': folder {vae} has no config.json")
    elif path.exists():
        if path.suffix.lower() != ".safetensors":
            check_checkpoint(path)  # names pickles as such
            raise InputError(f"config key '{key}': {vae} is not a .safetensors file")
        check_checkpoint(path)
    else:
        raise InputError(f"config key '{key}': {vae} does not exist")
    return dataclasses.replace(spec, vae=str(path))


# What an experiment's folder holds besides its models' folders: no model may take a name.
EXPERIMENT_FOLDER_ITEMS = frozenset(
    {"grids", "plots", "metrics", "logs", "benchmarks", "index.html", "images.txt",
     "metadata.json", "results.csv", "summary.csv", "comparisons.csv"}
)  # fmt: skip


def resolve_models(config: dict) -> list[ModelSpec]:
    """The listed models, then one per checkpoint in `models_dir`; names must be unique."""
    entries = [(f"models[{i}]", m) for i, m in enumerate(config["models"])]
    if config.get("models_dir"):
        entries += [
            (f"models_dir file {e['source']}", e) for e in models_dir_entries(config["models_dir"])
        ]
    if not entries:
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
        _flow_matching(
            _with_vae(resolve_model(entry, where, config["resources_dir"]), entry, where), entry
        )
        for where, entry in entries
    ]


def _flow_matching(spec: ModelSpec, entry: dict) -> ModelSpec:
    """Z-Image predicts a flow (velocity), not noise: say so instead of "epsilon"."""
    if spec.family != "zimage" or entry.get("prediction_type"):
        return spec
    return dataclasses.replace(
        spec, prediction_type="flow_matching", prediction_reason="Z-Image is a flow-matching model"
    )
