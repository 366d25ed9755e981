"""Tiny random vision-language models in the real on-disk format (save_pretrained), for
VQAScore offline: the demo and the tests load them with the same code as real weights.

Built from the real architectures (Qwen2.5-VL, Qwen3-VL) with a few layers of width 32,
a byte-level BPE tokenizer of Qwen's kind (its special tokens, "Yes" one token) and a chat
template of Qwen's shape. Their scores mean nothing.
"""

from __future__ import annotations

from pathlib import Path

from t2ibench.seeding import seeded

# Words spelled as one token each, so the question and the answer tokenize as in Qwen.
WORDS = [
    "Yes", "yes", "No", "no", "Does", "this", "figure", "show", "Please", "answer", "or",
    "user", "assistant", "system", "photo", "of",
]  # fmt: skip
SPECIAL = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|image_pad|>", "<|video_pad|>",
]  # fmt: skip
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Small images: 4 to 64 merged patches (28 px each for Qwen2.5-VL, 32 px for Qwen3-VL).
MIN_PATCHES, MAX_PATCHES = 4, 64
CONTEXT = 512  # max_position_embeddings: small, so a long prompt runs past it


def _tokenizer():
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    from t2ibench.models.zimage import _byte_symbols, _merges

    merges = _merges(WORDS)
    tokens = [*_byte_symbols(), *("".join(pair) for pair in merges)]
    tokenizer = Qwen2Tokenizer(
        vocab={token: i for i, token in enumerate(tokens)},
        merges=merges,
        model_max_length=CONTEXT,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.add_tokens([AddedToken(t, special=True) for t in SPECIAL])
    return tokenizer


def write_tiny_vlm(folder: Path, family: str = "qwen2_5_vl", seed: int = 0) -> None:
    """A tiny `family` (qwen2_5_vl or qwen3_vl) model and its processor in `folder`."""
    tokenizer = _tokenizer()
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL}
    special = {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": CONTEXT,
        "pad_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "bos_token_id": None,
    }
    if family == "qwen2_5_vl":
        from transformers import (
            Qwen2_5_VLConfig,
            Qwen2_5_VLForConditionalGeneration,
            Qwen2_5_VLProcessor,
            Qwen2VLImageProcessor,
            Qwen2VLVideoProcessor,
        )

        patch = 14
        config = Qwen2_5_VLConfig(
            vision_config={
                "depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                "out_hidden_size": 32, "patch_size": patch, "spatial_merge_size": 2,
                "temporal_patch_size": 2, "window_size": 112, "fullatt_block_indexes": [0],
            },
            text_config={
                **text,
                "rope_parameters": {
                    "rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3],
                },
            },
            **special,
        )  # fmt: skip
        model_class, processor_class = Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor
        image_class, video_class = Qwen2VLImageProcessor, Qwen2VLVideoProcessor
    elif family == "qwen3_vl":
        from transformers import (
            Qwen2VLImageProcessor,
            Qwen3VLConfig,
            Qwen3VLForConditionalGeneration,
            Qwen3VLProcessor,
            Qwen3VLVideoProcessor,
        )

        patch = 16
        config = Qwen3VLConfig(
            vision_config={
                "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                "out_hidden_size": 32, "patch_size": patch, "spatial_merge_size": 2,
                "temporal_patch_size": 2, "num_position_embeddings": 64,
                "deepstack_visual_indexes": [0],
            },
            text_config={
                **text,
                "head_dim": 16,
                "rope_parameters": {
                    "rope_type": "default", "rope_theta": 5e6, "mrope_section": [2, 3, 3],
                    "mrope_interleaved": True,
                },
            },
            **special,
        )  # fmt: skip
        model_class, processor_class = Qwen3VLForConditionalGeneration, Qwen3VLProcessor
        image_class, video_class = Qwen2VLImageProcessor, Qwen3VLVideoProcessor
    else:
        raise ValueError(f"no tiny model of family {family}")
    side = patch * 2  # one merged patch
    pixels = {
        "min_pixels": MIN_PATCHES * side * side,
        "max_pixels": MAX_PATCHES * side * side,
        "patch_size": patch,
        "merge_size": 2,
        "temporal_patch_size": 2,
    }
    processor = processor_class(
        image_processor=image_class(**pixels),
        tokenizer=tokenizer,
        video_processor=video_class(**pixels),
        chat_template=CHAT_TEMPLATE,
    )
    with seeded(seed):
        model = model_class(config).eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
