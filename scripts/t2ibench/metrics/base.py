"""What every metric that scores an image against its prompt provides.

A scorer splits its work in three so that the workflow can run it fast:

- ``transform``: a picklable ``PIL.Image -> (C, H, W) float tensor`` run on the CPU, in
  DataLoader workers (decode and resize happen there, not on the GPU's critical path).
  It receives the image as decoded, in its own mode (RGBA, L, P, ...), and converts it
  as the metric's authors' code does (docs/metrics.md, "Preprocessing");
- ``encode_prompts``: what the model needs of each distinct prompt (embeddings, token
  ids), computed once per prompt however many images share it;
- ``score_pixels``: the scores of a batch of transformed images against their prompts'
  encodings, on the scorer's device.

``score(images, prompts)`` chains the three for callers that hold images in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

import torch
from PIL import Image

# Encoded prompts: a tensor with one row per prompt, or a dict of such tensors.
Encoded = torch.Tensor | dict[str, torch.Tensor]


def take_rows(encoded: Encoded, rows: torch.Tensor) -> Encoded:
    """The rows ``rows`` of encoded prompts (each tensor of a dict indexed alike)."""
    if isinstance(encoded, dict):
        return {key: value[rows] for key, value in encoded.items()}
    return encoded[rows]


class PromptImageScorer:
    """Base class: subclasses set ``column``, ``batch_size``, ``device`` and ``metric_id``
    and implement ``transform``, ``encode_prompts`` and ``score_pixels``."""

    column: str  # the results.csv column
    batch_size: int
    device: torch.device

    @property
    def metric_id(self) -> str:
        """Cache key: formula version, model (+ config hash) and weights identity."""
        raise NotImplementedError

    def transform(self) -> Callable[[Image.Image], torch.Tensor]:
        """A picklable function from a PIL image (any mode) to the model's input tensor."""
        raise NotImplementedError

    def encode_prompts(self, prompts: list[str]) -> Encoded:
        """One row per prompt (CPU tensors): what ``score_pixels`` needs of each prompt."""
        raise NotImplementedError

    def score_pixels(self, pixels: torch.Tensor, texts: Encoded) -> torch.Tensor:
        """Scores (N,) of ``pixels`` (N, C, H, W) against ``texts`` (N rows), on the CPU."""
        raise NotImplementedError

    def score(
        self, images: Sequence[Image.Image], prompts: Sequence[str], pool: Executor | None = None
    ) -> list[float]:
        """The score of each (image, prompt) pair; each distinct prompt is encoded once.
        With a `pool`, the images' transforms run on its threads (PIL's resizing and torch
        release the GIL)."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        row = {prompt: i for i, prompt in enumerate(dict.fromkeys(prompts))}
        encoded = self.encode_prompts(list(row))
        rows = torch.tensor([row[prompt] for prompt in prompts], dtype=torch.long)
        transform = self.transform()
        each = pool.map if pool is not None else map
        scores: list[float] = []
        for start in range(0, len(images), self.batch_size):
            end = start + self.batch_size
            pixels = torch.stack(list(each(transform, images[start:end])))
            scores += self.score_pixels(pixels, take_rows(encoded, rows[start:end])).tolist()
        return scores


def describe(scorer: Any) -> str:
    """One line for logs: the scorer's column and metric id."""
    return f"{scorer.column} ({scorer.metric_id})"
