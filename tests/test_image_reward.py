"""ImageReward rebuilt on transformers' BLIP modules, checked against a hand-written forward
of the official checkpoint layout (tiny seeded random weights, nothing downloaded)."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from t2ibench.errors import InputError
from t2ibench.metrics.image_reward import (
    TINY_VOCAB,
    ImageRewardModel,
    ImageRewardScorer,
    write_tiny_image_reward,
)
from t2ibench.metrics.image_reward_checkpoint import (
    DEFAULT_ARCHITECTURE,
    KNOWN_UNUSED,
    TINY_ARCHITECTURE,
    load_architecture,
    official_layout,
)

PROMPTS = ["a red cat", "the blue cube on a mat in the city at night, a photo"]
SIZES = [(40, 50), (64, 33), (32, 32)]  # (height, width): landscape, portrait, exact


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("image-reward")
    write_tiny_image_reward(folder, seed=0)
    return folder


@pytest.fixture(scope="module")
def scorer(tiny) -> ImageRewardScorer:
    return make_scorer(tiny)


def make_scorer(folder: Path, weights: Path | None = None, tokenizer: Path | None = None):
    return ImageRewardScorer(
        str(weights or folder / "ImageReward.pt"),
        str(tokenizer or folder / "tokenizer"),
        architecture=str(TINY_ARCHITECTURE),
    )


def random_images(seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB") for h, w in SIZES
    ]


def load_state(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "ImageReward.pt", map_location="cpu", weights_only=True)


# --- a hand-written forward of the official model, from the official state dict ----------


def layer_norm(x, sd, prefix, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * sd[prefix + "weight"] + sd[prefix + "bias"]


def linear(x, sd, prefix):
    return x @ sd[prefix + "weight"].T + sd[prefix + "bias"]


def gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def attention(q, k, v, heads, bias=None):
    """Multi-head attention of (B, Lq, D) queries on (B, Lk, D) keys/values."""
    b, lq, d = q.shape
    hd = d // heads

    def split(x):
        return x.reshape(b, x.shape[1], heads, hd).transpose(1, 2)

    scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(hd)
    if bias is not None:
        scores = scores + bias
    out = torch.softmax(scores, dim=-1) @ split(v)
    return out.transpose(1, 2).reshape(b, lq, d)


def preprocess(image: Image.Image, arch) -> torch.Tensor:
    """Resize the shorter side (bicubic), centre crop, [0, 1], CLIP normalisation."""
    size = arch.image["size"]
    w, h = image.size
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    image = image.resize((new_w, new_h), Image.BICUBIC)
    top, left = round((new_h - size) / 2), round((new_w - size) / 2)
    image = image.crop((left, top, left + size, top + size)).convert("RGB")
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(arch.image["mean"]).view(3, 1, 1)
    std = torch.tensor(arch.image["std"]).view(3, 1, 1)
    return (x - mean) / std


def vit(pixels, sd, arch):
    """BLIP's ViT: patch embedding, [cls] + positions, pre-norm blocks, final norm (all tokens)."""
    v, p = "blip.visual_encoder.", arch.vision["patch_size"]
    eps, heads = arch.vision["layer_norm_eps"], arch.vision["num_attention_heads"]
    b, c, h, w = pixels.shape
    patches = pixels.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    patches = patches.reshape(b, (h // p) * (w // p), c * p * p)
    weight = sd[v + "patch_embed.proj.weight"].reshape(-1, c * p * p)
    x = patches @ weight.T + sd[v + "patch_embed.proj.bias"]
    x = torch.cat([sd[v + "cls_token"].expand(b, 1, -1), x], dim=1) + sd[v + "pos_embed"]
    for i in range(arch.vision["num_hidden_layers"]):
        blk = f"{v}blocks.{i}."
        q, k, val = linear(layer_norm(x, sd, blk + "norm1.", eps), sd, blk + "attn.qkv.").chunk(
            3, dim=-1
        )
        x = x + linear(attention(q, k, val, heads), sd, blk + "attn.proj.")
        hidden = gelu(linear(layer_norm(x, sd, blk + "norm2.", eps), sd, blk + "mlp.fc1."))
        x = x + linear(hidden, sd, blk + "mlp.fc2.")
    return layer_norm(x, sd, v + "norm.", eps)


def bert(ids, mask, image, sd, arch):
    """BLIP's text encoder in encoder mode: post-norm layers, padding-masked self-attention,
    cross-attention to every image token; the [CLS] row."""
    t, eps, heads = (
        "blip.text_encoder.",
        arch.text["layer_norm_eps"],
        arch.text["num_attention_heads"],
    )
    x = sd[t + "embeddings.word_embeddings.weight"][ids]
    x = x + sd[t + "embeddings.position_embeddings.weight"][: ids.shape[1]]
    x = layer_norm(x, sd, t + "embeddings.LayerNorm.", eps)
    pad_bias = (1.0 - mask[:, None, None, :].float()) * -10000.0  # BLIP's extended mask
    for i in range(arch.text["num_hidden_layers"]):
        layer = f"{t}encoder.layer.{i}."
        for block, source, bias in (
            ("attention.", None, pad_bias),
            ("crossattention.", image, None),
        ):
            kv = x if source is None else source
            q = linear(x, sd, layer + block + "self.query.")
            k = linear(kv, sd, layer + block + "self.key.")
            val = linear(kv, sd, layer + block + "self.value.")
            out = linear(attention(q, k, val, heads, bias), sd, layer + block + "output.dense.")
            x = layer_norm(out + x, sd, layer + block + "output.LayerNorm.", eps)
        hidden = gelu(linear(x, sd, layer + "intermediate.dense."))
        x = layer_norm(
            linear(hidden, sd, layer + "output.dense.") + x, sd, layer + "output.LayerNorm.", eps
        )
    return x[:, 0, :]


def hand_reward(images, prompts, sd, arch, tokenizer) -> torch.Tensor:
    pixels = torch.stack([preprocess(image, arch) for image in images])
    tokens = tokenizer(
        prompts, padding="max_length", truncation=True, max_length=35, return_tensors="pt"
    )
    features = bert(tokens["input_ids"], tokens["attention_mask"], vit(pixels, sd, arch), sd, arch)
    r = features
    for index in (0, 2, 4, 6, 7):  # Linear layers of the official head; no activations
        r = linear(r, sd, f"mlp.layers.{index}.")
    return ((r - arch.head["mean"]) / arch.head["std"]).squeeze(-1)


# --- tests ---------------------------------------------------------------------------------


def test_tiny_checkpoint_is_fully_consumed(tiny, scorer):
    keys = set(load_state(tiny))
    used, skipped = scorer.checkpoint_keys.used, scorer.checkpoint_keys.skipped
    assert set(used) | set(skipped) == keys
    assert not set(used) & set(skipped)
    assert set(skipped) == set(KNOWN_UNUSED)
    assert set(used) == set(official_layout(load_architecture(TINY_ARCHITECTURE)))


def test_unknown_key_is_refused(tiny, tmp_path):
    state = load_state(tiny)
    state["blip.itm_head.weight"] = torch.zeros(2, 32)
    torch.save(state, tmp_path / "extra.pt")
    with pytest.raises(InputError, match=r"extra\.pt: unknown key 'blip\.itm_head\.weight'"):
        make_scorer(tiny, weights=tmp_path / "extra.pt")


def test_missing_key_is_refused(tiny, tmp_path):
    state = load_state(tiny)
    key = "blip.text_encoder.encoder.layer.1.crossattention.self.key.bias"
    del state[key]
    torch.save({"state_dict": state}, tmp_path / "missing.pt")  # wrapped: unwrapped on load
    with pytest.raises(InputError, match=rf"missing\.pt: missing key '{key}'"):
        make_scorer(tiny, weights=tmp_path / "missing.pt")


def test_wrong_architecture_shapes_are_refused(tiny):
    with pytest.raises(InputError, match=r"ImageReward\.pt: key 'blip\.visual_encoder\..*shape"):
        ImageRewardScorer(
            str(tiny / "ImageReward.pt"), str(tiny / "tokenizer"), str(DEFAULT_ARCHITECTURE)
        )


def test_score_matches_hand_written_forward(tiny, scorer):
    arch = load_architecture(TINY_ARCHITECTURE)
    images = random_images()
    prompts = [PROMPTS[0], PROMPTS[1], PROMPTS[0]]
    expected = hand_reward(images, prompts, load_state(tiny), arch, scorer.tokenizer)
    got = torch.tensor(scorer.score(images, prompts))
    assert torch.allclose(got, expected, atol=1e-5, rtol=0), (got, expected)
    # not a degenerate model: images and prompts change the score, and padding matters
    assert got.std() > 0.05
    padded = hand_reward(images[:1], PROMPTS[:1], load_state(tiny), arch, scorer.tokenizer)
    tokens = scorer.encode_prompts(PROMPTS[:1])
    assert tokens["attention_mask"].sum() < 35
    with torch.inference_mode():
        unmasked = scorer.model(
            scorer.transform()(images[0])[None],
            tokens["input_ids"],
            torch.ones_like(tokens["input_ids"]),
        )
    assert abs(float(unmasked[0]) - float(padded[0])) > 1e-3


def test_each_prompt_encoded_once_and_batching_changes_nothing(tiny, scorer, monkeypatch):
    seen: list[str] = []
    tokenizer = scorer.tokenizer

    class Counting:
        def __call__(self, texts, **kwargs):
            seen.extend(texts)
            return tokenizer(texts, **kwargs)

        def __len__(self):
            return len(tokenizer)

    monkeypatch.setattr(scorer, "tokenizer", Counting())
    images = random_images(seed=1)
    prompts = [PROMPTS[1], PROMPTS[0], PROMPTS[1]]
    together = scorer.score(images, prompts)
    assert sorted(seen) == sorted(set(prompts))
    one_by_one = [
        scorer.score([image], [prompt])[0] for image, prompt in zip(images, prompts, strict=True)
    ]
    assert together == pytest.approx(one_by_one, abs=1e-6)


def test_long_prompt_is_truncated_at_35_tokens(scorer):
    long = " ".join(["red cat"] * 30)
    tokens = scorer.encode_prompts([long, long + " blue dog on a mat"])
    assert tokens["input_ids"].shape == (2, 35)
    assert tokens["attention_mask"].all()
    assert torch.equal(tokens["input_ids"][0], tokens["input_ids"][1])
    assert tokens["input_ids"][0, 0] == scorer.tokenizer.cls_token_id
    image = random_images()[:1]
    assert scorer.score(image, [long]) == scorer.score(image, [long + " blue dog on a mat"])
    assert scorer.score(image, [long]) != scorer.score(image, ["red cat"])


def test_tokenizer_without_dec_enc_gets_them(tiny, scorer, tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(TINY_VOCAB) + "\n")  # a plain BERT vocab
    plain = make_scorer(tiny, tokenizer=tmp_path)
    assert len(plain.tokenizer) == len(scorer.tokenizer) == len(TINY_VOCAB) + 2
    ids = plain.tokenizer.convert_tokens_to_ids(["[DEC]", "[ENC]"])
    assert ids == [len(TINY_VOCAB), len(TINY_VOCAB) + 1]  # BLIP's order: [DEC] then [ENC]
    assert ids == scorer.tokenizer.convert_tokens_to_ids(["[DEC]", "[ENC]"])
    for key, value in plain.encode_prompts(PROMPTS).items():
        assert torch.equal(value, scorer.encode_prompts(PROMPTS)[key])


def test_missing_weights_is_one_line_naming_the_file(tiny, tmp_path):
    with pytest.raises(InputError) as error:
        make_scorer(tiny, weights=tmp_path / "ImageReward.pt")
    message = str(error.value)
    assert message.startswith(f"ImageReward weights not found: {tmp_path / 'ImageReward.pt'}")
    assert "https://huggingface.co/THUDM/ImageReward" in message
    assert "metrics.image_reward.weights" in message and "\n" not in message


def test_missing_or_empty_tokenizer_folder(tiny, tmp_path):
    for folder in (tmp_path / "nowhere", tmp_path):  # absent; a folder with no vocab
        with pytest.raises(InputError, match=r"bert-base-uncased tokenizer folder") as error:
            make_scorer(tiny, tokenizer=folder)
        assert str(folder) in str(error.value)
        assert "metrics.image_reward.tokenizer" in str(error.value)


def test_wrong_vocab_size_names_both_files(tiny, tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join([*TINY_VOCAB, "extra"]) + "\n")
    with pytest.raises(InputError, match=r"122 tokens .* 121 word embeddings") as error:
        make_scorer(tiny, tokenizer=tmp_path)
    assert str(tmp_path) in str(error.value) and "ImageReward.pt" in str(error.value)


def test_unreadable_weights_file(tiny, tmp_path):
    (tmp_path / "ImageReward.pt").write_bytes(b"<html>not a checkpoint</html>")
    with pytest.raises(InputError, match=r"cannot read ImageReward weights .*ImageReward\.pt"):
        make_scorer(tiny, weights=tmp_path / "ImageReward.pt")


def test_metric_id_changes_with_the_weights(tiny, scorer, tmp_path):
    assert scorer.metric_id.startswith("image_reward/v2/image-reward-tiny@")
    write_tiny_image_reward(tmp_path, seed=1)
    other = make_scorer(tmp_path)
    assert other.metric_id != scorer.metric_id
    assert other.metric_id.rsplit("/", 1)[0] == scorer.metric_id.rsplit("/", 1)[0]
    assert make_scorer(tiny).metric_id == scorer.metric_id


def test_transform_is_picklable_and_square(scorer):
    transform = pickle.loads(pickle.dumps(scorer.transform()))
    for image in random_images():
        assert transform(image).shape == (3, 32, 32)


def test_v1_architecture_matches_the_official_model():
    """ImageReward v1.0's keys map onto transformers modules of the same shapes (built on
    the meta device: no memory, no weights)."""
    arch = load_architecture(DEFAULT_ARCHITECTURE)
    layout = official_layout(arch)
    with torch.device("meta"):
        model = ImageRewardModel(arch)
    for part, module in model.parts().items():
        expected = {new: shape for part_, new, shape in layout.values() if part_ == part}
        got = {key: tuple(value.shape) for key, value in module.state_dict().items()}
        assert got == expected, part
    # facts of the official code (BLIP ViT-L/16 at 224, BERT-base + cross-attention, MLP(768))
    assert layout["blip.visual_encoder.pos_embed"][2] == (1, 197, 1024)
    assert layout["blip.visual_encoder.blocks.23.attn.qkv.weight"][2] == (3072, 1024)
    assert layout["blip.text_encoder.embeddings.word_embeddings.weight"][2] == (30524, 768)
    key = "blip.text_encoder.encoder.layer.11.crossattention.self.key.weight"
    assert layout[key][2] == (768, 1024)
    assert layout["mlp.layers.0.weight"][2] == (1024, 768)
    assert layout["mlp.layers.7.weight"][2] == (1, 16)
    assert arch.max_length == 35
