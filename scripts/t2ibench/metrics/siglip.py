"""SigLIP score of images against their prompts, computed with transformers' SiglipModel.

Formula (version ``v1``), per image::

    siglip_score(image, prompt) = sigmoid(exp(logit_scale) * cos(E_image, E_prompt) + logit_bias)

where ``E`` are the model's image and text embeddings and ``logit_scale``, ``logit_bias`` its
own learnt parameters: the model's probability that the image matches the prompt, in [0, 1].
The raw cosine is not reported: SigLIP was trained through this sigmoid (pairwise loss), so
the probability is the quantity the model is calibrated for, and it is what transformers'
zero-shot pipeline reports.

Text is tokenised as SigLIP was trained: padded to the tokenizer's ``model_max_length``
(64 for the released checkpoints, capped at the model's position embeddings) and truncated
there, with no attention mask. SigLIP pools the last position, which is a padding token, and
big_vision and open_clip let it attend to the padding; transformers 5 tokenizers return an
``attention_mask``, and passing it changes the text embedding, so only ``input_ids`` are fed.

Images go through the checkpoint's own SiglipImageProcessor (resize to the model's square
size, rescale to [0, 1], normalise with mean 0.5 and std 0.5, i.e. pixels in [-1, 1]).

Nothing is ever downloaded: the model is a local folder, or a Hub id already in the local
Hugging Face cache (see t2ibench.metrics.hf).
"""

from __future__ import annotations

import math
import string
from pathlib import Path

import torch
from transformers import (
    AutoProcessor,
    SiglipConfig,
    SiglipImageProcessor,
    SiglipModel,
    SiglipProcessor,
)

from t2ibench.metrics.hf import (
    HfScorer,
    hf_metric_id,
    load_error,
    require_local,
    text_embeddings,
)
from t2ibench.seeding import seeded


class SiglipScorer(HfScorer):
    """Scores images against prompts with a SigLIP model (see the module docstring).

    Args:
        model: a folder holding a saved SiglipModel and its processor files, or a Hub id
            (``google/siglip-so400m-patch14-384``) already in the local Hugging Face cache.
        device: torch device the model runs on.
        batch_size: images (and prompts) per forward pass.

    ``metric_id`` names the weights by their SHA-256, read once here (seconds for 3 GB).
    """

    column = "siglip_score"
    key = "metrics.siglip.model"

    def __init__(self, model: str, device: str = "cpu", batch_size: int = 32):
        folder, name = require_local(
            model,
            ("config.json",),
            "SigLIP model",
            "a SiglipModel",
            "google/siglip-so400m-patch14-384",
            self.key,
        )
        self.batch_size = batch_size
        self.device = torch.device(device)
        try:
            net = SiglipModel.from_pretrained(folder, local_files_only=True)
            processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, ImportError, KeyError, TypeError) as e:
            raise load_error("the SigLIP model", str(folder), self.key, e) from e
        self.model = net.to(self.device).eval()
        self.image_processor = processor.image_processor
        self.tokenizer = processor.tokenizer
        positions = net.config.text_config.max_position_embeddings
        self.max_length = min(int(self.tokenizer.model_max_length), positions)
        self._metric_id = hf_metric_id("siglip_score", name, folder)

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """L2-normalised text embeddings (P, D) on the CPU, padded and truncated to max_length."""
        # input_ids only: SigLIP attends to its padding (see the module docstring)
        return text_embeddings(
            self, prompts, ("input_ids",), padding="max_length", max_length=self.max_length
        )

    @torch.inference_mode()
    def score_pixels(self, pixels: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """``sigmoid(exp(logit_scale) * cos + logit_bias)`` per (image, prompt) row."""
        cosine = (self.image_embeddings(pixels) * texts.to(self.device)).sum(dim=-1)
        logits = cosine * self.model.logit_scale.float().exp() + self.model.logit_bias.float()
        return torch.sigmoid(logits).cpu()


# --- a tiny SigLIP for tests and offline demos ---

TINY_WORDS = (
    "a an the of on in at and with photo painting picture cat dog bird red blue green white "
    "black cube sphere lighthouse dusk studio lighting"
).split()
TINY_MAX_LENGTH = 16


def _tiny_tokenizer():
    """A SigLIP-like Unigram tokenizer built with the tokenizers library (no sentencepiece).

    Like SiglipTokenizer: lower-case, punctuation stripped, whitespace collapsed, "▁" word
    prefix, ``</s>`` (id 1) appended and used for padding, ``<unk>`` id 2.
    """
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from transformers import PreTrainedTokenizerFast

    chars = string.ascii_lowercase + string.digits
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -3.0)]
    vocab += [(f"▁{word}", -4.0) for word in TINY_WORDS]
    vocab += [(c, -8.0) for c in chars] + [(f"▁{c}", -9.0) for c in chars]
    backend = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    punctuation = "[" + "".join("\\" + c for c in string.punctuation) + "]"
    backend.normalizer = normalizers.Sequence(
        [
            normalizers.Lowercase(),
            normalizers.Replace(Regex(punctuation), ""),
            normalizers.Replace(Regex(r"\s+"), " "),
            normalizers.Strip(),
        ]
    )
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="</s>",
        pad_token="</s>",
        unk_token="<unk>",
        model_max_length=TINY_MAX_LENGTH,
    )


def write_tiny_siglip(folder: Path, seed: int = 0) -> None:
    """Save a tiny SigLIP (seeded random weights) + processor that load offline from ``folder``.

    Vision: 32x32 images, 16-pixel patches; text: 16 tokens; both 32 wide, 2 layers. The
    tokenizer is a tokenizers-library Unigram model saved as tokenizer.json (SiglipTokenizer
    itself needs the sentencepiece package). ``logit_scale`` and ``logit_bias`` are set to
    log(10) and -1 so that the sigmoid is exercised away from 0.5.
    """
    folder = Path(folder)
    tokenizer = _tiny_tokenizer()
    common = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
    }
    config = SiglipConfig(
        text_config={
            **common,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": TINY_MAX_LENGTH,
            "pad_token_id": 1,
            "bos_token_id": 1,
            "eos_token_id": 1,
        },
        vision_config={**common, "image_size": 32, "patch_size": 16},
    )
    with seeded(seed):
        model = SiglipModel(config).eval()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(10.0))
        model.logit_bias.fill_(-1.0)
    model.save_pretrained(folder)
    image_processor = SiglipImageProcessor(size={"height": 32, "width": 32})
    SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
