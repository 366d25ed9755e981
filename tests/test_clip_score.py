"""ClipScorer against torchmetrics' CLIPScore on a transformers copy of the same tiny model."""

import gzip
import json
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from open_clip.tokenizer import bytes_to_unicode, default_bpe
from PIL import Image
from torchmetrics.multimodal.clip_score import CLIPScore
from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from t2ibench.errors import InputError
from t2ibench.metrics.clip_score import ClipScorer, _resolve_weights

TINY = Path(__file__).resolve().parents[1] / "config" / "models" / "open_clip-tiny.json"

PROMPTS = [
    "a photo of a cat",
    "a red cube on top of a blue sphere, studio lighting",
    "Ünïcödé prompt: café, naïve, 東京!",
    "a photo of a cat",
    "an oil painting of a lighthouse at dusk",
    "",
]


def _images() -> list[Image.Image]:
    """Noise and gradients, square and not, RGB and grayscale."""
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    ramp = np.broadcast_to(np.linspace(0, 255, 96, dtype=np.uint8)[None, :, None], (80, 96, 3))
    images = [Image.fromarray(array) for array in [*noise, np.ascontiguousarray(ramp)]]
    images.append(Image.fromarray(rng.integers(0, 256, (72, 64), dtype=np.uint8), mode="L"))
    images.append(Image.new("RGB", (64, 64), (200, 30, 60)))
    return images


# --- the independent reference: transformers' CLIPModel carrying the open_clip weights ---


class _FeatureCLIP(CLIPModel):
    """CLIPModel whose get_*_features return tensors, as torchmetrics 1.9 expects."""

    def get_text_features(self, *args, **kwargs):
        return super().get_text_features(*args, **kwargs).pooler_output

    def get_image_features(self, *args, **kwargs):
        return super().get_image_features(*args, **kwargs).pooler_output


def _hf_config(cfg: dict) -> CLIPConfig:
    text, vision = cfg["text_cfg"], cfg["vision_cfg"]
    common = {"hidden_act": "gelu", "layer_norm_eps": 1e-5}  # open_clip: exact GELU, eps 1e-5
    return CLIPConfig(
        projection_dim=cfg["embed_dim"],
        text_config={
            "vocab_size": text["vocab_size"],
            "max_position_embeddings": text["context_length"],
            "hidden_size": text["width"],
            "intermediate_size": 4 * text["width"],
            "num_hidden_layers": text["layers"],
            "num_attention_heads": text["heads"],
            "bos_token_id": 49406,
            "eos_token_id": 49407,
            "pad_token_id": 49407,
            **common,
        },
        vision_config={
            "image_size": vision["image_size"],
            "patch_size": vision["patch_size"],
            "hidden_size": vision["width"],
            "intermediate_size": 4 * vision["width"],
            "num_hidden_layers": vision["layers"],
            "num_attention_heads": vision["width"] // vision["head_width"],
            **common,
        },
    )


def _block(src: str, dst: str, sd: dict) -> dict:
    """One residual block: open_clip (fused qkv) -> transformers (separate q, k, v)."""
    out = {
        f"{dst}.layer_norm1.weight": sd[f"{src}.ln_1.weight"],
        f"{dst}.layer_norm1.bias": sd[f"{src}.ln_1.bias"],
        f"{dst}.layer_norm2.weight": sd[f"{src}.ln_2.weight"],
        f"{dst}.layer_norm2.bias": sd[f"{src}.ln_2.bias"],
        f"{dst}.self_attn.out_proj.weight": sd[f"{src}.attn.out_proj.weight"],
        f"{dst}.self_attn.out_proj.bias": sd[f"{src}.attn.out_proj.bias"],
        f"{dst}.mlp.fc1.weight": sd[f"{src}.mlp.c_fc.weight"],
        f"{dst}.mlp.fc1.bias": sd[f"{src}.mlp.c_fc.bias"],
        f"{dst}.mlp.fc2.weight": sd[f"{src}.mlp.c_proj.weight"],
        f"{dst}.mlp.fc2.bias": sd[f"{src}.mlp.c_proj.bias"],
    }
    for kind in ("weight", "bias"):
        for name, part in zip("qkv", sd[f"{src}.attn.in_proj_{kind}"].chunk(3), strict=True):
            out[f"{dst}.self_attn.{name}_proj.{kind}"] = part
    return out


