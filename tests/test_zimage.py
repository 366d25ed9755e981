"""The tiny Z-Image model and our prompt encoding (layers, template, long prompts)."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers import ZImagePipeline

from t2ibench.errors import InputError
from t2ibench.models.zimage import (
    EMPTY_THINK_BLOCK,
    TEXT_LAYERS,
    ZImageEncoding,
    build_tiny_zimage_pipeline,
    encode_prompt,
    generate_zimage,
    save_tiny_zimage,
    template_prompt,
)

PROMPT = "a red cat with a blue light"
LONG = " ".join(["a photo of the dog in the light"] * 4)
N = 8  # a max_sequence_length the long prompt exceeds
GEN = dict(
    negative_prompt="blurry",
    enc=ZImageEncoding(),
    steps=2,
    guidance_scale=2.0,
    shift=3.0,
    width=64,
    height=64,
)


@pytest.fixture(scope="module")
def pipe() -> ZImagePipeline:
    return build_tiny_zimage_pipeline()


def _encode(pipe, prompt=PROMPT, **settings) -> torch.Tensor:
    return encode_prompt(pipe, prompt, ZImageEncoding(**settings))


def _pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


# --- hidden layers --------------------------------------------------------------------------


def test_hidden_layers_differ(pipe):
    assert not torch.allclose(_encode(pipe, hidden_layer=-1), _encode(pipe, hidden_layer=-2))


def test_single_layer_blend_equals_that_layer(pipe):
    blended = _encode(pipe, hidden_layer_blend={-2: 1.0})
    assert torch.equal(blended, _encode(pipe, hidden_layer=-2))


def test_even_blend_is_the_mean(pipe):
    blended = _encode(pipe, hidden_layer_blend={-1: 0.5, -2: 0.5})
    mean = (_encode(pipe, hidden_layer=-1) + _encode(pipe, hidden_layer=-2)) / 2
    assert torch.allclose(blended, mean, atol=1e-6)


def test_blend_weights_are_normalised(pipe):
    assert torch.allclose(
        _encode(pipe, hidden_layer_blend={-1: 3.0, -2: 3.0}),
        _encode(pipe, hidden_layer_blend={-1: 0.5, -2: 0.5}),
        atol=1e-6,
    )


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"hidden_layer": TEXT_LAYERS + 1}, "hidden_layer"),
        ({"hidden_layer": -(TEXT_LAYERS + 2)}, "hidden_layer"),
        ({"hidden_layer_blend": {-1: 0.5, 40: 0.5}}, "hidden_layer_blend"),
        ({"long_prompt_mode": "squash"}, "long_prompt_mode"),
        ({"think_block": False, "thinking_content": "hm"}, "thinking_content"),
    ],
)
def test_bad_settings_are_one_line_input_errors(pipe, settings, key):
    with pytest.raises(InputError, match=key) as error:
        _encode(pipe, **settings)
    assert "\n" not in str(error.value)


def test_hidden_layer_error_states_the_range(pipe):
    with pytest.raises(InputError, match=f"-{TEXT_LAYERS + 1} to {TEXT_LAYERS}"):
        _encode(pipe, hidden_layer=-20)


# --- long prompts ---------------------------------------------------------------------------


def test_short_prompts_are_kept_whole(pipe):
    full = _encode(pipe, LONG, max_sequence_length=10_000)
    assert torch.equal(_encode(pipe, LONG, max_sequence_length=len(full)), full)


def test_truncate_keeps_the_first_tokens(pipe):
    full = _encode(pipe, LONG, max_sequence_length=10_000)
    assert len(full) > 3 * N
    cut = _encode(pipe, LONG, long_prompt_mode="truncate", max_sequence_length=N)
    assert torch.equal(cut, full[:N])


def test_interpolate_resamples_with_ends_pinned(pipe):
    full = _encode(pipe, LONG, max_sequence_length=10_000)
    resampled = _encode(pipe, LONG, long_prompt_mode="interpolate", max_sequence_length=N)
    assert resampled.shape == (N, full.shape[1])
    assert torch.allclose(resampled[0], full[0], atol=1e-6)
    assert torch.allclose(resampled[-1], full[-1], atol=1e-6)


@pytest.mark.parametrize("mode", ["pool", "attention_pool"])
def test_pooling_yields_n_tokens(pipe, mode):
    full = _encode(pipe, LONG, max_sequence_length=10_000)
    pooled = _encode(pipe, LONG, long_prompt_mode=mode, max_sequence_length=N)
    assert pooled.shape == (N, full.shape[1])
    assert not torch.allclose(pooled, full[:N])


def test_pool_averages_adjacent_pairs(pipe):
    full = _encode(pipe, LONG, max_sequence_length=10_000)
    assert len(full) % 2 == 0  # LONG is chosen so, making each group a pair
    half = len(full) // 2
    pooled = _encode(pipe, LONG, long_prompt_mode="pool", max_sequence_length=half)
    assert torch.allclose(pooled, (full[0::2] + full[1::2]) / 2, atol=1e-6)


# --- chat template --------------------------------------------------------------------------


def test_system_prompt_and_thinking_appear(pipe):
    enc = ZImageEncoding(system_prompt="You are a painter.", thinking_content="warm tones")
    text = template_prompt(pipe.tokenizer, PROMPT, enc)
    assert "You are a painter." in text
    assert "<think>\nwarm tones\n</think>\n\n" in text
    assert text.index("You are a painter.") < text.index(PROMPT) < text.index("warm tones")


def test_think_block_is_the_empty_block(pipe):
    with_block = template_prompt(pipe.tokenizer, PROMPT, ZImageEncoding(think_block=True))
    without = template_prompt(pipe.tokenizer, PROMPT, ZImageEncoding(think_block=False))
    assert with_block == without + EMPTY_THINK_BLOCK
    assert "<think>" not in without


def test_without_think_block_matches_diffusers_own_template(pipe):
    """diffusers applies the template with enable_thinking=True: no think block."""
    messages = [{"role": "user", "content": PROMPT}]
    diffusers_text = pipe.tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=True
    )
    assert template_prompt(pipe.tokenizer, PROMPT, ZImageEncoding(think_block=False)) == (
        diffusers_text
    )


def test_default_encoding_matches_diffusers_when_settings_agree(pipe):
    """With diffusers' choices (no think block, layer -2) our embeddings are its own."""
    ours = _encode(pipe, think_block=False)
    (theirs,), _ = pipe.encode_prompt(PROMPT, device="cpu", do_classifier_free_guidance=False)
    assert torch.allclose(ours, theirs, atol=1e-5)  # its padding to 512 reorders float sums


