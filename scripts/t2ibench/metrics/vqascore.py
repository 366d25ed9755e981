"""VQAScore (Lin et al. 2024): the probability a vision-language model gives to the answer
"Yes" when asked whether the image shows the prompt.

Per image (version ``v1``)::

    vqascore(image, prompt) = softmax(logits at the answer position)["Yes"]

where the model reads its chat template with one user turn, the image then the question
``Does this figure show "{prompt}"? Please answer yes or no.``, and the generation prompt
(the assistant turn's start), so the next token is its answer; "Yes" is the answer token
as the model's tokenizer spells it (one token in Qwen's vocabulary). Images go through the
checkpoint's own processor after ``convert("RGB")`` (alpha dropped, as t2v_metrics opens
them), with Qwen2-VL's dynamic resolution (``min_pixels`` / ``max_pixels``). Batches are
left-padded, so the last position is every row's answer position; the result equals one
image at a time (tests/test_vqascore.py).

Models: the Qwen2-VL, Qwen2.5-VL and Qwen3-VL families of transformers, from a local folder
or a Hub id already in the local cache (nothing is downloaded).

A prompt whose question would not fit the model's context (``max_position_embeddings``,
less the image's tokens and the template's) is cut to the tokens that fit, and the table
says so (``vqascore_prompt_truncated``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from PIL import Image

from t2ibench.errors import InputError
from t2ibench.metrics.vqascore_settings import check_vqascore_settings as check_settings

log = logging.getLogger(__name__)

FORMULA_VERSION = "v1"
QUESTION = 'Does this figure show "{}"? Please answer yes or no.'
ANSWER = "Yes"
# transformers model_type -> family name (the model classes come from the Auto* factories)
SUPPORTED = {
    "qwen2_vl": "Qwen2-VL",
    "qwen2_5_vl": "Qwen2.5-VL",
    "qwen3_vl": "Qwen3-VL",
    "qwen3_vl_moe": "Qwen3-VL-MoE",
}
KEY = "metrics.vqascore.model"
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer_config.json")


def check_folder(folder: Path, source: str, key: str = KEY) -> str:
    """The model_type of a supported VLM folder, else one InputError naming what is wrong."""
    config = folder / "config.json"
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError) as err:
        raise InputError(
            f"{source}: {config} is not a readable model config ({err}) - set {key}"
        ) from None
    if model_type not in SUPPORTED:
        raise InputError(
            f"{source} is a '{model_type}' model, not a supported vision-language model "
            f"(expected one of: {', '.join(SUPPORTED.values())}) - set {key}"
        )
    for files, what in [(PROCESSOR_FILES, "image processor"), (TOKENIZER_FILES, "tokenizer")]:
        if not any((folder / name).is_file() for name in files):
            raise InputError(
                f"{source} has no {what} ({' or '.join(files)}): save the model's processor "
                f"with it (processor.save_pretrained) - set {key}"
            )
    return model_type


class VqaScorer:
    """VQAScore of images against prompts with a transformers vision-language model.

    Args:
        model: a model folder, or a Hub id in the local cache.
        device: torch device the model runs on.
        batch_size: images per forward pass.
        dtype: ``auto`` (bfloat16 on CUDA, float32 elsewhere), ``float32``, ``bfloat16``,
            ``float16``.
        question: the question, ``{}`` standing for the prompt.
        answer: the answer whose probability is the score (one token of the tokenizer).
        min_pixels, max_pixels: the processor's resolution bounds (0: its own).
    """

    column = "vqascore"

    def __init__(
        self,
        model: str,
        device: str = "cpu",
        batch_size: int = 8,
        dtype: str = "auto",
        question: str = QUESTION,
        answer: str = ANSWER,
        min_pixels: int = 0,
        max_pixels: int = 0,
    ):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from t2ibench.metrics.hf import load_error, require_local, weights_id
        from t2ibench.models.checks import sha256_file

        folder, name = require_local(
            model,
            ("config.json",),
            "vision-language model",
            "a Qwen2.5-VL / Qwen3-VL",
            "Qwen/Qwen2.5-VL-7B-Instruct",
            KEY,
        )
        self.model_type = check_folder(folder, model)
        check_settings(question, min_pixels, max_pixels)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.question, self.answer = question, answer
        pixels = [("min_pixels", min_pixels), ("max_pixels", max_pixels)]
        resolution = {k: v for k, v in pixels if v}
        try:
            self.processor = AutoProcessor.from_pretrained(folder, **resolution)
            self.model = AutoModelForImageTextToText.from_pretrained(
                folder, dtype=_dtype(dtype, self.device)
            )
        except Exception as err:  # a folder that exists but does not load: one line
            raise load_error("vision-language model", model, KEY, err) from err
        self.model.to(self.device).eval()
        self.tokenizer = self.processor.tokenizer
        answer_ids = self.tokenizer.encode(answer, add_special_tokens=False)
        if len(answer_ids) != 1:
            raise InputError(
                f"config key 'metrics.vqascore.answer': {answer!r} is {len(answer_ids)} tokens "
                f"for {name}'s tokenizer; expected one"
            )
        self.answer_id = answer_ids[0]
        self.context = int(_text_config(self.model.config).max_position_embeddings)
        # The template's tokens around the prompt; its one image token becomes the image's.
        self.overhead = len(self.tokenizer.encode(self._text(question.replace("{}", "", 1)))) - 1
        image_processor = self.processor.image_processor
        patch = image_processor.patch_size * getattr(image_processor, "merge_size", 2)
        self.max_image_tokens = _max_pixels(image_processor) // (patch * patch) + 1
        config_id = sha256_file(folder / "config.json")[:12]
        precision = str(_dtype(dtype, self.device)).removeprefix("torch.")
        settings = f"q:{_short_hash(question)}/a:{answer}/px:{min_pixels}-{max_pixels}/{precision}"
        self.metric_id = (
            f"vqascore/{FORMULA_VERSION}/{name}@{config_id}/{weights_id(folder)}/{settings}"
        )

    def _text(self, question: str) -> str:
        messages = [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": question}],
            }
        ]
        return self.processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )

    def fit_prompt(self, prompt: str, image: Image.Image) -> tuple[str, bool]:
        """(the prompt as asked, whether it was cut to fit the model's context)."""
        ids = self.tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"]
        if self.overhead + self.max_image_tokens + len(ids) <= self.context:
            return prompt, False  # fits whatever the image's size
        image_tokens = self.image_tokens(image)
        room = self.context - self.overhead - image_tokens
        if len(ids) <= room:
            return prompt, False
        if room <= 0:
            raise InputError(
                f"VQAScore: the image alone ({image_tokens} tokens) does not fit the model's "
                f"context of {self.context}; lower metrics.vqascore.max_pixels"
            )
        return self.tokenizer.decode(ids[:room]), True

    def image_tokens(self, image: Image.Image) -> int:
        """How many tokens the processor gives the image in the text."""
        grid = self.processor.image_processor(images=[image], return_tensors="pt")["image_grid_thw"]
        merge = getattr(self.processor.image_processor, "merge_size", 2)
        return int(grid[0].prod()) // (merge * merge)

    @torch.inference_mode()
    def score_batch(self, images: list[Image.Image], prompts: list[str]) -> list[float]:
        """P(answer) for each (image, prompt), one forward pass (left-padded)."""
        texts = [self._text(self.question.replace("{}", p, 1)) for p in prompts]
        self.tokenizer.padding_side = "left"
        inputs = self.processor(text=texts, images=images, padding=True, return_tensors="pt")
        inputs = inputs.to(self.device)
        logits = self.model(**inputs).logits[:, -1].float()
        return logits.softmax(dim=-1)[:, self.answer_id].cpu().tolist()

    def score(self, images, prompts) -> tuple[list[float], list[bool]]:
        """(scores, whether each prompt was cut) of images (any PIL mode) and prompts."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        # RGB first (alpha dropped), as t2v_metrics opens images for its Qwen models
        images = [image.convert("RGB") for image in images]
        asked, cut = [], []
        for image, prompt in zip(images, prompts, strict=True):
            text, truncated = self.fit_prompt(prompt, image)
            asked.append(text)
            cut.append(truncated)
        scores: list[float] = []
        for start in range(0, len(images), self.batch_size):
            end = start + self.batch_size
            scores += self.score_batch(images[start:end], asked[start:end])
        return scores, cut


def _max_pixels(image_processor) -> int:
    size = getattr(image_processor, "size", None) or {}
    value = getattr(image_processor, "max_pixels", None) or size.get("longest_edge")
    return int(value or 16384 * 28 * 28)


def _short_hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _text_config(config):
    return getattr(config, "text_config", None) or config


def _dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def table(plan, experiment: str, jobs, cache_path):
    """metrics/vqascore.csv: per listed image its VQAScore against its prompt and whether
    the prompt was cut to fit the model; both cached by image content, model, question,
    resolution and prompt."""
    import pandas as pd

    from t2ibench.metrics.cache import ScoreCache
    from t2ibench.metrics.loader import open_image
    from t2ibench.metrics.registry import builtin_folder, device_of, is_builtin
    from t2ibench.scoring import prompt_key, scorable_jobs

    metrics = plan.config["metrics"]
    section = metrics["vqascore"]
    model = section["model"]
    if is_builtin(model):
        model = str(builtin_folder(model, plan.config["resources_dir"], KEY))
    jobs = scorable_jobs(plan, jobs)
    paths = [plan.path(j) for j in jobs]
    prompts = [plan.prompt_text(j) for j in jobs]
    scorer = VqaScorer(
        model,
        device=device_of(section, metrics, plan.config["device"]),
        batch_size=section["batch_size"],
        dtype=section["dtype"],
        question=section["question"],
        answer=section["answer"],
        min_pixels=section["min_pixels"],
        max_pixels=section["max_pixels"],
    )
    keys = [prompt_key(p, scorer.metric_id, t) for p, t in zip(paths, prompts, strict=True)]
    cut_keys = [(sha, f"{metric_id}|cut") for sha, metric_id in keys]
    cache = ScoreCache(cache_path)
    cached = cache.get_many(keys + cut_keys)
    todo = [
        i for i, (k, c) in enumerate(zip(keys, cut_keys, strict=True)) if not {k, c} <= set(cached)
    ]
    log.debug(
        "%s: VQAScore for %d images (%d cached)", experiment, len(keys), len(keys) - len(todo)
    )
    for start in range(0, len(todo), scorer.batch_size):
        batch = todo[start : start + scorer.batch_size]
        scores, cut = scorer.score(
            [open_image(paths[i]) for i in batch], [prompts[i] for i in batch]
        )
        new = {keys[i]: s for i, s in zip(batch, scores, strict=True)}
        new.update({cut_keys[i]: float(c) for i, c in zip(batch, cut, strict=True)})
        cache.put_many(new)  # batch by batch: a crash keeps what was scored
        cached.update(new)
    truncated = [bool(cached[c]) for c in cut_keys]
    if any(truncated):
        log.warning(
            "%s: VQAScore: %d prompt(s) cut to fit the model's context (column "
            "vqascore_prompt_truncated)",
            experiment,
            sum(truncated),
        )
    return pd.DataFrame(
        {
            "image_path": paths,
            "vqascore": [cached[k] for k in keys],
            "vqascore_prompt_truncated": truncated,
        }
    )
