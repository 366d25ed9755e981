"""How the built-in metrics of t2ibench.metrics.catalogue build their scorers, tables
and tiny models (the entries themselves are in the catalogue)."""

from __future__ import annotations

from pathlib import Path

from t2ibench.errors import InputError
from t2ibench.metrics.registry import builtin_folder, device_of, is_builtin
from t2ibench.metrics.vqascore_settings import check_vqascore_settings
from t2ibench.seeding import seeded

ROOT = Path(__file__).resolve().parents[3]
TINY_OPEN_CLIP = ROOT / "config" / "models" / "open_clip-tiny.json"


def _context(plan, section: str):
    """(section config, device, resources_dir, key prefix) of a metric's section."""
    metrics = plan.config["metrics"]
    config = metrics[section]
    device = device_of(config, metrics, plan.config["device"])
    return config, device, plan.config["resources_dir"], f"metrics.{section}"


def _prompt_scores(build):
    """The table of a per-image prompt metric whose scorer `build(plan)` makes."""

    def table(plan, experiment, jobs, cache_path):
        from t2ibench.inline_scores import built_scorer
        from t2ibench.scoring import prompt_image_scores

        # The scorer a generation job of this process built, rather than a second copy.
        scorer = built_scorer(plan, build) or build(plan)
        return prompt_image_scores(plan, experiment, jobs, cache_path, scorer)

    return table


def _table(name: str, module: str = "t2ibench.scoring"):
    """The table function `name` of `module`, imported when a table is made (the
    catalogue is read at every start; torch and the models are not)."""

    def table(plan, experiment, jobs, cache_path):
        import importlib

        return getattr(importlib.import_module(module), name)(plan, experiment, jobs, cache_path)

    return table


def _random_clip(metrics: dict) -> str:
    return "" if metrics["clip"]["pretrained"] else "CLIP score uses random weights"


# --- scorers ----------------------------------------------------------------------------


def _clip(plan):
    from t2ibench.metrics.clip_score import ClipScorer

    section, device, _, _ = _context(plan, "clip")
    return ClipScorer(section["model"], section["pretrained"], device, section["batch_size"])


def _hps(plan):
    from t2ibench.metrics.clip_score import HpsScorer

    section, device, resources, where = _context(plan, "hps")
    weights, model = section["weights"], section["model"]
    if is_builtin(weights):
        folder = builtin_folder(weights, resources, f"{where}.weights")
        weights, model = str(folder / "hps-tiny.pt"), str(TINY_OPEN_CLIP)
    return HpsScorer(model, weights, device, section["batch_size"], antialias=section["antialias"])


def _siglip(plan):
    from t2ibench.metrics.siglip import SiglipScorer

    section, device, resources, where = _context(plan, "siglip")
    model = section["model"]
    if is_builtin(model):
        model = str(builtin_folder(model, resources, f"{where}.model"))
    return SiglipScorer(model, device=device, batch_size=section["batch_size"])


def _pickscore(plan):
    from t2ibench.metrics.pickscore import PickScoreScorer

    section, device, resources, where = _context(plan, "pickscore")
    model, processor = section["model"], section["processor"] or None
    if is_builtin(model):
        model = str(builtin_folder(model, resources, f"{where}.model"))
    return PickScoreScorer(model, processor, device=device, batch_size=section["batch_size"])


def _image_reward(plan):
    from t2ibench.metrics.image_reward import ImageRewardScorer

    section, device, resources, where = _context(plan, "image_reward")
    _check_image_reward(section)
    weights, tokenizer = section["weights"], section["tokenizer"]
    architecture = section["architecture"]
    if is_builtin(weights):
        folder = builtin_folder(weights, resources, f"{where}.weights")
        weights = str(folder / "ImageReward.pt")
        tokenizer = tokenizer or str(folder / "tokenizer")
        architecture = architecture or str(ROOT / "config/metrics/image-reward-tiny.json")
    kwargs = {"architecture": architecture} if architecture else {}
    return ImageRewardScorer(
        weights, tokenizer, device=device, batch_size=section["batch_size"], **kwargs
    )


def _check_vqascore(section: dict) -> None:
    check_vqascore_settings(section["question"], section["min_pixels"], section["max_pixels"])


def open_clip_architectures() -> set[str]:
    """open_clip's architecture names, from its model_configs folder (without importing
    open_clip and torch); empty when open_clip is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return set()
    folder = Path(next(iter(spec.submodule_search_locations))) / "model_configs"
    return {path.stem for path in folder.glob("*.json")}


def check_open_clip_model(value: str, key: str) -> None:
    """An open_clip model named, not given as a config file, is one open_clip knows."""
    if not value or is_builtin(value) or "/" in value or value.endswith(".json"):
        return  # a built-in or a config file (whose existence the registry's files check)
    names = open_clip_architectures()
    if names and value not in names and not Path(value).is_file():
        raise InputError(
            f"config key '{key}': unknown open_clip model '{value}'; expected one of "
            f"open_clip's {len(names)} architectures (e.g. ViT-L-14, ViT-B-32) or a path to "
            "an open_clip model-config JSON"
        )


def _check_clip(section: dict) -> None:
    check_open_clip_model(section["model"], "metrics.clip.model")


def _check_fid(section: dict) -> None:
    if section["extractor"] == "inception" and not section["weights"]:
        raise InputError(
            "config key 'metrics.fid.weights': empty; the inception extractor needs the "
            "TorchScript Inception network (inception-2015-12-05.pt) there"
        )
    if section["extractor"] == "clip":
        check_open_clip_model(section["model"], "metrics.fid.model")


def _check_image_reward(section: dict) -> None:
    if not is_builtin(section["weights"]) and not section["tokenizer"]:
        raise InputError(
            "config key 'metrics.image_reward.tokenizer': empty; expected a bert-base-uncased "
            "tokenizer folder (ImageReward's BLIP text encoder uses it)"
        )


# --- built-in tiny models -------------------------------------------------------------


def _write_tiny_detector(folder: Path) -> None:
    from t2ibench.geneval.tiny import write_tiny_detector

    write_tiny_detector(folder, seed=0)


def _write_tiny_vlm(folder: Path) -> None:
    from t2ibench.metrics.tiny_vlm import write_tiny_vlm

    write_tiny_vlm(folder, "qwen2_5_vl", seed=0)


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


def write_tiny_open_clip_checkpoint(path: Path, config: Path, seed: int = 0) -> None:
    """An open_clip checkpoint in the HPS v2 layout ({"state_dict": ...}), random weights."""
    import open_clip
    import torch

    from t2ibench.metrics.clip_score import _register_architecture

    name = _register_architecture(str(config))
    with seeded(seed):
        model = open_clip.create_model(name, pretrained=None)
    torch.save({"state_dict": model.state_dict()}, path)
