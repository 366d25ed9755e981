"""ImageReward's architecture JSON and official checkpoint (t2ibench.metrics.image_reward
builds the model from them).

Architecture JSON (``config/metrics/image-reward-v1.json``; ``image-reward-tiny.json`` is the
same structure with tiny sizes for tests and the offline demo)::

    {
      "description": "...",                           # free text
      "image": {"size": 224, "mean": [3 floats], "std": [3 floats]},
      "vision": {"patch_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size", "layer_norm_eps"},   # BLIP's timm-style ViT
      "text": {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
               "intermediate_size", "max_position_embeddings", "layer_norm_eps",
               "max_length"},                              # BLIP's "med" BERT, tokenizer length
      "head": {"sizes": [in, h1, h2, h3, h4, 1], "mean": float, "std": float}
    }

The vision image size is ``image.size``; the cross-attention width (BLIP's
``encoder_width``) is ``vision.hidden_size``; both encoders use exact (erf) GELU and the text
encoder's pad token is id 0, as in BLIP. ``head.sizes`` are the widths of the five Linear
layers of ``mlp.layers`` (Sequential indices 0, 2, 4, 6, 7; dropouts in between).

Checkpoint keys: every key of the official layout is consumed, either renamed onto the
transformers modules (``blip.visual_encoder.*``, ``blip.text_encoder.*``, ``mlp.layers.*``) or
in ``KNOWN_UNUSED`` (``blip.vision_proj.*``, ``blip.text_proj.*``: contrastive projections that
``score`` never uses; ``blip.text_encoder.embeddings.position_ids``: a constant buffer). A key
that is neither, or an expected key that is missing, is refused with one line naming the file
and the key; ``ImageRewardScorer.checkpoint_keys`` records which keys were used and skipped.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import BlipTextConfig, BlipVisionConfig

from t2ibench.errors import InputError

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_ARCHITECTURE = ROOT / "config" / "metrics" / "image-reward-v1.json"
TINY_ARCHITECTURE = ROOT / "config" / "metrics" / "image-reward-tiny.json"
WEIGHTS_KEY = "metrics.image_reward.weights"
ARCHITECTURE_KEY = "metrics.image_reward.architecture"

VISION = "blip.visual_encoder."
TEXT = "blip.text_encoder."
HEAD = "mlp.layers."
# Positions of the Linear layers in the official head: Linear, Dropout(0.2), Linear,
# Dropout(0.2), Linear, Dropout(0.1), Linear, Linear (no activations).
HEAD_LINEAR_INDICES = (0, 2, 4, 6, 7)
HEAD_DROPOUTS = (0.2, 0.2, 0.1)
# Keys of the official checkpoint that the score does not use.
KNOWN_UNUSED = (
    "blip.vision_proj.weight",
    "blip.vision_proj.bias",
    "blip.text_proj.weight",
    "blip.text_proj.bias",
    TEXT + "embeddings.position_ids",
)

SECTION_KEYS = {
    "image": {"size", "mean", "std"},
    "vision": {
        "patch_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "layer_norm_eps",
    },
    "text": {
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "max_position_embeddings",
        "layer_norm_eps",
        "max_length",
    },
    "head": {"sizes", "mean", "std"},
}


# --- architecture ---------------------------------------------------------------------


@dataclass(frozen=True)
class Architecture:
    """An ImageReward architecture JSON, checked (see the module docstring)."""

    name: str
    image: dict
    vision: dict
    text: dict
    head: dict

    @property
    def max_length(self) -> int:
        return self.text["max_length"]

    def vision_config(self) -> BlipVisionConfig:
        v = self.vision
        return BlipVisionConfig(
            hidden_size=v["hidden_size"],
            intermediate_size=v["intermediate_size"],
            num_hidden_layers=v["num_hidden_layers"],
            num_attention_heads=v["num_attention_heads"],
            image_size=self.image["size"],
            patch_size=v["patch_size"],
            hidden_act="gelu",
            layer_norm_eps=v["layer_norm_eps"],
            attention_dropout=0.0,
        )

    def text_config(self) -> BlipTextConfig:
        t = self.text
        return BlipTextConfig(
            vocab_size=t["vocab_size"],
            hidden_size=t["hidden_size"],
            encoder_hidden_size=self.vision["hidden_size"],
            intermediate_size=t["intermediate_size"],
            num_hidden_layers=t["num_hidden_layers"],
            num_attention_heads=t["num_attention_heads"],
            max_position_embeddings=t["max_position_embeddings"],
            hidden_act="gelu",
            layer_norm_eps=t["layer_norm_eps"],
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            pad_token_id=0,
            bos_token_id=None,
            eos_token_id=None,
            sep_token_id=None,
            # transformers builds the cross-attention modules only for a "decoder" config;
            # the forward still runs in encoder mode (is_decoder=False: no causal mask)
            is_decoder=True,
            use_cache=False,
        )


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _positive_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _check_section(path: Path, data: dict, section: str) -> dict:
    """The section's dict, after checking it has exactly the expected keys."""
    values = data.get(section)
    expected = SECTION_KEYS[section]
    if not isinstance(values, dict):
        raise InputError(f"{path}: missing section '{section}' (expected keys {sorted(expected)})")
    missing, unknown = expected - set(values), set(values) - expected
    if missing or unknown:
        problem = f"missing {sorted(missing)}" if missing else f"unknown {sorted(unknown)}"
        raise InputError(
            f"{path}: section '{section}' has {problem} keys (expected {sorted(expected)})"
        )
    return values


