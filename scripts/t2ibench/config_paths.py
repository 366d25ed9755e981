"""Checks of the files and folders a config names, before anything runs: the results
and resources folders can be made, and metric weights named by path or Hub id are there
(nothing is downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

from t2ibench.errors import InputError
from t2ibench.metrics import registry


def check_folder(folder: str, what: str) -> None:
    """`folder` exists as a folder, or can be made: no part of it is a file, and the
    nearest existing folder above it is writable. Nothing is created here."""
    path = Path(folder).absolute()
    for part in [path, *path.parents]:
        if part.exists():
            if not part.is_dir():
                raise InputError(f"{what}: {folder} cannot be a folder: {part} is a file")
            if part != path and not os.access(part, os.W_OK | os.X_OK):
                raise InputError(f"{what}: cannot create {folder}: {part} is not writable")
            if part == path and not os.access(part, os.W_OK | os.X_OK):
                raise InputError(f"{what}: {folder} is not writable")
            return


def _looks_like_path(value: str) -> bool:
    return "/" in value or Path(value).suffix.lower() in {
        ".json",
        ".pt",
        ".pth",
        ".bin",
        ".safetensors",
        ".ckpt",
    }


def check_metric_files(metrics: dict) -> None:
    """Metric weights named by path must exist now, not fail hours into a run (the
    files each registry entry names)."""
    for metric in registry.all_metrics():
        section = metric.section
        if metric.check is not None and metrics[section]["enabled"]:
            metric.check(metrics[section])
        for weights in metric.files:
            value = metrics[section][weights.key]
            if not value or registry.is_builtin(value):
                continue
            key = f"config key 'metrics.{section}.{weights.key}'"
            if weights.folder:
                if metrics[section]["enabled"]:
                    _check_folder(value, key, weights)
            elif registry.section_in_use(metrics, section):
                if _looks_like_path(value) and not Path(value).is_file():
                    where = f"; expected {weights.what}"
                    if weights.source:
                        where += f": download {weights.source} and put it there"
                    raise InputError(f"{key}: file {value} does not exist{where}")


def _check_folder(value: str, key: str, weights) -> None:
    if Path(value).is_dir():
        if not any((Path(value) / name).is_file() for name in weights.folder):
            raise InputError(
                f"{key}: folder {value} has no {' or '.join(weights.folder)}; "
                f"expected {weights.what}"
            )
        return
    if not _in_hub_cache(value):
        raise InputError(
            f"{key}: {value} is neither a folder nor a model in the local Hugging Face cache; "
            f"nothing is downloaded: fetch it where there is network (`hf download {value}`) "
            "or point the key at a folder"
        )


def _in_hub_cache(value: str) -> bool:
    """True when `value` is a Hub id whose config is in the local Hugging Face cache."""
    if value.count("/") != 1 or value.startswith((".", "/", "~")):
        return False
    import huggingface_hub

    for name in ("config.json", "preprocessor_config.json", "tokenizer_config.json"):
        try:
            if isinstance(huggingface_hub.try_to_load_from_cache(value, name), str):
                return True
        except Exception:  # an id the hub client rejects is simply not in the cache
            return False
    return False
