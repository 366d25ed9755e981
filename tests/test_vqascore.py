"""VQAScore against a direct transformers forward of the same tiny models.

The tiny Qwen2.5-VL and Qwen3-VL models are written with seeded random weights and loaded
back through the real ``from_pretrained`` code, offline. The reference below is written
from the definition: the chat template with the image and the question, the generation
prompt, one forward pass of one image, the softmax of the next-token logits, and the
probability of the token "Yes" as the tokenizer spells it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from t2ibench.errors import InputError
from t2ibench.metrics.tiny_vlm import CONTEXT, write_tiny_vlm
from t2ibench.metrics.vqascore import QUESTION, VqaScorer

PROMPTS = ["a red cube", "a photo of a cat on a sofa", "a red cube", "a {braced} word"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module", params=["qwen2_5_vl", "qwen3_vl"])
def tiny(request, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("vlm") / request.param
    write_tiny_vlm(folder, request.param, seed=0)
    return folder


def images() -> list[Image.Image]:
    """Noise of three sizes and aspect ratios (different token counts), one grey."""
    rng = np.random.default_rng(0)
    out = [
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        for h, w in [(64, 64), (120, 56)]
    ]
    out.append(Image.fromarray(rng.integers(0, 256, (40, 90), dtype=np.uint8), "L"))
    out.append(Image.fromarray(rng.integers(0, 256, (50, 70, 4), dtype=np.uint8), "RGBA"))
    return out


def direct(folder: Path, image: Image.Image, prompt: str) -> float:
    """P("Yes") from one plain transformers forward of one image."""
    from transformers import (
        AutoProcessor,
        Qwen2_5_VLForConditionalGeneration,
        Qwen3VLForConditionalGeneration,
    )

    model_type = json.loads((folder / "config.json").read_text())["model_type"]
    model_class = {
        "qwen2_5_vl": Qwen2_5_VLForConditionalGeneration,
        "qwen3_vl": Qwen3VLForConditionalGeneration,
    }[model_type]
    model = model_class.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder)
    messages = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": QUESTION.format(prompt)}],
        }
    ]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], images=[image.convert("RGB")], return_tensors="pt")
    (yes,) = processor.tokenizer.encode("Yes", add_special_tokens=False)
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1]
    return torch.softmax(logits.float(), dim=-1)[yes].item()


def test_batched_scores_equal_a_direct_forward(tiny):
    scorer = VqaScorer(str(tiny), batch_size=4)  # one left-padded batch of four sizes
    scores, cut = scorer.score(images(), PROMPTS)
    expected = [
        direct(tiny, image, prompt) for image, prompt in zip(images(), PROMPTS, strict=True)
    ]
    assert scores == pytest.approx(expected, abs=1e-5, rel=0)
    assert cut == [False] * 4
    assert all(0 < s < 1 for s in scores) and scores[0] != scores[2]  # the image matters
    one_by_one = VqaScorer(str(tiny), batch_size=1).score(images(), PROMPTS)[0]
    assert scores == pytest.approx(one_by_one, abs=1e-6, rel=0)


def test_a_prompt_past_the_context_is_cut_and_recorded(tiny):
    scorer = VqaScorer(str(tiny))
    long = " ".join(f"word{i}" for i in range(CONTEXT))  # more tokens than the context
    assert len(scorer.tokenizer(long, verbose=False)["input_ids"]) > CONTEXT
    image = images()[1]
    scores, cut = scorer.score([image, image], [long, "a red cube"])
    assert cut == [True, False]
    asked, _ = scorer.fit_prompt(long, image)
    assert long.startswith(asked.strip()) and len(asked) < len(long)
    assert scores[0] == pytest.approx(direct(tiny, image, asked), abs=1e-5, rel=0)


def test_deterministic_and_identified(tiny, tmp_path):
    again = tmp_path / "again"
    model_type = json.loads((tiny / "config.json").read_text())["model_type"]
    write_tiny_vlm(again, model_type, seed=0)
    a, b = VqaScorer(str(tiny)), VqaScorer(str(again))
    assert a.metric_id.split("/", 3)[3] == b.metric_id.split("/", 3)[3]  # same weights id
    assert a.score(images(), PROMPTS) == b.score(images(), PROMPTS)
    other = VqaScorer(str(tiny), question='Is "{}" shown? Answer yes or no.')
    assert other.metric_id != a.metric_id
    assert VqaScorer(str(tiny), dtype="bfloat16").metric_id != a.metric_id  # precision too


def test_bad_folders_are_one_line_errors(tiny, tmp_path):
    def error(model, **kwargs) -> str:
        with pytest.raises(InputError) as err:
            VqaScorer(str(model), **kwargs)
        assert "\n" not in str(err.value)
        return str(err.value)

    assert "nothing is downloaded" in error(tmp_path / "nowhere")
    not_vlm = tmp_path / "siglip"
    not_vlm.mkdir()
    (not_vlm / "config.json").write_text(json.dumps({"model_type": "siglip"}))
    assert "'siglip' model, not a supported vision-language model" in error(not_vlm)
    bare = tmp_path / "bare"
    shutil.copytree(tiny, bare)
    for name in ("preprocessor_config.json", "processor_config.json"):
        (bare / name).unlink(missing_ok=True)
    assert "has no image processor" in error(bare)
    assert "metrics.vqascore.answer" in error(tiny, answer="Yes indeed")
    assert "metrics.vqascore.question" in error(tiny, question="no placeholder")
    assert "metrics.vqascore.min_pixels" in error(tiny, min_pixels=100000, max_pixels=5000)


@pytest.mark.parametrize(
    ("section", "key"),
    [({"min_pixels": 100000, "max_pixels": 5000}, "min_pixels"), ({"question": "x"}, "question")],
)
def test_settings_are_checked_when_the_config_is_read(section, key):
    from t2ibench.config import validate_config

    with pytest.raises(InputError, match=rf"^config key 'metrics.vqascore.{key}'"):
        validate_config({"metrics": {"vqascore": section}})
