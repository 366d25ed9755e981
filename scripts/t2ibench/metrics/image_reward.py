"""ImageReward v1.0 (Xu et al. 2023, THUDM/ImageReward) rebuilt on transformers' BLIP modules.

The ``image-reward`` package does not install with this stack, so its scoring model is rebuilt
here from ``transformers.BlipVisionModel`` and ``BlipTextModel`` and the official checkpoint
``ImageReward.pt`` is loaded by renaming its keys. Formula (version ``v1``), per image, as in
``ImageReward.score(prompt, image)``::

    V = ViT(image)                         # all tokens, after the ViT's final LayerNorm
    T = BERT(prompt, cross-attending to V) # BLIP's text encoder, encoder mode (bidirectional)
    r = MLP(T[CLS])                        # 768 -> 1024 -> 128 -> 64 -> 16 -> 1, no activations
    image_reward(image, prompt) = (r - 0.16717362830052426) / 1.0333394966054072

The reward is unbounded; the mean and std standardise it over ImageReward's training
prompts, so real generated images mostly score in about [-2, 2] (higher is preferred).

Inputs, exactly as the official code prepares them:

- text: ``bert-base-uncased``'s BertTokenizer with ``[DEC]`` (bos) and ``[ENC]`` (additional
  special token) added, i.e. 30524 tokens; ``padding="max_length"``, truncated at 35 tokens
  (the ids start with ``[CLS]``; words past the limit do not change the score);
- image: Resize(224, bicubic) of the shorter side, CenterCrop(224), RGB, ToTensor (pixels in
  [0, 1]), Normalize with CLIP's mean and std.

The architecture JSON and the checkpoint's keys: t2ibench.metrics.image_reward_checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torchvision import transforms
from transformers import BertTokenizer, BlipVisionModel
from transformers.models.blip.modeling_blip_text import BlipTextModel

from t2ibench.errors import InputError
from t2ibench.metrics.base import PromptImageScorer
from t2ibench.metrics.image_reward_checkpoint import (
    DEFAULT_ARCHITECTURE,
    HEAD_DROPOUTS,
    TEXT,
    TINY_ARCHITECTURE,
    WEIGHTS_KEY,
    Architecture,
    CheckpointKeys,
    load_architecture,
    map_checkpoint,
    official_layout,
    read_checkpoint,
)
from t2ibench.models.checks import sha256_file

# v2: resized before alpha is dropped, as the official transform does (v1: RGB first)
FORMULA_VERSION = "v2"

TOKENIZER_KEY = "metrics.image_reward.tokenizer"
DOWNLOAD_HINT = (
    "download ImageReward.pt from https://huggingface.co/THUDM/ImageReward and set " + WEIGHTS_KEY
)

# BLIP's tokenizer additions (blip.init_tokenizer): [DEC] as bos, then [ENC].
DEC_TOKEN = "[DEC]"
ENC_TOKEN = "[ENC]"
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json")


# --- model ----------------------------------------------------------------------------


def build_head(sizes: list[int]) -> nn.Sequential:
    """The official MLP: five Linear layers, dropouts after the first three, no activations."""
    layers: list[nn.Module] = []
    for n in range(5):
        layers.append(nn.Linear(sizes[n], sizes[n + 1]))
        if n < len(HEAD_DROPOUTS):
            layers.append(nn.Dropout(HEAD_DROPOUTS[n]))
    return nn.Sequential(*layers)


class ImageRewardModel(nn.Module):
    """BLIP ViT + BLIP text encoder (cross-attention) + MLP head: the reward of
    (pixels, tokens), standardised with the architecture's mean and std."""

    def __init__(self, arch: Architecture):
        super().__init__()
        self.vision = BlipVisionModel(arch.vision_config())
        self.text = BlipTextModel(arch.text_config(), add_pooling_layer=False)
        self.head = build_head(arch.head["sizes"])
        self.mean = float(arch.head["mean"])
        self.std = float(arch.head["std"])

    def parts(self) -> dict[str, nn.Module]:
        return {"vision": self.vision, "text": self.text, "head": self.head}

    def forward(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        image_embeds = self.vision(pixel_values=pixel_values).last_hidden_state
        image_atts = torch.ones(
            image_embeds.shape[:-1], dtype=torch.long, device=pixel_values.device
        )
        text = self.text(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_atts,
            is_decoder=False,
            use_cache=False,
        ).last_hidden_state
        rewards = self.head(text[:, 0, :].float()).squeeze(-1)
        return (rewards - self.mean) / self.std


def load_model(weights: Path, arch: Architecture) -> tuple[ImageRewardModel, CheckpointKeys]:
    """The float32 model with ``weights`` (official layout) loaded strictly, and its key report."""
    parts, keys = map_checkpoint(read_checkpoint(weights), arch, weights)
    model = ImageRewardModel(arch).float()
    for name, module in model.parts().items():
        module.load_state_dict(parts[name], strict=True)
    return model.eval(), keys


# --- tokenizer and images --------------------------------------------------------------


def load_tokenizer(folder: str | Path) -> BertTokenizer:
    """BLIP's tokenizer: the folder's BertTokenizer with [DEC] and [ENC] added if missing."""
    folder = Path(folder)
    if not folder.is_dir() or not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise InputError(
            f"ImageReward tokenizer not found: {folder} (expected a bert-base-uncased tokenizer "
            f"folder with {' or '.join(TOKENIZER_FILES)}; nothing is downloaded) - set "
            f"{TOKENIZER_KEY}"
        )
    try:
        tokenizer = BertTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        reason = " ".join(str(e).split())[:200]
        raise InputError(
            f"cannot load the ImageReward tokenizer from {folder}: {type(e).__name__}: {reason} "
            f"(expected a bert-base-uncased tokenizer folder) - set {TOKENIZER_KEY}"
        ) from e
    vocab = tokenizer.get_vocab()
    if DEC_TOKEN not in vocab:
        tokenizer.add_special_tokens({"bos_token": DEC_TOKEN})
    if ENC_TOKEN not in vocab:
        tokenizer.add_special_tokens({"additional_special_tokens": [ENC_TOKEN]})
    return tokenizer


def _to_rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")


def image_transform(arch: Architecture) -> transforms.Compose:
    """The official preprocessing, picklable: PIL image -> (3, size, size) normalised tensor."""
    size = arch.image["size"]
    return transforms.Compose(
        [
            transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(size),
            _to_rgb,
            transforms.ToTensor(),
            transforms.Normalize(tuple(arch.image["mean"]), tuple(arch.image["std"])),
        ]
    )


# --- scorer ---------------------------------------------------------------------------


class ImageRewardScorer(PromptImageScorer):
    """Scores images against prompts with ImageReward v1.0 (see the module docstring).

    Args:
        weights: the official ``ImageReward.pt`` (or a file in its layout).
        tokenizer: a local bert-base-uncased tokenizer folder (``vocab.txt`` or
            ``tokenizer.json``); ``[DEC]`` and ``[ENC]`` are added if it lacks them.
        architecture: the architecture JSON (default: ImageReward v1.0's).
        device: torch device the model runs on.
        batch_size: images per forward pass.

    ``metric_id`` names the architecture by its JSON's SHA-256 and the weights by theirs,
    read once here (seconds for the 1.8 GB checkpoint). ``checkpoint_keys`` tells which
    checkpoint keys were loaded and which were known-unused and skipped.
    """

    column = "image_reward"

    def __init__(
        self,
        weights: str,
        tokenizer: str,
        architecture: str = str(DEFAULT_ARCHITECTURE),
        device: str = "cpu",
        batch_size: int = 16,
    ):
        weights_path = Path(weights).expanduser()
        if not weights_path.is_file():
            raise InputError(f"ImageReward weights not found: {weights_path} ({DOWNLOAD_HINT})")
        arch_path = Path(architecture).expanduser()
        self.arch = load_architecture(arch_path)
        self.tokenizer = load_tokenizer(Path(tokenizer).expanduser())
        self.device = torch.device(device)
        self.batch_size = batch_size
        model, self.checkpoint_keys = load_model(weights_path, self.arch)
        rows = self.arch.text["vocab_size"]
        if len(self.tokenizer) != rows:
            raise InputError(
                f"tokenizer {tokenizer} has {len(self.tokenizer)} tokens (with {DEC_TOKEN} and "
                f"{ENC_TOKEN}) but {weights_path} has {rows} word embeddings (expected a "
                f"bert-base-uncased tokenizer folder, 30522 + 2 tokens) - set {TOKENIZER_KEY}"
            )
        self.model = model.to(self.device)
        arch_id = sha256_file(arch_path)[:12]
        weights_id = sha256_file(weights_path)[:16]
        self._metric_id = (
            f"image_reward/{FORMULA_VERSION}/{self.arch.name}@{arch_id}/sha256:{weights_id}"
        )

    @property
    def metric_id(self) -> str:
        """Stable cache key: formula version, architecture (+ JSON hash) and weights."""
        return self._metric_id

    def transform(self) -> transforms.Compose:
        return image_transform(self.arch)

    def encode_prompts(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """Token ids and attention masks (P, max_length), padded and truncated as BLIP does."""
        tokens = self.tokenizer(
            list(prompts),
            padding="max_length",
            truncation=True,
            max_length=self.arch.max_length,
            return_tensors="pt",
        )
        return {
            "input_ids": tokens["input_ids"].long(),
            "attention_mask": tokens["attention_mask"].long(),
        }

    @torch.inference_mode()
    def score_pixels(self, pixels: torch.Tensor, texts: dict[str, torch.Tensor]) -> torch.Tensor:
        """The standardised reward (N,) of each image against its prompt's tokens."""
        rewards = self.model(
            pixels.to(self.device, torch.float32),
            texts["input_ids"].to(self.device),
            texts["attention_mask"].to(self.device),
        )
        return rewards.float().cpu()


# --- tiny model for tests and the offline demo -----------------------------------------

TINY_PROJECTION_DIM = 16  # width of the unused vision_proj / text_proj in the tiny checkpoint
TINY_WORDS = (
    "a an the of on in at with and or to is red blue green yellow white black cat dog "
    "cube sphere photo painting mat house tree sky car man woman city night sun"
).split()
LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"
TINY_VOCAB = list(
    dict.fromkeys(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        + list(".,!?'-")
        + list(LETTERS)
        + TINY_WORDS
        + ["##" + c for c in LETTERS]
        + ["##ing", "##ed", "##er"]
    )
)


def write_tiny_tokenizer(folder: Path) -> BertTokenizer:
    """A BertTokenizer folder with TINY_VOCAB plus [DEC] and [ENC] (BLIP's additions)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(TINY_VOCAB) + "\n", encoding="utf-8")
    tokenizer = load_tokenizer(folder)  # reads vocab.txt, adds [DEC] and [ENC]
    vocab.unlink()
    tokenizer.save_pretrained(folder)
    return tokenizer


def random_official_state_dict(arch: Architecture, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random tensors in the official key layout, every one distinct.

    Linear weights have std 1/sqrt(fan_in) (the tiny model's activations stay O(1)), norms
    weight 1 + noise, biases and embeddings noise: a renamed or swapped key changes the score.
    """
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, (_, _, shape) in official_layout(arch).items():
        noise = torch.randn(shape, generator=generator)
        if key.endswith("weight") and len(shape) >= 2 and "embeddings" not in key:
            fan_in = int(torch.tensor(shape[1:]).prod())
            state[key] = noise / fan_in**0.5
        elif "norm" in key.lower() and key.endswith("weight"):
            state[key] = 1.0 + 0.1 * noise
        else:
            state[key] = 0.1 * noise if key.endswith("bias") else 0.5 * noise
    vision, text = arch.vision["hidden_size"], arch.text["hidden_size"]
    state |= {
        "blip.vision_proj.weight": torch.randn(TINY_PROJECTION_DIM, vision, generator=generator),
        "blip.vision_proj.bias": torch.zeros(TINY_PROJECTION_DIM),
        "blip.text_proj.weight": torch.randn(TINY_PROJECTION_DIM, text, generator=generator),
        "blip.text_proj.bias": torch.zeros(TINY_PROJECTION_DIM),
        TEXT + "embeddings.position_ids": torch.arange(arch.text["max_position_embeddings"]).expand(
            1, -1
        ),
    }
    return state


def write_tiny_image_reward(folder: Path, seed: int = 0) -> None:
    """Writes folder/ImageReward.pt (official key layout, tiny architecture, seeded random
    weights incl. vision_proj/text_proj/position_ids) and folder/tokenizer/ (a BertTokenizer
    folder: TINY_VOCAB plus [DEC] and [ENC], saved with save_pretrained).

    ``ImageRewardScorer(folder/"ImageReward.pt", folder/"tokenizer", TINY_ARCHITECTURE)``
    loads them offline, through the same code as the real checkpoint.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arch = load_architecture(TINY_ARCHITECTURE)
    tokenizer = write_tiny_tokenizer(folder / "tokenizer")
    if len(tokenizer) != arch.text["vocab_size"]:
        raise ValueError(
            f"{TINY_ARCHITECTURE}: text.vocab_size {arch.text['vocab_size']} != the tiny "
            f"tokenizer's {len(tokenizer)} tokens"
        )
    state = random_official_state_dict(arch, seed)
    torch.save({key: value.contiguous() for key, value in state.items()}, folder / "ImageReward.pt")