# --- generation -----------------------------------------------------------------------------


def test_generation_is_deterministic_and_seeded(pipe):
    first = _pixels(generate_zimage(pipe, PROMPT, seed=1, **GEN))
    assert first.shape == (64, 64, 3)
    assert np.array_equal(first, _pixels(generate_zimage(pipe, PROMPT, seed=1, **GEN)))
    assert not np.array_equal(first, _pixels(generate_zimage(pipe, PROMPT, seed=2, **GEN)))
    other_shift = {**GEN, "shift": 6.0}
    assert not np.array_equal(first, _pixels(generate_zimage(pipe, PROMPT, seed=1, **other_shift)))


def test_encoding_settings_change_the_image(pipe):
    first = _pixels(generate_zimage(pipe, PROMPT, seed=1, **GEN))
    layer_1 = {**GEN, "enc": replace(GEN["enc"], hidden_layer=-1)}
    assert not np.array_equal(first, _pixels(generate_zimage(pipe, PROMPT, seed=1, **layer_1)))


def test_saved_folder_generates_the_same_image(pipe, tmp_path):
    folder = tmp_path / "tiny-zimage"
    save_tiny_zimage(folder)
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-zimage"]  # no staging left behind
    loaded = ZImagePipeline.from_pretrained(folder, local_files_only=True)
    loaded.set_progress_bar_config(disable=True)
    assert template_prompt(loaded.tokenizer, PROMPT, ZImageEncoding()) == template_prompt(
        pipe.tokenizer, PROMPT, ZImageEncoding()
    )
    assert torch.allclose(_encode(loaded), _encode(pipe), atol=1e-5)
    expected = _pixels(generate_zimage(pipe, PROMPT, seed=3, **GEN))
    assert np.abs(_pixels(generate_zimage(loaded, PROMPT, seed=3, **GEN)) - expected).max() <= 1


def test_saving_is_deterministic(tmp_path):
    save_tiny_zimage(tmp_path / "a")
    save_tiny_zimage(tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*"))
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*"))
    for name in files:
        if (tmp_path / "a" / name).is_file():
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