def _check_values(path: Path, arch: Architecture) -> None:
    """Types and consistency: positive sizes, divisible heads, a head fed by the text CLS."""
    ints = [("image", "size")]
    ints += [("vision", k) for k in SECTION_KEYS["vision"] - {"layer_norm_eps"}]
    ints += [("text", k) for k in SECTION_KEYS["text"] - {"layer_norm_eps"}]
    for section, key in ints:
        if not _positive_int(getattr(arch, section)[key]):
            raise InputError(f"{path}: '{section}.{key}' must be a positive integer")
    for section, key in [("vision", "layer_norm_eps"), ("text", "layer_norm_eps"), ("head", "std")]:
        if not _positive_number(getattr(arch, section)[key]):
            raise InputError(f"{path}: '{section}.{key}' must be a positive number")
    if not isinstance(arch.head["mean"], int | float) or isinstance(arch.head["mean"], bool):
        raise InputError(f"{path}: 'head.mean' must be a number")
    for key in ("mean", "std"):
        value = arch.image[key]
        if not (isinstance(value, list) and len(value) == 3 and all(map(_positive_number, value))):
            raise InputError(f"{path}: 'image.{key}' must be a list of 3 positive numbers")
    for section in ("vision", "text"):
        width, heads = arch_dims(arch, section)
        if width % heads:
            raise InputError(
                f"{path}: '{section}.hidden_size' {width} is not a multiple of "
                f"'{section}.num_attention_heads' {heads}"
            )
    if arch.image["size"] % arch.vision["patch_size"]:
        raise InputError(f"{path}: 'image.size' must be a multiple of 'vision.patch_size'")
    if arch.text["max_length"] > arch.text["max_position_embeddings"]:
        raise InputError(f"{path}: 'text.max_length' exceeds 'text.max_position_embeddings'")
    sizes = arch.head["sizes"]
    if not (isinstance(sizes, list) and len(sizes) == 6 and all(map(_positive_int, sizes))):
        raise InputError(f"{path}: 'head.sizes' must be 6 positive integers (5 Linear layers)")
    if sizes[0] != arch.text["hidden_size"] or sizes[-1] != 1:
        raise InputError(
            f"{path}: 'head.sizes' must start at text.hidden_size "
            f"({arch.text['hidden_size']}) and end at 1, got {sizes}"
        )


