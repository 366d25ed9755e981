"""The built-in metrics: one registry entry each (see t2ibench.metrics.registry).

Per image, against the image's prompt: ``clip_score``, ``siglip_score``,
``image_reward``, ``pickscore``, ``hps``; per image, against the prompt's reference image:
``reference_similarity`` (``clip_ref_cosine`` and ``lpips_ref``); per (model, cell,
prompt): ``lpips_diversity``, ``clip_diversity``; per set of images: ``fid`` (FID and KID
of each model's or cell's images against the reference images, or the first model).
Per image, with a model's answer: ``vqascore``; GenEval: ``geneval`` (per image) and
``geneval_tasks`` (per set). Formulas and preprocessing: docs/metrics.md; how each entry
builds its scorer: t2ibench.metrics.builders.
"""

from __future__ import annotations

from t2ibench.metrics.builders import (
    _check_clip,
    _check_fid,
    _check_image_reward,
    _check_vqascore,
    _clip,
    _hps,
    _image_reward,
    _pickscore,
    _prompt_scores,
    _random_clip,
    _siglip,
    _table,
    _write_tiny_detector,
    _write_tiny_hps,
    _write_tiny_image_reward,
    _write_tiny_pickscore,
    _write_tiny_siglip,
    _write_tiny_vlm,
)
from t2ibench.metrics.registry import (
    DEVICE_SETTING,
    Column,
    Metric,
    WeightFile,
    is_builtin,
    register,
)


def _batch(default: int) -> dict:
    return {"type": "integer", "minimum": 1, "default": default}


def _text(default: str, description: str, required: bool = False) -> dict:
    return {"type": "string", "default": default, "description": description} | (
        {"minLength": 1} if required else {}
    )


# --- the entries ----------------------------------------------------------------------

OPEN_CLIP_CONFIG = "an open_clip model-config JSON"
LPIPS_SOURCE = (
    "the torchvision backbone (alexnet-owt-7be5be79.pth, vgg16-397923af.pth or "
    "squeezenet1_1-b8a52dc0.pth from https://download.pytorch.org/models/)"
)
INCEPTION_SOURCE = (
    "inception-2015-12-05.pt from https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/"
    "pretrained/metrics/inception-2015-12-05.pt"
)