def _hf_state_dict(sd: dict, text_layers: int, vision_layers: int) -> dict:
    out = {
        "logit_scale": sd["logit_scale"],
        "text_projection.weight": sd["text_projection"].T,
        "visual_projection.weight": sd["visual.proj"].T,
        "text_model.embeddings.token_embedding.weight": sd["token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": sd["positional_embedding"],
        "text_model.final_layer_norm.weight": sd["ln_final.weight"],
        "text_model.final_layer_norm.bias": sd["ln_final.bias"],
        "vision_model.embeddings.class_embedding": sd["visual.class_embedding"],
        "vision_model.embeddings.patch_embedding.weight": sd["visual.conv1.weight"],
        "vision_model.embeddings.position_embedding.weight": sd["visual.positional_embedding"],
        "vision_model.pre_layrnorm.weight": sd["visual.ln_pre.weight"],
        "vision_model.pre_layrnorm.bias": sd["visual.ln_pre.bias"],
        "vision_model.post_layernorm.weight": sd["visual.ln_post.weight"],
        "vision_model.post_layernorm.bias": sd["visual.ln_post.bias"],
    }
    for i in range(text_layers):
        out |= _block(f"transformer.resblocks.{i}", f"text_model.encoder.layers.{i}", sd)
    for i in range(vision_layers):
        out |= _block(f"visual.transformer.resblocks.{i}", f"vision_model.encoder.layers.{i}", sd)
    return out


def _clip_tokenizer() -> CLIPTokenizer:
    """CLIP's real BPE tokenizer, built offline from the merges open_clip ships."""
    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=merges)


def _reference(scorer: ClipScorer) -> tuple[CLIPModel, CLIPProcessor]:
    cfg = json.loads(TINY.read_text())
    model = _FeatureCLIP(_hf_config(cfg)).eval()
    sd = _hf_state_dict(
        scorer.model.state_dict(), cfg["text_cfg"]["layers"], cfg["vision_cfg"]["layers"]
    )
    model.load_state_dict(sd, strict=True)
    size = cfg["vision_cfg"]["image_size"]
    image_processor = CLIPImageProcessorPil(  # open_clip: resize short side (bicubic), crop
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_mean=list(open_clip.OPENAI_DATASET_MEAN),
        image_std=list(open_clip.OPENAI_DATASET_STD),
    )
    return model, CLIPProcessor(image_processor=image_processor, tokenizer=_clip_tokenizer())


def _torchmetrics_per_image(scorer, images, prompts) -> list[float]:
    model, processor = _reference(scorer)
    metric = CLIPScore(model_name_or_path=lambda: (model, processor))
    values = []
    for image, prompt in zip(images, prompts, strict=True):
        pixels = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
        values.append(metric(pixels, prompt).item())
    return values


@pytest.fixture(scope="module")
def scorer() -> ClipScorer:
    return ClipScorer(str(TINY), seed=0)


# --- the tests ---


def test_matches_torchmetrics_per_image(scorer):
    images = _images()
    prompts = PROMPTS[: len(images)]
    ours = scorer.score(images, prompts)
    reference = _torchmetrics_per_image(scorer, images, prompts)
    assert ours == pytest.approx(reference, abs=1e-4)
    assert len(set(np.round(ours, 3))) > 1  # the images really are told apart


def test_clamps_each_image_not_the_mean(scorer):
    images = _images()
    prompts = PROMPTS[: len(images)]
    cosine = (scorer.embed_images(images) * scorer.embed_texts(prompts)).sum(-1)
    flipped = ClipScorer(str(TINY), seed=0)
    with torch.no_grad():  # negating the text projection turns every cosine into -cosine
        flipped.model.text_projection.neg_()
    ours = flipped.score(images, prompts)
    assert ours == pytest.approx((100 * (-cosine).clamp(min=0)).tolist(), abs=1e-4)
    assert (cosine > 0).any() and (cosine < 0).any()
    assert all(s == 0 for s, c in zip(ours, cosine, strict=True) if c > 0)
    assert ours == pytest.approx(_torchmetrics_per_image(flipped, images, prompts), abs=1e-4)


