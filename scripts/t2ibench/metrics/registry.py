"""The metrics the workflow knows: their config sections, tables and scorers.

Each metric writes one table, ``results/<experiment>/metrics/<metric>.csv``:

- per image, against the image's prompt: ``clip_score``, ``siglip_score``,
  ``image_reward``, ``pickscore``, ``hps`` (one column of that name);
- per image, against the prompt's reference image: ``reference_similarity``
  (``clip_ref_cosine`` and ``lpips_ref``);
- per (model, cell, prompt): ``lpips_diversity``, ``clip_diversity``;
- per set of images: ``fid`` (FID and KID of each model's or cell's images against the
  reference images, or against the first model).

Model values ``builtin:tiny-...`` are tiny models with seeded random weights, written on
first use under ``<resources_dir>/models/metrics/`` in the real on-disk format and then
loaded by the real loading code: they make the demo and the tests run offline, and their
scores mean nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from t2ibench.errors import InputError
from t2ibench.io import staging_dir

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[3]
TINY_OPEN_CLIP = ROOT / "config" / "models" / "open_clip-tiny.json"

# metric (table name) -> config section under `metrics:`
SECTIONS = {
    "clip_score": "clip",
    "siglip_score": "siglip",
    "image_reward": "image_reward",
    "pickscore": "pickscore",
    "hps": "hps",
    "reference_similarity": "reference",
    "lpips_diversity": "lpips",
    "clip_diversity": "clip_diversity",
    "fid": "fid",
}
PROMPT_IMAGE_METRICS = ["clip_score", "siglip_score", "image_reward", "pickscore", "hps"]
# Tables merged into results.csv on the image, and on the (model, cell, prompt).
PER_IMAGE_TABLES = {*PROMPT_IMAGE_METRICS, "reference_similarity"}
PER_PROMPT_TABLES = {"lpips_diversity", "clip_diversity"}
# The metrics that also need another section's model.
USES = {"reference_similarity": ["clip", "lpips"], "clip_diversity": ["clip"]}


def section_in_use(metrics_config: dict, section: str) -> bool:
    """True when the section's metric, or a metric that uses its model, is enabled."""
    users = [SECTIONS[m] for m, sections in USES.items() if section in sections]
    return any(metrics_config[s]["enabled"] for s in [section, *users])


def enabled(metrics_config: dict) -> list[str]:
    """The enabled metrics, in table order."""
    return [m for m, section in SECTIONS.items() if metrics_config[section]["enabled"]]


def metric_params(metrics_config: dict, metric: str) -> dict:
    """The config a metric's table depends on: its section and the sections it uses."""
    sections = [SECTIONS[metric], *USES.get(metric, [])]
    params = {s: {k: v for k, v in metrics_config[s].items() if k != "enabled"} for s in sections}
    params["device"] = metrics_config["device"]
    return params


def device_of(section: dict, metrics_config: dict, default_device: str) -> str:
    """A metric's device: its own, else `metrics.device`, else the top-level `device`."""
    from t2ibench.generate import resolve_device

    return resolve_device(section.get("device") or metrics_config["device"] or default_device)


# --- built-in tiny models -------------------------------------------------------------


def _write_tiny_siglip(folder: Path) -> None:
    from t2ibench.metrics.siglip import write_tiny_siglip

    write_tiny_siglip(folder, seed=0)


def _write_tiny_pickscore(folder: Path) -> None:
    from t2ibench.metrics.pickscore import write_tiny_pickscore

    write_tiny_pickscore(folder, seed=0)


def _write_tiny_image_reward(folder: Path) -> None:
    from t2ibench.metrics.image_reward import write_tiny_image_reward

    write_tiny_image_reward(folder, seed=0)


def _write_tiny_hps(folder: Path) -> None:
    write_tiny_open_clip_checkpoint(folder / "hps-tiny.pt", TINY_OPEN_CLIP, seed=0)


BUILTINS: dict[str, Callable[[Path], None]] = {
    "tiny-siglip": _write_tiny_siglip,
    "tiny-pickscore": _write_tiny_pickscore,
    "tiny-image-reward": _write_tiny_image_reward,
    "tiny-hps": _write_tiny_hps,
}


