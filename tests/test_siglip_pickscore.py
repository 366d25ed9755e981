"""SiglipScorer and PickScoreScorer against a direct transformers forward of the same tiny models.

The tiny models are written with seeded random weights and loaded back through the real
``from_pretrained`` code, offline.
"""

import pickle
import re
import shutil
import socket
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, CLIPModel, CLIPProcessor, SiglipModel

from t2ibench.errors import InputError
from t2ibench.metrics.pickscore import PickScoreScorer, write_tiny_pickscore
from t2ibench.metrics.siglip import SiglipScorer, write_tiny_siglip

LONG = (
    "a red cube on top of a blue sphere, studio lighting, with a white bird and a black dog at dusk"
)
PROMPTS = [
    "a photo of a cat",
    LONG + " " + LONG * 8,
    "a photo of a cat",
]  # repeated, and past 77 tokens
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _images() -> list[Image.Image]:
    """Three noise images of different sizes and aspect ratios, one grayscale."""
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        for h, w in [(40, 50), (96, 64)]
    ]
    images.append(Image.fromarray(rng.integers(0, 256, (30, 90), dtype=np.uint8), mode="L"))
    return images


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("siglip") / "tiny-siglip"
    write_tiny_siglip(folder, seed=0)
    return folder


@pytest.fixture(scope="module")
def pickscore_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pickscore") / "tiny-pickscore"
    write_tiny_pickscore(folder, seed=0)
    return folder


