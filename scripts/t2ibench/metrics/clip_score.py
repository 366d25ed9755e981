"""CLIP score of images against their prompts, computed with open_clip.

Formula (version ``v1``), per image::

    clip_score(image, prompt) = 100 * max(cos(E_image, E_prompt), 0)

where ``E`` are the model's image and text embeddings. The clamp is applied per image;
torchmetrics' ``CLIPScore`` instead clamps the mean over a batch, so the two agree per image
and differ only in how negatives enter an average.

Nothing is ever downloaded: weights come from a local file, from a pretrained tag already in
the local Hugging Face / open_clip cache, or are random (offline demo only).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub
import open_clip
import torch
from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
from PIL import Image

from t2ibench.errors import InputError
from t2ibench.metrics.base import PromptImageScorer
from t2ibench.models.checks import sha256_file
from t2ibench.seeding import seeded

# v2: images reach open_clip's preprocess in their own mode (v1: converted to RGB first)
FORMULA_VERSION = "v2"

log = logging.getLogger(__name__)


class OpenClipModel:
    """An open_clip model on a device, run in batches: what the CLIP score and the FID/KID
    CLIP features share.

    Args:
        model: an open_clip architecture name (``"ViT-L-14"``) or the path of an open_clip
            model-config JSON file, registered under its file stem.
        pretrained: an open_clip pretrained tag (``"openai"``) whose weights are already in the
            local cache, the path of a weights file, or ``""`` for random weights seeded with
            ``seed`` (offline demo only: the scores mean nothing).
        device: torch device the model runs on.
        batch_size: images (and prompts) per forward pass.
        seed: seed of the random weights when ``pretrained`` is ``""``.

    ``model_id`` names a weights file by its SHA-256, read once here (seconds for ViT-L).
    """

    def __init__(
        self,
        model: str,
        pretrained: str = "",
        device: str = "cpu",
        batch_size: int = 32,
        seed: int = 0,
    ):
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.name, net, self.preprocess, self.model_id = load_open_clip(model, pretrained, seed)
        self.model = net.to(self.device).eval()


class ClipScorer(OpenClipModel, PromptImageScorer):
    """Scores images against prompts with an open_clip model (arguments: OpenClipModel's).

    Prompts are tokenised by the model's tokenizer, which truncates them to its context length
    (77 tokens for CLIP): words past that limit do not change the score.
    """

    column = "clip_score"
    formula = f"clip_score/{FORMULA_VERSION}"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tokenizer = open_clip.get_tokenizer(self.name)
        self._metric_id = f"{self.formula}/{self.model_id}"

    @property
    def metric_id(self) -> str:
        """Stable cache key: formula version, architecture (+ config hash) and weights."""
        return self._metric_id

    def transform(self):
        """The model's own preprocessing (resize, crop, normalise): picklable."""
        return self.preprocess

    @torch.inference_mode()
    def embed_texts(self, prompts: list[str]) -> torch.Tensor:
        """L2-normalised text embeddings, one row per prompt (truncated to the context length)."""
        rows = []
        for start in range(0, len(prompts), self.batch_size):
            tokens = self.tokenizer(prompts[start : start + self.batch_size]).to(self.device)
            rows.append(self.model.encode_text(tokens, normalize=True).float())
        return torch.cat(rows).cpu()

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        return self.embed_texts(prompts)

    @torch.inference_mode()
    def embed_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """L2-normalised image embeddings of preprocessed pixels (N, 3, H, W), on the CPU."""
        return self.model.encode_image(pixels.to(self.device), normalize=True).float().cpu()

    def embed_images(self, images: list[Image.Image]) -> torch.Tensor:
        """L2-normalised image embeddings after the model's own preprocessing."""
        rows = []
        for start in range(0, len(images), self.batch_size):
            batch = [self.preprocess(image) for image in images[start : start + self.batch_size]]
            rows.append(self.embed_pixels(torch.stack(batch)))
        return torch.cat(rows)

    def score_pixels(self, pixels: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """``100 * max(cos(image, prompt), 0)`` for each row."""
        cosine = (self.embed_pixels(pixels) * texts).sum(dim=-1)
        return 100 * cosine.clamp(min=0)


@dataclass(frozen=True)
class LetterboxTransform:
    """Picklable ``PIL.Image -> (3, size, size)`` tensor: HPS v2's ``preprocess_val``
    (``image_transform(..., resize_longest_max=True)`` of the HPSv2 repository).

    RGB (P, L, LA, ... are converted; an RGBA image keeps its colour channels, whose values
    are those of the official 4-channel tensor, on which the official model fails), then
    ``ToTensor`` (floats in [0, 1]), the longest side resized to ``size`` on that float
    tensor with bicubic interpolation (``torchvision.transforms.functional.resize``), zero
    padding to ``size x size`` (left/top get half, rounded down), and normalisation.
    ``antialias`` is passed explicitly: True is what the official code does with
    torchvision >= 0.17 (its default for tensors since then); False reproduces it under
    torchvision < 0.17. An image whose longest side is already ``size`` is not resized
    (as in the official code) and is padded to a square (the official code leaves it
    non-square, which its model rejects).
    """

    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    antialias: bool = True

    def __call__(self, image: Image.Image) -> torch.Tensor:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as tf

        x = tf.to_tensor(image.convert("RGB"))
        height, width = x.shape[1:]
        scale = self.size / float(max(height, width))
        if scale != 1.0:
            # at least one pixel: an image 500 times wider than tall still scores
            height, width = max(1, round(height * scale)), max(1, round(width * scale))
            x = tf.resize(x, [height, width], InterpolationMode.BICUBIC, antialias=self.antialias)
        pad_h, pad_w = self.size - height, self.size - width
        if pad_h or pad_w:
            padding = [pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2]
            x = tf.pad(x, padding, fill=0)
        return tf.normalize(x, list(self.mean), list(self.std))


class HpsScorer(ClipScorer):
    """HPS v2 (Human Preference Score, Wu et al. 2023): an open_clip model fine-tuned on
    human preferences, scored as the plain cosine of image and prompt embeddings::

        hps(image, prompt) = cos(E_image, E_prompt)

    (no 100x scale, no clamp; HPS v2.1 puts real images around 0.25-0.35). The real model is
    ``ViT-H-14`` with the weights file ``HPS_v2.1_compressed.pt`` (a ``{"state_dict": ...}``
    checkpoint, loaded as is by open_clip) passed as ``pretrained``. Images are prepared
    as the official scorer prepares them (LetterboxTransform), not with open_clip's
    centre crop.
    """

    column = "hps"
    formula = "hps/v2"  # v1 used open_clip's centre crop

    def __init__(self, *args, antialias: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.antialias = antialias
        self._metric_id = f"{self.formula}/{self.model_id}" + ("" if antialias else "/no-antialias")

    def transform(self) -> LetterboxTransform:
        cfg = self.model.visual.preprocess_cfg
        size = self.model.visual.image_size
        size = int(size if isinstance(size, int) else size[0])
        mean = tuple(float(v) for v in cfg["mean"])
        std = tuple(float(v) for v in cfg["std"])
        return LetterboxTransform(size, mean, std, self.antialias)

    def score_pixels(self, pixels: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        return (self.embed_pixels(pixels) * texts).sum(dim=-1)


def load_open_clip(model: str, pretrained: str, seed: int = 0):
    """(name, model, preprocess, model id) of an open_clip model, on the CPU.

    ``model`` and ``pretrained`` are as for ClipScorer; the model id
    ``<name>@<config sha256, 12 hex>/<weights id>`` names what was loaded.
    """
    name = _register_architecture(model)
    weights, tag_kwargs, weights_id = _resolve_weights(name, pretrained, seed)
    with seeded(seed):
        try:
            net, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=weights, **tag_kwargs
            )
        except Exception as e:  # a bad weights file fails in many ways: report it in one line
            if weights is None:
                raise
            raise InputError(
                f"cannot load open_clip weights {weights} into {name}: {str(e)[:300]}"
            ) from e
    config = json.dumps(open_clip.get_model_config(name), sort_keys=True)
    config_id = hashlib.sha256(config.encode()).hexdigest()[:12]
    return name, net, preprocess, f"{name}@{config_id}/{weights_id}"


def _register_architecture(model: str) -> str:
    """Return the open_clip name of ``model``, registering it first if it is a config file."""
    path = Path(model)
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise InputError(f"open_clip model config not found: {path}")
        open_clip.add_model_config(path)
        if open_clip.get_model_config(path.stem) is None:
            raise InputError(
                f"{path} is not an open_clip model config (needs embed_dim, vision_cfg, text_cfg)"
            )
        return path.stem
    if open_clip.get_model_config(model) is None:
        raise InputError(
            f"unknown open_clip model '{model}': no config file at {path.resolve()} and no "
            f"architecture of that name among open_clip's {len(open_clip.list_models())} "
            "configs (see open_clip.list_models())"
        )
    return model


def _resolve_weights(name: str, pretrained: str, seed: int) -> tuple[str | None, dict, str]:
    """Map ``pretrained`` to (local weights file, model kwargs its tag implies, weights id).

    A tag brings its own preprocessing (mean, std, interpolation) and activation: open_clip
    only warns when a QuickGELU tag (``openai``) meets a plain-GELU architecture, so QuickGELU
    is forced here. A weights file is taken as is: name the matching architecture
    (e.g. ``ViT-L-14-quickgelu`` for OpenAI's weights).
    """
    if not pretrained:
        _warn_random_weights(name)
        return None, {}, f"random:seed{seed}"
    tag_cfg = open_clip.get_pretrained_cfg(name, pretrained)
    if tag_cfg:
        weights = _cached_tag_file(name, pretrained, tag_cfg)
        keys = ("mean", "std", "interpolation", "resize_mode")
        kwargs = {f"image_{key}": tag_cfg[key] for key in keys if key in tag_cfg}
        kwargs["force_quick_gelu"] = tag_cfg.get("quick_gelu", False)
        return weights, kwargs, f"tag:{pretrained}"
    if not os.path.isfile(pretrained):
        raise InputError(
            f"open_clip weights file not found: {pretrained} (nor is it a pretrained tag of "
            f"{name}: {open_clip.list_pretrained_tags_by_model(name)})"
        )
    return pretrained, {}, f"sha256:{sha256_file(Path(pretrained))[:16]}"


def _cached_tag_file(name: str, tag: str, tag_cfg: dict) -> str:
    """Path of the locally cached weights of an open_clip tag; never downloads."""
    if tag_cfg.get("file"):
        return tag_cfg["file"]
    if tag_cfg.get("hf_hub"):
        repo_id, filename = os.path.split(tag_cfg["hf_hub"])
        filename = filename or HF_WEIGHTS_NAME
        safe = (
            HF_SAFE_WEIGHTS_NAME
            if filename == HF_WEIGHTS_NAME
            else f"{Path(filename).stem}.safetensors"
        )
        for candidate in (safe, filename):
            found = huggingface_hub.try_to_load_from_cache(repo_id, candidate)
            if isinstance(found, str):
                return found
    if tag_cfg.get("url"):
        path = Path("~/.cache/clip").expanduser() / os.path.basename(tag_cfg["url"])
        if path.is_file():
            return str(path)
    raise InputError(
        f"weights of open_clip tag '{tag}' for {name} are not in the local cache and nothing "
        f"is downloaded (HF_HUB_OFFLINE): place them locally, e.g. in the Hugging Face cache "
        f"({tag_cfg.get('hf_hub') or tag_cfg.get('url')}), or pass a weights file path"
    )


@functools.cache
def _warn_random_weights(name: str) -> None:
    log.warning("CLIP score uses RANDOM weights for %s: demo only, scores are meaningless", name)