def arch_dims(arch: Architecture, section: str) -> tuple[int, int]:
    values = getattr(arch, section)
    return values["hidden_size"], values["num_attention_heads"]


def load_architecture(path: str | Path) -> Architecture:
    """The architecture JSON at ``path``, checked; InputError names the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"ImageReward architecture JSON not found: {path} (expected a file such as "
            f"{DEFAULT_ARCHITECTURE}) - set {ARCHITECTURE_KEY}"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e}) - set {ARCHITECTURE_KEY}") from e
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object with image, vision, text and head")
    sections = {name: _check_section(path, data, name) for name in SECTION_KEYS}
    arch = Architecture(name=path.stem, **sections)
    _check_values(path, arch)
    return arch


# --- official checkpoint layout -------------------------------------------------------


def _linear(prefix: str, out_features: int, in_features: int) -> dict[str, tuple[int, ...]]:
    return {prefix + "weight": (out_features, in_features), prefix + "bias": (out_features,)}


def _norm(prefix: str, width: int) -> dict[str, tuple[int, ...]]:
    return {prefix + "weight": (width,), prefix + "bias": (width,)}


def _vision_keys(arch: Architecture) -> dict[str, tuple[str, tuple[int, ...]]]:
    """BLIP ViT key -> (BlipVisionModel key, shape)."""
    v = arch.vision
    width, patch, hidden = v["hidden_size"], v["patch_size"], v["intermediate_size"]
    tokens = (arch.image["size"] // patch) ** 2 + 1
    keys = {
        "cls_token": ("embeddings.class_embedding", (1, 1, width)),
        "pos_embed": ("embeddings.position_embedding", (1, tokens, width)),
        "patch_embed.proj.weight": ("embeddings.patch_embedding.weight", (width, 3, patch, patch)),
        "patch_embed.proj.bias": ("embeddings.patch_embedding.bias", (width,)),
    }
    renames = {
        "norm1.": ("layer_norm1.", _norm("", width)),
        "attn.qkv.": ("self_attn.qkv.", _linear("", 3 * width, width)),
        "attn.proj.": ("self_attn.projection.", _linear("", width, width)),
        "norm2.": ("layer_norm2.", _norm("", width)),
        "mlp.fc1.": ("mlp.fc1.", _linear("", hidden, width)),
        "mlp.fc2.": ("mlp.fc2.", _linear("", width, hidden)),
    }
    for i in range(v["num_hidden_layers"]):
        for old, (new, shapes) in renames.items():
            for leaf, shape in shapes.items():
                keys[f"blocks.{i}.{old}{leaf}"] = (f"encoder.layers.{i}.{new}{leaf}", shape)
    for leaf, shape in _norm("", width).items():
        keys["norm." + leaf] = ("post_layernorm." + leaf, shape)
    return keys


def _text_keys(arch: Architecture) -> dict[str, tuple[str, tuple[int, ...]]]:
    """BLIP med BERT key -> (BlipTextModel key, shape); transformers kept BLIP's names."""
    t = arch.text
    width, hidden = t["hidden_size"], t["intermediate_size"]
    image_width = arch.vision["hidden_size"]
    shapes = {
        "embeddings.word_embeddings.weight": (t["vocab_size"], width),
        "embeddings.position_embeddings.weight": (t["max_position_embeddings"], width),
        **_norm("embeddings.LayerNorm.", width),
    }
    for i in range(t["num_hidden_layers"]):
        layer = f"encoder.layer.{i}."
        for block, kv_width in (("attention.", width), ("crossattention.", image_width)):
            shapes |= _linear(layer + block + "self.query.", width, width)
            shapes |= _linear(layer + block + "self.key.", width, kv_width)
            shapes |= _linear(layer + block + "self.value.", width, kv_width)
            shapes |= _linear(layer + block + "output.dense.", width, width)
            shapes |= _norm(layer + block + "output.LayerNorm.", width)
        shapes |= _linear(layer + "intermediate.dense.", hidden, width)
        shapes |= _linear(layer + "output.dense.", width, hidden)
        shapes |= _norm(layer + "output.LayerNorm.", width)
    return {key: (key, shape) for key, shape in shapes.items()}


