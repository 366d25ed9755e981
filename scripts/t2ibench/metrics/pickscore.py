"""PickScore of images against their prompts (Kirstain et al. 2023), with transformers' CLIPModel.

Formula (version ``v1``), as in the PickScore README, per image::

    pickscore(image, prompt) = exp(logit_scale) * cos(E_image, E_prompt)

where ``E`` are the model's projected image and text embeddings. With PickScore v1
(``exp(logit_scale)`` = 100) the score lies in [-100, 100]; real generated images score
about 20 to 23. It is a preference score: only differences between images of the same
prompt are meaningful (the README's softmax over candidates), not an absolute scale.

Text: CLIP tokenizer, padded to the longest prompt of a batch and truncated at 77 tokens
(CLIP's pooled EOS token never sees the padding behind it). Images: the processor's
CLIPImageProcessor (shortest side resized to 224, centre crop, CLIP mean/std).

The released model is ``yuvalkirstain/PickScore_v1``; its processor is the one of
``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``. Nothing is ever downloaded: each is a local
folder or a Hub id already in the local Hugging Face cache.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

from t2ibench.metrics.hf import (
    HfScorer,
    hf_metric_id,
    load_error,
    require_local,
    text_embeddings,
)
from t2ibench.models.clip_tokenizer import (
    CONTEXT_LENGTH,
    EOS_TOKEN,
    VOCAB_SIZE,
    write_clip_tokenizer,
)
from t2ibench.seeding import seeded

PROCESSOR_ANCHORS = ("preprocessor_config.json", "processor_config.json", "tokenizer_config.json")


class PickScoreScorer(HfScorer):
    """Scores images against prompts with a PickScore (CLIP) model (see the module docstring).

    Args:
        model: a folder holding a saved CLIPModel, or a Hub id (``yuvalkirstain/PickScore_v1``)
            already in the local Hugging Face cache.
        processor: the same for its CLIPProcessor (image processor + tokenizer files), e.g.
            ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``; defaults to ``model``.
        device: torch device the model runs on.
        batch_size: images (and prompts) per forward pass.

    ``metric_id`` names the weights by their SHA-256, read once here (seconds for 4 GB).
    """

    column = "pickscore"
    key = "metrics.pickscore.model"
    processor_key = "metrics.pickscore.processor"

    def __init__(
        self, model: str, processor: str | None = None, device: str = "cpu", batch_size: int = 32
    ):
        folder, name = require_local(
            model,
            ("config.json",),
            "PickScore model",
            "a CLIPModel",
            "yuvalkirstain/PickScore_v1",
            self.key,
        )
        processor = processor or model
        processor_found = require_local(
            processor,
            PROCESSOR_ANCHORS,
            "PickScore processor",
            "a CLIPProcessor",
            "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
            self.processor_key,
        )
        self.batch_size = batch_size
        self.device = torch.device(device)
        try:
            net = CLIPModel.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, ImportError, KeyError, TypeError) as e:
            raise load_error("the PickScore model", str(folder), self.key, e) from e
        try:
            clip_processor = CLIPProcessor.from_pretrained(
                processor_found[0], local_files_only=True
            )
        except (OSError, ValueError, ImportError, KeyError, TypeError) as e:
            raise load_error(
                "the PickScore processor", str(processor_found[0]), self.processor_key, e
            ) from e
        self.model = net.to(self.device).eval()
        self.image_processor = clip_processor.image_processor
        self.tokenizer = clip_processor.tokenizer
        self._metric_id = hf_metric_id("pickscore", name, folder)

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """L2-normalised text embeddings (P, D) on the CPU, truncated at 77 tokens."""
        inputs = ("input_ids", "attention_mask")
        return text_embeddings(self, prompts, inputs, padding=True, max_length=CONTEXT_LENGTH)

    @torch.inference_mode()
    def score_pixels(self, pixels: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """``exp(logit_scale) * cos`` per (image, prompt) row."""
        cosine = (self.image_embeddings(pixels) * texts.to(self.device)).sum(dim=-1)
        return (self.model.logit_scale.float().exp() * cosine).cpu()


def write_tiny_pickscore(folder: Path, seed: int = 0) -> None:
    """Save a tiny CLIPModel (seeded random weights) + CLIP processor files into ``folder``.

    The tokenizer is CLIP's real BPE tokenizer (``write_clip_tokenizer``, built offline); the
    image processor works at 32x32. ``CLIPModel`` / ``CLIPProcessor.from_pretrained(folder)``
    load it offline, as they load PickScore v1 and its LAION processor.
    """
    folder = Path(folder)
    common = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
    }
    config = CLIPConfig(
        text_config={
            **common,
            "vocab_size": VOCAB_SIZE,
            "max_position_embeddings": CONTEXT_LENGTH,
            "bos_token_id": VOCAB_SIZE - 2,
            "eos_token_id": VOCAB_SIZE - 1,
            "pad_token_id": VOCAB_SIZE - 1,
        },
        vision_config={**common, "image_size": 32, "patch_size": 16},
        projection_dim=16,
    )
    with seeded(seed):
        model = CLIPModel(config).eval()
    model.save_pretrained(folder)
    write_clip_tokenizer(folder, pad_token=EOS_TOKEN)
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(folder)