def write_tiny_open_clip_checkpoint(path: Path, config: Path, seed: int = 0) -> None:
    """An open_clip checkpoint in the HPS v2 layout ({"state_dict": ...}), random weights."""
    import open_clip
    import torch

    from t2ibench.metrics.clip_score import _register_architecture

    name = _register_architecture(str(config))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(name, pretrained=None)
    torch.save({"state_dict": model.state_dict()}, path)


def builtin_folder(value: str, resources_dir: str | Path, key: str) -> Path:
    """The folder of built-in tiny model `value` ("builtin:<id>"), written on first use.

    Written to a temporary folder then renamed, so a crash leaves nothing half-written and
    two jobs writing at once both end with the same complete folder.
    """
    model_id = value.removeprefix("builtin:")
    if model_id not in BUILTINS:
        raise InputError(
            f"config key '{key}': unknown built-in model '{value}'; expected one of: "
            + ", ".join(f"builtin:{name}" for name in BUILTINS)
        )
    folder = Path(resources_dir) / "models" / "metrics" / model_id
    if folder.is_dir():
        return folder
    tmp = staging_dir(folder)
    try:
        BUILTINS[model_id](tmp)
        try:
            os.rename(tmp, folder)
            log.debug("wrote built-in metric model %s to %s", value, folder)
        except OSError:
            if not folder.is_dir():  # not another job's complete copy: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def is_builtin(value: str) -> bool:
    return isinstance(value, str) and value.startswith("builtin:")


# --- scorers ----------------------------------------------------------------------------


def build_scorer(metric: str, metrics_config: dict, default_device: str, resources_dir: str):
    """The PromptImageScorer of a per-image prompt metric, from its config section."""
    section = metrics_config[SECTIONS[metric]]
    device = device_of(section, metrics_config, default_device)
    batch = section["batch_size"]
    where = f"metrics.{SECTIONS[metric]}"
    if metric == "clip_score":
        from t2ibench.metrics.clip_score import ClipScorer

        return ClipScorer(section["model"], section["pretrained"], device, batch)
    if metric == "hps":
        from t2ibench.metrics.clip_score import HpsScorer

        weights = section["weights"]
        model = section["model"]
        if is_builtin(weights):
            folder = builtin_folder(weights, resources_dir, f"{where}.weights")
            weights = str(folder / "hps-tiny.pt")
            model = str(TINY_OPEN_CLIP)
        return HpsScorer(model, weights, device, batch)
    if metric == "siglip_score":
        from t2ibench.metrics.siglip import SiglipScorer

        model = section["model"]
        if is_builtin(model):
            model = str(builtin_folder(model, resources_dir, f"{where}.model"))
        return SiglipScorer(model, device=device, batch_size=batch)
    if metric == "pickscore":
        from t2ibench.metrics.pickscore import PickScoreScorer

        model, processor = section["model"], section["processor"] or None
        if is_builtin(model):
            model = str(builtin_folder(model, resources_dir, f"{where}.model"))
        return PickScoreScorer(model, processor, device=device, batch_size=batch)
    if metric == "image_reward":
        from t2ibench.metrics.image_reward import ImageRewardScorer

        weights, tokenizer = section["weights"], section["tokenizer"]
        architecture = section["architecture"]
        if is_builtin(weights):
            folder = builtin_folder(weights, resources_dir, f"{where}.weights")
            weights = str(folder / "ImageReward.pt")
            tokenizer = tokenizer or str(folder / "tokenizer")
            architecture = architecture or str(ROOT / "config/metrics/image-reward-tiny.json")
        if not tokenizer:
            raise InputError(
                f"config key '{where}.tokenizer': empty; expected a bert-base-uncased "
                "tokenizer folder (ImageReward's BLIP text encoder uses it)"
            )
        kwargs = {"architecture": architecture} if architecture else {}
        return ImageRewardScorer(weights, tokenizer, device=device, batch_size=batch, **kwargs)
    raise ValueError(f"{metric} is not a per-image prompt metric")