def _head_keys(arch: Architecture) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Official MLP key -> (our head's key, shape): the same Sequential indices."""
    sizes = arch.head["sizes"]
    keys = {}
    for n, index in enumerate(HEAD_LINEAR_INDICES):
        for key, shape in _linear(f"{index}.", sizes[n + 1], sizes[n]).items():
            keys[key] = (key, shape)
    return keys


def official_layout(arch: Architecture) -> dict[str, tuple[str, str, tuple[int, ...]]]:
    """Every key the score needs: official key -> (part, key in that part, shape).

    Parts are ``vision`` (BlipVisionModel), ``text`` (BlipTextModel) and ``head`` (the MLP).
    """
    layout = {}
    for prefix, part, keys in (
        (VISION, "vision", _vision_keys(arch)),
        (TEXT, "text", _text_keys(arch)),
        (HEAD, "head", _head_keys(arch)),
    ):
        for old, (new, shape) in keys.items():
            layout[prefix + old] = (part, new, shape)
    return layout


@dataclass(frozen=True)
class CheckpointKeys:
    """How a checkpoint's keys were consumed: mapped into the model, or known to be unused."""

    used: tuple[str, ...]
    skipped: tuple[str, ...]


def map_checkpoint(
    state_dict: dict, arch: Architecture, path: str | Path
) -> tuple[dict[str, dict[str, torch.Tensor]], CheckpointKeys]:
    """Split an official-layout state dict into the parts' state dicts.

    Every key must be used or in KNOWN_UNUSED, every needed key present, every shape the
    architecture's: otherwise InputError naming ``path`` and the key.
    """
    layout = official_layout(arch)
    for key in state_dict:
        if key not in layout and key not in KNOWN_UNUSED:
            raise InputError(
                f"{path}: unknown key '{key}' (expected only the official ImageReward v1.0 keys: "
                f"{VISION}*, {TEXT}*, {HEAD}* and {', '.join(KNOWN_UNUSED)})"
            )
    parts: dict[str, dict[str, torch.Tensor]] = {"vision": {}, "text": {}, "head": {}}
    for key, (part, new, shape) in layout.items():
        if key not in state_dict:
            raise InputError(
                f"{path}: missing key '{key}' (expected the official ImageReward v1.0 layout "
                f"of architecture {arch.name})"
            )
        tensor = state_dict[key]
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape:
            found = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor)
            raise InputError(
                f"{path}: key '{key}' has shape {found}, expected {shape} for architecture "
                f"{arch.name} (is {ARCHITECTURE_KEY} the architecture of these weights?)"
            )
        parts[part][new] = tensor
    used = tuple(key for key in state_dict if key in layout)
    skipped = tuple(key for key in state_dict if key not in layout)
    return parts, CheckpointKeys(used=used, skipped=skipped)


# What torch.load raises on a file that is not a tensors-only torch.save checkpoint.
READ_ERRORS = (
    pickle.UnpicklingError,
    RuntimeError,
    OSError,
    EOFError,
    ValueError,
    zipfile.BadZipFile,
)


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (a torch.save file; tensors only, no code runs)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except READ_ERRORS as e:
        reason = " ".join(str(e).split())[:200]
        raise InputError(
            f"cannot read ImageReward weights {path}: {type(e).__name__}: {reason} (expected "
            f"a torch.save state dict such as ImageReward.pt) - set {WEIGHTS_KEY}"
        ) from e
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise InputError(f"{path}: expected a state dict (parameter name -> tensor)")
    if data and all(k.startswith("module.") for k in data):  # saved from DataParallel
        data = {k.removeprefix("module."): v for k, v in data.items()}
    return data