def test_prompts_embedded_once_same_values(scorer, monkeypatch):
    images = _images()
    prompts = ["a cat", "a dog", "a cat", "a cat", "a dog", "a bird"]
    expected = 100 * (scorer.embed_images(images) * scorer.embed_texts(prompts)).sum(-1)
    seen = []
    embed = scorer.embed_texts
    monkeypatch.setattr(scorer, "embed_texts", lambda p: seen.append(list(p)) or embed(p))
    assert scorer.score(images, prompts) == pytest.approx(expected.clamp(min=0).tolist(), abs=1e-5)
    assert seen == [["a cat", "a dog", "a bird"]]


def test_deterministic(scorer):
    images = _images()
    prompts = PROMPTS[: len(images)]
    first = scorer.score(images, prompts)
    assert scorer.score(images, prompts) == first
    again = ClipScorer(str(TINY), seed=0)
    assert again.score(images, prompts) == first
    assert again.metric_id == scorer.metric_id
    other = ClipScorer(str(TINY), seed=1)
    assert other.metric_id != scorer.metric_id
    assert other.score(images, prompts) != first


def test_embeddings_normalised_and_batched(scorer):
    images = _images()
    small = ClipScorer(str(TINY), seed=0, batch_size=2)
    assert torch.allclose(small.embed_images(images), scorer.embed_images(images), atol=1e-6)
    assert torch.allclose(scorer.embed_images(images).norm(dim=-1), torch.ones(len(images)))
    assert torch.allclose(scorer.embed_texts(PROMPTS).norm(dim=-1), torch.ones(len(PROMPTS)))


def test_long_prompt_truncated_to_77_tokens(scorer):
    image = _images()[:1]
    long = " ".join(["word"] * 100)
    assert scorer.score(image, [long]) == scorer.score(image, [long + " and a cat on the moon"])


def test_weights_file_loads_and_keys_by_content(scorer, tmp_path):
    weights = tmp_path / "tiny.pt"
    torch.save(scorer.model.state_dict(), weights)
    loaded = ClipScorer(str(TINY), pretrained=str(weights), seed=123)
    images = _images()
    prompts = PROMPTS[: len(images)]
    assert loaded.score(images, prompts) == pytest.approx(scorer.score(images, prompts), abs=1e-6)
    assert "sha256:" in loaded.metric_id and loaded.metric_id != scorer.metric_id


def test_missing_weights_file_is_input_error(tmp_path):
    missing = tmp_path / "absent-weights.safetensors"
    with pytest.raises(InputError, match="absent-weights.safetensors") as err:
        ClipScorer(str(TINY), pretrained=str(missing))
    assert "\n" not in str(err.value)


def test_unknown_architecture_is_input_error():
    with pytest.raises(InputError, match="ViT-Nonexistent-99.*open_clip"):
        ClipScorer("ViT-Nonexistent-99")
    with pytest.raises(InputError, match="no-such-config.json"):
        ClipScorer("no-such-config.json")


def test_uncached_tag_is_input_error_without_download(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HOME", str(tmp_path))  # an empty ~/.cache/clip
    with pytest.raises(InputError, match="'openai'.*HF_HUB_OFFLINE"):
        ClipScorer("ViT-B-32", pretrained="openai")


def test_cached_tag_resolves_locally_with_its_settings(tmp_path, monkeypatch):
    repo = tmp_path / "hub" / "models--timm--vit_base_patch32_clip_224.openai"
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "open_clip_model.safetensors").write_bytes(b"")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    weights, kwargs, weights_id = _resolve_weights("ViT-B-32", "openai", seed=0)
    assert weights == str(repo / "snapshots" / "abc123" / "open_clip_model.safetensors")
    assert kwargs["force_quick_gelu"] is True and kwargs["image_interpolation"] == "bicubic"
    assert weights_id == "tag:openai"


def test_unreadable_weights_file_is_input_error(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="broken.pt") as err:
        ClipScorer(str(TINY), pretrained=str(bad))
    assert "\n" not in str(err.value)


def test_random_weights_are_the_same_when_built_in_threads(repo):
    """Snakemake runs jobs as threads: seeded random weights built at once in several
    threads are those of a build alone (t2ibench.seeding)."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from t2ibench.metrics.clip_score import load_open_clip

    config = str(repo / "config" / "models" / "open_clip-tiny.json")

    def build(_):
        return load_open_clip(config, "", seed=0)[1].state_dict()

    alone = build(0)
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(build, range(8)))
    for state in together:
        assert all(torch.equal(alone[k], state[k]) for k in alone)
