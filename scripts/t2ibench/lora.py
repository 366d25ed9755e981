"""LoRAs: which ones an image uses, checked before the run, and switched on a loaded model.

An image's LoRAs are its model's `loras: [{file, weight}]` (stacked) followed by the
cell's `lora` at `lora_weight` (an experiment axis: a list of files, a mapping of names to
files, or a folder of files, crossed with strengths). Each is recorded by name (the file
stem), file, sha256 and weight; a changed file makes its images outdated. The base model
loads once per process; LoRAs are loaded once each as diffusers / PEFT adapters and
switched with `set_adapters`, so the order of cells never changes an image, and a weight
of 0 leaves the adapter out (the base model's image, bit for bit).

The resolving half is light (no torch): the plan uses it while the Snakefile is parsed.
"""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path

from t2ibench.errors import InputError
from t2ibench.models.checks import PICKLE_SUFFIXES, check_checkpoint, read_safetensors_header

LORA_KEY = re.compile(r"(lora_(A|B|down|up)\b|lora\.(down|up)|\.alpha$|lora_unet_|lora_te)")


def natural_key(name: str) -> list:
    """'epoch-2' before 'epoch-10'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def folder_files(folder: str, where: str) -> list[Path]:
    """The .safetensors of a LoRA folder in natural order (a folder of training epochs);
    hidden files (macOS's `._` copies, editors' and tools' own) are not LoRAs."""
    path = Path(folder)
    if not path.is_dir():
        raise InputError(f"{where}: LoRA folder {folder} is not a folder")
    files = sorted(
        (
            p
            for p in path.iterdir()
            if p.suffix.lower() == ".safetensors" and p.is_file() and not p.name.startswith(".")
        ),
        key=lambda p: natural_key(p.name),
    )
    if not files:
        pickles = [p.name for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES]
        extra = f" (pickles, which are not loaded: {', '.join(pickles[:3])})" if pickles else ""
        raise InputError(f"{where}: LoRA folder {folder} has no .safetensors files{extra}")
    return files


def check_file(file: str, where: str) -> dict:
    """A LoRA file must be a readable safetensors file with LoRA weights; its header."""
    path = Path(file)
    if path.is_dir():
        raise InputError(
            f"{where}: {file} is a folder; expected a LoRA .safetensors file (a folder of "
            "them, one value each, is an experiment's `lora` axis)"
        )
    if not path.is_file():
        raise InputError(f"{where}: LoRA file {file} does not exist")
    if path.suffix.lower() != ".safetensors":
        try:
            check_checkpoint(path)  # names a pickle as such
        except InputError as err:
            raise InputError(f"{where}: {err}") from None
        raise InputError(f"{where}: LoRA file {file} is not a .safetensors file")
    try:
        header = check_checkpoint(path)
    except InputError as err:
        raise InputError(f"{where}: {err}") from None
    keys = [k for k in header if k != "__metadata__"]
    if not any(LORA_KEY.search(k) for k in keys):
        sample = ", ".join(sorted(keys)[:3])
        raise InputError(
            f"{where}: {file} holds no LoRA weights (keys such as {sample}); expected a "
            "kohya / sd-scripts or diffusers / PEFT LoRA"
        )
    return header


def resolve(file: str, weight, where: str, sha_cache: Path | None, family=None) -> dict:
    """One LoRA of an image as recorded: name, file, sha256, weight; with `family`, a
    LoRA whose keys name none of the family's blocks is refused."""
    from t2ibench.models.checks import sha256_file

    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise InputError(f"{where}: LoRA weight {weight!r} is not a number")
    header = check_file(file, where)
    if family is not None and family.lora_keys:
        keys = [k for k in header if k != "__metadata__"]
        if not any(re.search(family.lora_keys, k) for k in keys):
            raise InputError(
                f"{where}: {file} is not a LoRA of {family.label} models (keys such as "
                f"{sorted(keys)[0]}); a LoRA of another model family?"
            )
    return {
        "name": Path(file).stem,
        "file": str(file),
        "sha256": sha256_file(Path(file), sha_cache),
        "weight": float(weight),
    }


def addnet_hash(file: str) -> str:
    """A1111's LoRA hash (`Lora hashes:`): sha256 of a safetensors file's tensor data,
    its header left out (kohya's "addnet" hash), as A1111's networks extension takes it."""
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        handle.seek(8 + length)
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@functools.cache
def short_hash(file: str, sha256: str) -> str:
    """The first 12 characters of the addnet hash of a file (by its content's sha256)."""
    return addnet_hash(file)[:12]


def adapter_name(lora: dict) -> str:
    """The adapter a LoRA loads as: one per file content."""
    return f"lora_{lora['sha256'][:16]}"


def apply(pipe, loras: list[dict], loaded: dict[str, str], keep: int = 8) -> int:
    """Make `loras` (weights != 0) the pipeline's active adapters; others off. Adapters are
    loaded once (`loaded`: adapter name -> file, least recently used first, updated) and
    at most `keep` stay loaded (or as many as this image stacks); returns how many were
    loaded."""
    active = [lora for lora in loras if lora["weight"] != 0]
    wanted = {adapter_name(lora) for lora in active}
    # Unload first (least recently used), so that at most `keep` are ever loaded.
    new = len({n for n in wanted if n not in loaded})
    idle = [n for n in loaded if n not in wanted]
    for name in idle[: max(0, len(loaded) + new - max(keep, len(wanted)))]:
        pipe.delete_adapters(name)
        del loaded[name]
    fresh = 0
    for lora in active:
        name = adapter_name(lora)
        if name in loaded:
            loaded[name] = loaded.pop(name)  # most recently used last
            continue
        load(pipe, lora, name)
        loaded[name] = lora["file"]
        fresh += 1
    if not loaded:
        return fresh
    if not active:
        pipe.disable_lora()
        return fresh
    pipe.enable_lora()
    names = [adapter_name(lora) for lora in active]
    weights = [lora["weight"] for lora in active]
    # One adapter twice in a stack (the same file at two weights) adds its weights.
    merged: dict[str, float] = {}
    for name, weight in zip(names, weights, strict=True):
        merged[name] = merged.get(name, 0.0) + weight
    pipe.set_adapters(list(merged), list(merged.values()))
    return fresh


def load(pipe, lora: dict, name: str) -> None:
    """Load one LoRA file as adapter `name`, and refuse one whose layers do not all land on
    the model: a LoRA of another family or another base matches nothing, or only part."""
    wanted = lora_modules(read_safetensors_header(Path(lora["file"])))
    try:
        pipe.load_lora_weights(lora["file"], adapter_name=name)
    except (ValueError, KeyError, RuntimeError) as err:
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise InputError(
            f"LoRA file {lora['file']}: does not fit this model ({reason}); is it a LoRA of "
            "another model family or base?"
        ) from None
    landed = adapter_layers(pipe, name)
    if wanted and landed < wanted:
        pipe.delete_adapters(name)
        raise InputError(
            f"LoRA file {lora['file']}: only {landed} of its {wanted} layers match this model; "
            "a LoRA of another model family or base?"
        )


def lora_modules(header: dict) -> int:
    """The layers a LoRA file adapts (one down / A matrix each)."""
    return sum(
        1 for k in header if re.search(r"(lora_A|lora_down|lora\.down)(\.[^.]+)?\.weight$", k)
    )


def adapter_layers(pipe, name: str) -> int:
    count = 0
    for component in ("unet", "transformer", "text_encoder", "text_encoder_2", "text_encoder_3"):
        module = getattr(pipe, component, None)
        if module is None:
            continue
        for layer in module.modules():
            lora_a = getattr(layer, "lora_A", None)
            if isinstance(lora_a, dict) or hasattr(lora_a, "keys"):
                count += name in lora_a.keys()
    return count
