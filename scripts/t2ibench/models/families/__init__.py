"""Model families: one module each, all through the interface of `base.Family`.

`get(name)` gives a family; `names()` lists them in the order detection tries them. A new
family is a module here with a module-level `FAMILY` and a line in `MODULES`
(docs/adding-a-model-family.md). Light: nothing here imports torch.
"""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path

from t2ibench.errors import InputError
from t2ibench.models.families.base import Builtin, Family, Setting

# Detection order: a file or folder is the first family's that recognises it.
# The generic `diffusers` family comes last: it takes any other text-to-image pipeline.
MODULES = ("sdxl", "sd15", "sd3", "flux", "zimage", "diffusers")


@cache
def _families() -> dict[str, Family]:
    out = {}
    for module in MODULES:
        family = importlib.import_module(f"t2ibench.models.families.{module}").FAMILY
        out[family.name] = family
    return out


def names() -> list[str]:
    return list(_families())


def get(name: str) -> Family:
    return _families()[name]


def all_families() -> list[Family]:
    return list(_families().values())


@cache
def settings() -> dict[str, Setting]:
    """Every family setting by key; a key several families take has one schema."""
    out: dict[str, Setting] = {}
    for family in all_families():
        for setting in family.settings:
            known = out.get(setting.key)
            if known is not None and known.json_schema() | {"description": ""} != (
                setting.json_schema() | {"description": ""}
            ):
                raise RuntimeError(f"family setting {setting.key!r} has two schemas")
            out.setdefault(setting.key, setting)
    return out


def families_of(key: str) -> list[str]:
    """The families that take a generation key (all of them for a common key)."""
    if key not in settings() and key != "sampler":
        return names()
    return [f.name for f in all_families() if key in f.setting_keys]


def builtins() -> dict[str, Builtin]:
    return {b.id: b for family in all_families() for b in family.builtins}


def builtin_ids(layout: str) -> list[str]:
    return [b.id for b in builtins().values() if b.layout == layout]


def base_configs() -> dict[str, Family]:
    return {name: family for family in all_families() for name in family.base_configs}


def for_folder(path: Path, model_index: dict) -> Family:
    pipeline = model_index.get("_class_name", "")
    for family in all_families():
        if family.accepts_folder(path, model_index):
            return family
    supported = [p for family in all_families() for p in family.pipelines]
    raise InputError(
        f"model folder {path}: unsupported architecture '{pipeline}' in model_index.json; "
        f"supported: {', '.join(supported)} and diffusers' other text-to-image pipelines"
    )


def for_file(header: dict, path: Path) -> Family:
    for family in all_families():
        family.refuse_file(header, path)
    for family in all_families():
        if family.recognise_file(header):
            return family
    sample = ", ".join(sorted(k for k in header if k != "__metadata__")[:3])
    single = [f.name for f in all_families() if type(f).resolve_file is not Family.resolve_file]
    raise InputError(
        f"model file {path}: unsupported architecture (no family recognises its keys; "
        f"found keys such as {sample}); single-file families: {', '.join(single)}"
    )


def check_family_settings(generation: dict, models: dict[str, str], where: str = "") -> None:
    """A family's own setting is an error while a model of another family is configured:
    it would silently not apply to that model. `models` maps model names to families."""
    where = where or "config key 'generation."
    for key in settings():
        if generation.get(key) is None:
            continue
        takers = families_of(key)
        for model, family in models.items():
            if family not in takers:
                *others, last = [get(f).label for f in takers]
                labels = f"{', '.join(others)} and {last}" if others else last
                raise InputError(
                    f"{where}{key}': a setting of {labels} models, but model '{model}' is "
                    f"{get(family).label} ({family}); remove it or run the "
                    f"{'/'.join(takers)} models alone"
                )


def setting_schemas() -> dict[str, dict]:
    """The JSON schemas of the family settings, for config/schema.yaml's generation."""
    return {key: setting.json_schema() for key, setting in settings().items()}
