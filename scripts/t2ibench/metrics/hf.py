"""Loading transformers metric models offline: local folders and cached Hub ids, their
identity for the score cache, their image transform and text embeddings.

Only the local Hugging Face cache is read (``try_to_load_from_cache`` never touches the
network) and models load with ``local_files_only=True``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import huggingface_hub
import torch
from PIL import Image

from t2ibench.errors import InputError
from t2ibench.metrics.base import PromptImageScorer
from t2ibench.models.checks import sha256_file

# v2: images reach the processor in their own mode (v1: converted to RGB first)
FORMULA_VERSION = "v2"


class ProcessorTransform:
    """Picklable ``PIL image -> (C, H, W)`` tensor: exactly the image processor's pixel_values.

    DataLoader workers receive a pickled copy; the transformers image processors pickle.
    """

    def __init__(self, image_processor):
        self.image_processor = image_processor

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.image_processor(images=[image], return_tensors="pt")["pixel_values"][0]


def pooled(features) -> torch.Tensor:
    """The embedding in a ``get_*_features`` result.

    transformers 5 returns a ``BaseModelOutputWithPooling`` whose ``pooler_output`` is the
    projected embedding; transformers 4 returned the tensor itself.
    """
    return features if isinstance(features, torch.Tensor) else features.pooler_output


class HfScorer(PromptImageScorer):
    """What the transformers scorers share: the cache key, the image processor as the
    transform, and L2-normalised image embeddings. Subclasses set ``model``,
    ``image_processor``, ``tokenizer`` and ``_metric_id``."""

    _metric_id: str

    @property
    def metric_id(self) -> str:
        """Stable cache key: formula version, model (+ config hash) and weights."""
        return self._metric_id

    def transform(self) -> ProcessorTransform:
        return ProcessorTransform(self.image_processor)

    @torch.inference_mode()
    def image_embeddings(self, pixels: torch.Tensor) -> torch.Tensor:
        """L2-normalised image embeddings (N, D) on the scorer's device."""
        image = pooled(self.model.get_image_features(pixel_values=pixels.to(self.device)))
        return torch.nn.functional.normalize(image.float(), dim=-1)


@torch.inference_mode()
def text_embeddings(scorer, prompts: list[str], inputs: tuple[str, ...], **tokenizer_kwargs):
    """L2-normalised text embeddings (P, D) on the CPU from ``scorer.model``'s
    ``get_text_features``, fed the tokenizer outputs named in ``inputs``, in batches."""
    rows = []
    for start in range(0, len(prompts), scorer.batch_size):
        tokens = scorer.tokenizer(
            prompts[start : start + scorer.batch_size],
            truncation=True,
            return_tensors="pt",
            **tokenizer_kwargs,
        )
        fed = {name: tokens[name].to(scorer.device) for name in inputs}
        text = pooled(scorer.model.get_text_features(**fed))
        rows.append(torch.nn.functional.normalize(text.float(), dim=-1))
    return torch.cat(rows).cpu()


# Files that name a model's weights, in the order from_pretrained prefers them.
WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")
INDEX_SUFFIX = ".index.json"


def resolve_local(model: str, anchors: tuple[str, ...]) -> tuple[Path, str] | None:
    """(folder, display name) of a local folder or of a Hub id's cached snapshot, else None.

    A Hub id resolves to the snapshot (``refs/main``) holding one of ``anchors``; only the
    local cache is read (``try_to_load_from_cache`` never touches the network).
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return path, path.resolve().name
    if not model or model.startswith(("/", ".", "~")) or model.count("/") > 1:
        return None
    for anchor in anchors:
        try:
            found = huggingface_hub.try_to_load_from_cache(model, anchor)
        except ValueError:  # not a valid repo id (HFValidationError)
            return None
        if isinstance(found, str):
            return Path(found).parent, model
    return None


def require_local(
    model: str, anchors: tuple[str, ...], what: str, holds: str, example: str, key: str
) -> tuple[Path, str]:
    """resolve_local of a folder holding one of `anchors`, or one InputError naming `what`
    was not found, what its folder `holds`, an `example` Hub id and the config `key`."""
    found = resolve_local(model, anchors)
    if found is None or not any((found[0] / anchor).is_file() for anchor in anchors):
        raise InputError(
            f"{what} not found locally: {model} (put {holds} folder there or in the Hugging "
            f"Face cache, e.g. {example}; nothing is downloaded) - set {key}"
        )
    return found


def weights_id(folder: Path) -> str:
    """``sha256:<16 hex>`` of the weights file, or of the shards' digests for a sharded one."""
    for name in WEIGHTS_FILES:
        if (folder / name).is_file():
            return f"sha256:{sha256_file(folder / name)[:16]}"
        index = folder / (name + INDEX_SUFFIX)
        if index.is_file():
            try:
                shards = sorted(
                    set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
                )
            except (ValueError, KeyError, AttributeError) as e:
                raise InputError(f"unreadable weights index {index}: {e}") from e
            lines = "".join(f"{shard} {sha256_file(folder / shard)}\n" for shard in shards)
            return f"sha256:{hashlib.sha256(lines.encode()).hexdigest()[:16]}"
    expected = " or ".join(WEIGHTS_FILES)
    raise InputError(f"no weights file in {folder} (expected {expected}, or a sharded index)")


def hf_metric_id(metric: str, name: str, folder: Path) -> str:
    """``<metric>/<version>/<name>@<config.json sha256, 12 hex>/<weights id>``."""
    config_id = sha256_file(folder / "config.json")[:12]
    return f"{metric}/{FORMULA_VERSION}/{name}@{config_id}/{weights_id(folder)}"


def load_error(what: str, source: str, key: str, error: Exception) -> InputError:
    """One line for a folder that exists but does not load (bad files, a missing package).

    A missing package (SiglipTokenizer needs sentencepiece and protobuf) is named in the
    first sentence of transformers' ImportError; the rest is installation advice.
    """
    reason = str(error).strip()
    if isinstance(error, ImportError):
        reason = reason.split(". ")[0]
    return InputError(
        f"cannot load {what} from {source}: {type(error).__name__}: {reason[:300]} - set {key}"
    )