@pytest.fixture
def offline(monkeypatch, tmp_path) -> list:
    """HF_HUB_OFFLINE=1, an empty Hub cache, and a record of every socket connect attempt."""
    attempts = []

    def refuse(self, address, *args):
        attempts.append(address)
        raise OSError(f"test: network access to {address} refused")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def _cache_as_hub_repo(cache: Path, repo_id: str, folder: Path) -> None:
    """Lay ``folder`` out as the cached snapshot of ``repo_id`` (refs/main -> snapshot)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(folder, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)


# --- the formulas, against the models' own forward ---


def test_siglip_matches_transformers_forward(siglip_dir, offline):
    images = _images()
    scores = SiglipScorer(str(siglip_dir), batch_size=2).score(images, PROMPTS)

    model = SiglipModel.from_pretrained(siglip_dir).eval()
    processor = AutoProcessor.from_pretrained(siglip_dir)
    inputs = processor(
        text=PROMPTS, images=images, padding="max_length", truncation=True, return_tensors="pt"
    )
    assert inputs["input_ids"].shape == (3, 16)
    # input_ids without the tokenizer's attention_mask: SigLIP was trained attending to its
    # padding (big_vision, open_clip); transformers 5 would mask it and change the embedding.
    with torch.no_grad():
        out = model(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"])
    expected = torch.sigmoid(out.logits_per_image).diagonal()

    assert scores == pytest.approx(expected.tolist(), abs=1e-5)
    assert all(0 < s < 1 for s in scores)
    assert len({round(s, 6) for s in scores}) == 3
    assert offline == []


def test_pickscore_matches_transformers_forward(pickscore_dir, offline):
    images = _images()
    scores = PickScoreScorer(str(pickscore_dir), batch_size=2).score(images, PROMPTS)

    model = CLIPModel.from_pretrained(pickscore_dir).eval()
    processor = CLIPProcessor.from_pretrained(pickscore_dir)
    inputs = processor(
        text=PROMPTS,
        images=images,
        padding=True,
        truncation=True,
        max_length=77,
        return_tensors="pt",
    )
    assert inputs["input_ids"].shape == (3, 77)  # the long prompt is truncated
    with torch.no_grad():
        out = model(**inputs)
    expected = out.logits_per_image.diagonal()  # logit_scale.exp() * cos

    assert scores == pytest.approx(expected.tolist(), abs=1e-5)
    assert len({round(s, 5) for s in scores}) == 3
    assert offline == []


# --- prompts encoded once, batching ---


@pytest.mark.parametrize("kind", ["siglip", "pickscore"])
def test_each_prompt_encoded_once_and_batching_does_not_change_scores(
    kind, siglip_dir, pickscore_dir
):
    make = {"siglip": lambda: SiglipScorer(str(siglip_dir), batch_size=2)}
    make["pickscore"] = lambda: PickScoreScorer(str(pickscore_dir), batch_size=2)
    scorer = make[kind]()
    encoded = []
    original = scorer.encode_prompts
    scorer.encode_prompts = lambda prompts: encoded.extend(prompts) or original(prompts)
    text_rows = []
    get_text = scorer.model.get_text_features
    scorer.model.get_text_features = lambda **kw: (
        text_rows.append(len(kw["input_ids"])) or get_text(**kw)
    )

    images = _images() * 2
    prompts = [*PROMPTS, "a photo of a cat", "a dog", LONG]
    scores = scorer.score(images, prompts)

    assert sorted(encoded) == sorted(set(prompts))
    assert sum(text_rows) == len(set(prompts))
    one_by_one = [
        scorer.score([image], [prompt])[0] for image, prompt in zip(images, prompts, strict=True)
    ]
    assert scores == pytest.approx(one_by_one, rel=1e-5, abs=1e-6)  # pad length differs


# --- nothing downloaded: clear one-line errors ---


@pytest.mark.parametrize(
    "make, key",
    [
        (lambda tmp, ok: SiglipScorer(str(tmp / "no-such-folder")), "metrics.siglip.model"),
        (lambda tmp, ok: SiglipScorer("google/siglip-so400m-patch14-384"), "metrics.siglip.model"),
        (lambda tmp, ok: PickScoreScorer(str(tmp / "no-such-folder")), "metrics.pickscore.model"),
        (lambda tmp, ok: PickScoreScorer("yuvalkirstain/PickScore_v1"), "metrics.pickscore.model"),
        (
            lambda tmp, ok: PickScoreScorer(
                str(ok), processor="laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
            ),
            "metrics.pickscore.processor",
        ),
    ],
    ids=[
        "siglip-folder",
        "siglip-hub-id",
        "pickscore-folder",
        "pickscore-hub-id",
        "pickscore-processor",
    ],
)
def test_missing_model_is_an_input_error_without_network(
    make, key, tmp_path, pickscore_dir, offline
):
    with pytest.raises(InputError) as error:
        make(tmp_path, pickscore_dir)
    message = str(error.value)
    assert key in message and "not found locally" in message and "nothing is downloaded" in message
    assert "\n" not in message
    assert offline == []


def test_folder_without_weights_is_an_input_error(siglip_dir, tmp_path, offline):
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(siglip_dir / "config.json", broken / "config.json")
    with pytest.raises(
        InputError, match="cannot load the SigLIP model .* - set metrics.siglip.model"
    ):
        SiglipScorer(str(broken))
    assert offline == []


def test_hub_ids_load_from_the_local_cache(siglip_dir, pickscore_dir, offline):
    cache = Path(huggingface_hub.constants.HF_HUB_CACHE)
    _cache_as_hub_repo(cache, "t2ibench/tiny-siglip", siglip_dir)
    _cache_as_hub_repo(cache, "t2ibench/tiny-pickscore", pickscore_dir)

    siglip = SiglipScorer("t2ibench/tiny-siglip")
    assert siglip.metric_id.startswith("siglip_score/v2/t2ibench/tiny-siglip@")
    assert siglip.metric_id.split("/")[-1] == SiglipScorer(str(siglip_dir)).metric_id.split("/")[-1]
    pick = PickScoreScorer(str(pickscore_dir), processor="t2ibench/tiny-pickscore")
    image, prompt = _images()[:1], ["a photo of a cat"]
    assert pick.score(image, prompt) == PickScoreScorer(str(pickscore_dir)).score(image, prompt)
    assert offline == []


# --- cache keys ---


@pytest.mark.parametrize("kind", ["siglip", "pickscore"])
def test_metric_id_names_formula_config_and_weights(kind, tmp_path):
    write, scorer = {
        "siglip": (write_tiny_siglip, SiglipScorer),
        "pickscore": (write_tiny_pickscore, PickScoreScorer),
    }[kind]
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        write(tmp_path / name / "tiny", seed=seed)
    first = scorer(str(tmp_path / "a" / "tiny")).metric_id
    column = {"siglip": "siglip_score", "pickscore": "pickscore"}[kind]
    assert re.fullmatch(rf"{column}/v2/tiny@[0-9a-f]{{12}}/sha256:[0-9a-f]{{16}}", first)
    assert scorer(str(tmp_path / "a" / "tiny")).metric_id == first  # stable across loads
    assert scorer(str(tmp_path / "b" / "tiny")).metric_id == first  # same seed, same bytes
    other = scorer(str(tmp_path / "c" / "tiny")).metric_id
    assert other != first
    assert other.rsplit("/", 1)[0] == first.rsplit("/", 1)[0]  # same config, other weights


# --- DataLoader workers get a pickled transform ---


@pytest.mark.parametrize("kind", ["siglip", "pickscore"])
def test_transform_is_picklable_and_equals_the_processor(kind, siglip_dir, pickscore_dir):
    folder = {"siglip": siglip_dir, "pickscore": pickscore_dir}[kind]
    scorer = {"siglip": SiglipScorer, "pickscore": PickScoreScorer}[kind](str(folder))
    transform = scorer.transform()
    copy = pickle.loads(pickle.dumps(transform))
    processor = AutoProcessor.from_pretrained(folder)
    for image in _images():
        pixels = transform(image)
        assert pixels.shape == (3, 32, 32) and pixels.dtype == torch.float32
        assert torch.equal(copy(image), pixels)
        assert torch.equal(processor(images=image, return_tensors="pt")["pixel_values"][0], pixels)