register(
    Metric(
        name="clip_score",
        section="clip",
        granularity="image",
        columns=(Column("clip_score"),),
        summary="CLIP score: 100 x max(cos(image, prompt), 0) with an open_clip model.",
        table=_prompt_scores(_clip),
        scorer=_clip,
        check=_check_clip,
        settings={
            "model": _text(
                "config/models/open_clip-tiny.json",
                "An open_clip architecture name, or a path to an open_clip model-config JSON.",
                required=True,
            ),
            "pretrained": _text(
                "",
                "An open_clip pretrained tag, or a weights file path; empty means random "
                "weights (demo only).",
            ),
            "batch_size": _batch(32),
            "device": DEVICE_SETTING,
        },
        files=(
            WeightFile("model", OPEN_CLIP_CONFIG),
            WeightFile("pretrained", "an open_clip weights file"),
        ),
        demo=_random_clip,
    )
)
register(
    Metric(
        name="siglip_score",
        section="siglip",
        granularity="image",
        columns=(Column("siglip_score"),),
        summary="SigLIP score: the model's match probability sigmoid(scale x cos + bias).",
        table=_prompt_scores(_siglip),
        scorer=_siglip,
        settings={
            "model": _text(
                "builtin:tiny-siglip",
                "A SiglipModel folder, or a Hub id already in the local Hugging Face cache.",
                required=True,
            ),
            "batch_size": _batch(32),
            "device": DEVICE_SETTING,
        },
        files=(WeightFile("model", "a saved SiglipModel (save_pretrained)", "", ("config.json",)),),
        builtins={"tiny-siglip": _write_tiny_siglip},
    )
)
register(
    Metric(
        name="image_reward",
        granularity="image",
        columns=(Column("image_reward"),),
        summary="ImageReward v1.0: a BLIP reward model of human preference (normalised).",
        table=_prompt_scores(_image_reward),
        scorer=_image_reward,
        check=_check_image_reward,
        settings={
            "weights": _text(
                "builtin:tiny-image-reward",
                "The official ImageReward.pt (ImageReward v1.0).",
                required=True,
            ),
            "tokenizer": _text(
                "", "A bert-base-uncased tokenizer folder (empty only with a builtin model)."
            ),
            "architecture": _text(
                "",
                "Architecture JSON; empty means config/metrics/image-reward-v1.json (the tiny "
                "one for a builtin model).",
            ),
            "batch_size": _batch(16),
            "device": DEVICE_SETTING,
        },
        files=(
            WeightFile(
                "weights",
                "the ImageReward checkpoint",
                "ImageReward.pt from https://huggingface.co/THUDM/ImageReward",
            ),
            WeightFile("architecture", "an ImageReward architecture JSON"),
            WeightFile("tokenizer", "a BERT tokenizer", "", ("vocab.txt", "tokenizer.json")),
        ),
        builtins={"tiny-image-reward": _write_tiny_image_reward},
    )
)
register(
    Metric(
        name="pickscore",
        granularity="image",
        columns=(Column("pickscore"),),
        summary="PickScore v1: a CLIP model fine-tuned on Pick-a-Pic preferences (scaled cosine).",
        table=_prompt_scores(_pickscore),
        scorer=_pickscore,
        settings={
            "model": _text(
                "builtin:tiny-pickscore",
                "A CLIPModel folder or cached Hub id (PickScore v1 is yuvalkirstain/PickScore_v1).",
                required=True,
            ),
            "processor": _text(
                "", "Its processor folder or cached Hub id; empty means the model's own."
            ),
            "batch_size": _batch(32),
            "device": DEVICE_SETTING,
        },
        files=(
            WeightFile("model", "a saved CLIPModel (save_pretrained)", "", ("config.json",)),
            WeightFile("processor", "a saved CLIPProcessor", "", ("preprocessor_config.json",)),
        ),
        builtins={"tiny-pickscore": _write_tiny_pickscore},
    )
)
register(
    Metric(
        name="hps",
        granularity="image",
        columns=(Column("hps"),),
        summary="HPS v2: cos(image, prompt) of an open_clip model fine-tuned on human preferences.",
        table=_prompt_scores(_hps),
        scorer=_hps,
        settings={
            "model": _text(
                "ViT-H-14",
                "The open_clip architecture of the HPS weights (HPS v2.1 is ViT-H-14).",
                required=True,
            ),
            "weights": _text(
                "builtin:tiny-hps", "The HPS checkpoint (HPS_v2.1_compressed.pt).", required=True
            ),
            "antialias": {
                "type": "boolean",
                "default": True,
                "description": (
                    "Antialias the bicubic resize of the official preprocessing: true is what "
                    "HPSv2's code does with torchvision >= 0.17, false with older torchvision."
                ),
            },
            "batch_size": _batch(32),
            "device": DEVICE_SETTING,
        },
        files=(
            WeightFile(
                "weights",
                "the HPS checkpoint",
                "HPS_v2.1_compressed.pt from https://huggingface.co/xswu/HPSv2",
            ),
        ),
        builtins={"tiny-hps": _write_tiny_hps},
    )
)
register(
    Metric(
        name="vqascore",
        granularity="image",
        columns=(
            Column("vqascore"),
            Column("vqascore_prompt_truncated", summarised=False),
        ),
        summary=(
            "VQAScore: a vision-language model's probability of answering Yes to whether "
            "the image shows the prompt."
        ),
        table=_table("table", "t2ibench.metrics.vqascore"),
        settings={
            "model": _text(
                "builtin:tiny-qwen2.5-vl",
                "A Qwen2-VL, Qwen2.5-VL or Qwen3-VL folder with its processor, or a Hub id "
                "already in the local Hugging Face cache.",
                required=True,
            ),
            "question": _text(
                'Does this figure show "{}"? Please answer yes or no.',
                "The question; {} stands for the prompt.",
                required=True,
            ),
            "answer": _text("Yes", "The answer whose probability is the score.", required=True),
            "min_pixels": {"type": "integer", "minimum": 0, "default": 0},
            "max_pixels": {"type": "integer", "minimum": 0, "default": 0},
            "dtype": {
                "type": "string",
                "enum": ["auto", "float32", "bfloat16", "float16"],
                "default": "auto",
            },
            "batch_size": _batch(8),
            "device": DEVICE_SETTING,
        },
        files=(
            WeightFile(
                "model",
                "a vision-language model folder (save_pretrained, with its processor)",
                "",
                ("config.json",),
            ),
        ),
        builtins={"tiny-qwen2.5-vl": _write_tiny_vlm},
        check=_check_vqascore,
    )
)
register(
    Metric(
        name="geneval",
        granularity="image",
        columns=(
            Column("geneval", verdict=True),
            Column("geneval_task", summarised=False),
            Column("geneval_reason", summarised=False),
        ),
        summary=(
            "GenEval: 1 when a detector finds what the prompt's GenEval metadata asks for "
            "(objects, counts, colours, positions), else 0; empty for prompts without it."
        ),
        table=_table("image_table", "t2ibench.geneval.metric"),
        enabled_by_default=False,
        settings={
            "detector": _text(
                "builtin:tiny-mask2former",
                "A Mask2Former COCO-instance folder or cached Hub id (e.g. "
                "facebook/mask2former-swin-small-coco-instance).",
                required=True,
            ),
            "clip_model": _text(
                "config/models/open_clip-tiny.json",
                "The open_clip architecture of the colour classifier (GenEval: ViT-L-14).",
                required=True,
            ),
            "clip_pretrained": _text(
                "", "Its pretrained tag or weights file (GenEval: openai); empty = random."
            ),
            "threshold": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.3},
            "counting_threshold": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.9},
            "max_objects": {"type": "integer", "minimum": 1, "default": 16},
            "position_margin": {"type": "number", "minimum": 0, "default": 0.1},
            "device": DEVICE_SETTING,
        },
        files=(
            WeightFile(
                "detector",
                "a Mask2Former COCO-instance folder (save_pretrained, with its processor)",
                "",
                ("config.json",),
            ),
            WeightFile("clip_model", OPEN_CLIP_CONFIG),
            WeightFile("clip_pretrained", "an open_clip weights file"),
        ),
        builtins={"tiny-mask2former": _write_tiny_detector},
        demo=lambda m: (
            "GenEval uses a tiny random detector or colour model"
            if is_builtin(m["geneval"]["detector"]) or not m["geneval"]["clip_pretrained"]
            else ""
        ),
    )
)
register(
    Metric(
        name="geneval_tasks",
        section="geneval",
        granularity="set",
        columns=(Column("accuracy"),),
        summary=(
            "GenEval per task: the share of correct images (95% CI over prompts), and "
            "overall, the mean over tasks as GenEval reports it."
        ),
        table=_table("task_table", "t2ibench.geneval.metric"),
        after=("geneval",),
        demo=lambda m: "",
    )
)
register(
    Metric(
        name="reference_similarity",
        section="reference",
        granularity="image",
        columns=(
            Column("clip_ref_cosine"),
            Column("lpips_ref", higher_is_better=False, note="lower = closer to the reference"),
        ),
        summary=(
            "Similarity to the prompt's reference image: CLIP image-image cosine and LPIPS "
            "(the `clip` and `lpips` models); prompts without one are skipped."
        ),
        table=_table("reference_similarities"),
        uses=("clip", "lpips"),
        demo=lambda metrics: "",  # the clip and lpips sections say theirs
    )
)
register(
    Metric(
        name="lpips_diversity",
        section="lpips",
        granularity="prompt",
        columns=(Column("lpips_diversity", note="higher = more varied"),),
        summary="LPIPS diversity: mean pairwise LPIPS among a prompt's images.",
        table=_table("lpips_diversities"),
        settings={
            "net": {"type": "string", "enum": ["alex", "vgg", "squeeze"], "default": "alex"},
            "backbone_weights": _text(
                "",
                "Path to the torchvision backbone weights; empty means a random backbone "
                "(demo only).",
            ),
            "batch_size": _batch(16),
            "device": DEVICE_SETTING,
        },
        files=(WeightFile("backbone_weights", "a torchvision weights file", LPIPS_SOURCE),),
        demo=lambda m: "" if m["lpips"]["backbone_weights"] else "LPIPS uses a random backbone",
    )
)
register(
    Metric(
        name="clip_diversity",
        granularity="prompt",
        columns=(Column("clip_diversity", note="higher = more varied"),),
        summary=(
            "CLIP diversity: mean pairwise cosine distance of a prompt's CLIP image "
            "embeddings (the `clip` model)."
        ),
        table=_table("clip_diversities"),
        uses=("clip",),
        demo=lambda metrics: "",
    )
)
register(
    Metric(
        name="fid",
        granularity="set",
        columns=(
            Column("fid", higher_is_better=False, note="lower = closer"),
            Column("kid", higher_is_better=False, note="lower = closer"),
        ),
        summary=(
            "FID and KID of each (model, cell) image set against the reference images, the "
            "first model or the reference cell; biased or noisy on small sets (see warning)."
        ),
        table=_table("set_distances"),
        check=_check_fid,
        settings={
            "extractor": {
                "type": "string",
                "enum": ["clip", "inception"],
                "default": "clip",
                "description": (
                    "clip: an open_clip image encoder (`model`, `weights` as for `clip`); "
                    "inception: the TorchScript Inception of clean-fid / StyleGAN2-ADA "
                    "(inception-2015-12-05.pt) at `weights`, the standard FID network."
                ),
            },
            "model": {"type": "string", "default": "config/models/open_clip-tiny.json"},
            "weights": _text(
                "",
                "Weights file (or open_clip tag); empty with `clip` means random weights "
                "(demo only).",
            ),
            "against": {
                "type": "array",
                "items": {"type": "string", "enum": ["reference", "first_model", "reference_cell"]},
                "uniqueItems": True,
                "default": ["reference", "first_model", "reference_cell"],
                "description": (
                    "Compare each (model, cell) image set with the reference images, with the "
                    "first model's images of the same cell, and with the same model's images "
                    "of the experiment's reference cell."
                ),
            },
            "batch_size": _batch(32),
            "device": DEVICE_SETTING,
        },
        files=(
            WeightFile("weights", "the feature extractor's weights", INCEPTION_SOURCE),
            WeightFile("model", OPEN_CLIP_CONFIG),
        ),
        demo=lambda m: (
            "FID/KID use a random feature extractor"
            if m["fid"]["extractor"] == "clip" and not m["fid"]["weights"]
            else ""
        ),
    )
)
