"""The built-in tiny SDXL models and the original-layout single-file round trip."""

import socket

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import (
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
)
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

from t2ibench.errors import InputError
from t2ibench.models import single_file
from t2ibench.models.checks import check_checkpoint, has_vpred_key
from t2ibench.models.clip_tokenizer import write_clip_tokenizer
from t2ibench.models.single_file import (
    export_sdxl_single_file,
    load_sdxl_single_file,
    text_encoder_2_to_original,
    unet_to_original,
    vae_to_original,
    write_sdxl_config_folder,
)
from t2ibench.models.tiny import BUILTIN_MODELS, build_tiny_sdxl_pipeline, materialise_builtin

COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")
PROMPTS = [
    "a photo of a cat",
    "A RED car, parked; next to: the (old) barn... don't stop? #1 & 2 [x] 3.14",
    "café crème brûlée, 日本語のテキスト, naïve Ünïcödé 🙂",
    "  tabs\tand\nnewlines   everywhere ",
    "a very long prompt " * 30,
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def go_offline(monkeypatch):
    """HF_HUB_OFFLINE as a user would set it, and any network connection fails."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError("tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def offline(monkeypatch):
    go_offline(monkeypatch)


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_sdxl_pipeline("tiny-sdxl")


@pytest.fixture(scope="module")
def tiny_image(tiny):
    return generate(tiny)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny):
    folder = tmp_path_factory.mktemp("tiny-sdxl")
    checkpoint, config_dir = folder / "tiny-sdxl.safetensors", folder / "config"
    export_sdxl_single_file(tiny, checkpoint)
    write_sdxl_config_folder(tiny, config_dir)
    return checkpoint, config_dir


@pytest.fixture(scope="module")
def loaded(exported):
    with pytest.MonkeyPatch.context() as monkeypatch:
        go_offline(monkeypatch)
        pipe = load_sdxl_single_file(*exported)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, seed=7):
    generator = torch.Generator("cpu").manual_seed(seed)
    out = pipe(
        "a red cube on a table",
        num_inference_steps=4,
        height=64,
        width=64,
        generator=generator,
        output_type="np",
    )
    return out.images


def checkpoint_keys(path):
    with safe_open(str(path), framework="pt") as f:
        return set(f.keys())


# --- the CLIP tokenizer ---------------------------------------------------------------


@pytest.fixture(scope="module")
def open_clip_tokenizer():
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokenizers")
    write_clip_tokenizer(folder / "tokenizer")
    write_clip_tokenizer(folder / "tokenizer_2", pad_token="!")
    return (
        CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        CLIPTokenizer.from_pretrained(folder / "tokenizer_2"),
    )


def test_tokenizer_has_clips_size(tokenizers):
    tokenizer, tokenizer_2 = tokenizers
    assert len(tokenizer) == len(tokenizer_2) == 49408
    assert tokenizer.model_max_length == 77
    assert (tokenizer.pad_token_id, tokenizer_2.pad_token_id) == (49407, 0)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_tokenizer_ids_match_open_clip(tokenizers, open_clip_tokenizer, prompt):
    tokenizer, tokenizer_2 = tokenizers
    expected = open_clip_tokenizer([prompt])[0]  # padded with 0, i.e. "!"
    unpadded = tokenizer(prompt, truncation=True).input_ids
    assert unpadded == expected[: len(unpadded)].tolist()
    assert set(expected[len(unpadded) :].tolist()) <= {0}
    padded = tokenizer_2(prompt, padding="max_length", truncation=True, return_tensors="pt")
    assert torch.equal(padded.input_ids[0], expected)


def test_second_tokenizer_splits_exclamation_marks_like_sdxl(tokenizers, open_clip_tokenizer):
    """SDXL's tokenizer_2 makes its pad token "!" special, so "!!!" becomes three pads
    where open_clip has one merged token; the first tokenizer agrees with open_clip."""
    tokenizer, tokenizer_2 = tokenizers
    merged = open_clip_tokenizer.encode("wow!!!")
    assert tokenizer("wow!!!").input_ids[1:-1] == merged
    assert tokenizer_2("wow!!!").input_ids[1:-1] == merged[:1] + [0, 0, 0]


def test_tokenizer_files_are_deterministic(tmp_path):
    write_clip_tokenizer(tmp_path / "a")
    write_clip_tokenizer(tmp_path / "b")
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


# --- the original key layout ----------------------------------------------------------


def test_export_uses_the_original_layout(exported):
    keys = checkpoint_keys(exported[0])
    prefixes = (
        "model.diffusion_model.",
        "first_stage_model.",
        "conditioner.embedders.0.transformer.text_model.",
        "conditioner.embedders.1.model.",
    )
    assert all(key.startswith(prefixes) for key in keys)
    for key in [
        "model.diffusion_model.input_blocks.0.0.weight",
        "model.diffusion_model.input_blocks.3.0.op.weight",
        "model.diffusion_model.input_blocks.4.0.skip_connection.weight",
        "model.diffusion_model.input_blocks.5.1.transformer_blocks.1.attn2.to_k.weight",
        "model.diffusion_model.middle_block.1.proj_in.weight",
        "model.diffusion_model.output_blocks.2.2.conv.weight",
        "model.diffusion_model.output_blocks.5.0.in_layers.2.weight",
        "model.diffusion_model.label_emb.0.2.weight",
        "model.diffusion_model.time_embed.0.weight",
        "model.diffusion_model.out.2.weight",
        "first_stage_model.encoder.down.1.block.0.nin_shortcut.weight",
        "first_stage_model.encoder.mid.attn_1.proj_out.weight",
        "first_stage_model.decoder.up.3.upsample.conv.weight",
        "first_stage_model.decoder.norm_out.bias",
        "conditioner.embedders.0.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight",
        "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight",
        "conditioner.embedders.1.model.transformer.resblocks.2.mlp.c_proj.bias",
        "conditioner.embedders.1.model.positional_embedding",
        "conditioner.embedders.1.model.text_projection",
    ]:
        assert key in keys, key


def test_export_reshapes_and_fuses_like_the_original(exported, tiny):
    width = tiny.text_encoder_2.config.hidden_size
    with safe_open(str(exported[0]), framework="pt") as f:
        vae_query = f.get_slice("first_stage_model.encoder.mid.attn_1.q.weight").get_shape()
        in_proj = f.get_tensor(
            "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight"
        )
        projection = f.get_tensor("conditioner.embedders.1.model.text_projection")
    assert vae_query[2:] == [1, 1]  # a 1x1 convolution in the original VAE
    attention = tiny.text_encoder_2.text_model.encoder.layers[0].self_attn
    assert torch.equal(in_proj[width : 2 * width], attention.k_proj.weight)
    assert torch.equal(projection, tiny.text_encoder_2.text_projection.weight.T)


def test_layout_at_real_sdxl_size_reads_back_with_diffusers_own_converters():
    """Built on the meta device (no memory, no weights): the layout is derived from the
    configs, so SDXL's three-level UNet and four-level VAE map as well as the tiny ones."""
    with torch.device("meta"):
        unet = UNet2DConditionModel(
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=(320, 640, 1280),
            transformer_layers_per_block=(1, 2, 10),
            attention_head_dim=(5, 10, 20),
            use_linear_projection=True,
            cross_attention_dim=2048,
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,
        )
        vae = AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
        )
        text_encoder_2 = CLIPTextModelWithProjection(
            CLIPTextConfig(
                hidden_size=1280,
                intermediate_size=5120,
                num_attention_heads=20,
                num_hidden_layers=32,
                projection_dim=1280,
                hidden_act="gelu",
            )
        )
    unet_keys = unet_to_original(unet)
    assert (
        "model.diffusion_model.input_blocks.8.1.transformer_blocks.9.attn1.to_q.weight" in unet_keys
    )
    assert "model.diffusion_model.output_blocks.5.2.conv.weight" in unet_keys
    back = convert_ldm_unet_checkpoint(unet_keys, dict(unet.config))
    assert set(back) == set(unet.state_dict())
    back = convert_ldm_vae_checkpoint(vae_to_original(vae), dict(vae.config))
    assert {k: v.shape for k, v in back.items()} == {
        k: v.shape for k, v in vae.state_dict().items()
    }
    clip = text_encoder_2_to_original(text_encoder_2)
    back = convert_open_clip_checkpoint(
        text_encoder_2, clip, prefix="conditioner.embedders.1.model."
    )
    assert {k: v.shape for k, v in back.items()} == {
        k: v.shape for k, v in text_encoder_2.state_dict().items()
    }


# --- loading it back ------------------------------------------------------------------


@pytest.mark.parametrize("component", COMPONENTS)
def test_round_trip_keeps_every_parameter(tiny, loaded, component):
    original = getattr(tiny, component).state_dict()
    reloaded = getattr(loaded, component).state_dict()
    assert reloaded.keys() == original.keys()
    for key, tensor in original.items():
        assert reloaded[key].dtype == torch.float32, key
        assert torch.equal(reloaded[key], tensor), key


def test_round_trip_gives_the_same_image(tiny_image, loaded):
    assert tiny_image.shape == (1, 64, 64, 3) and np.isfinite(tiny_image).all()
    assert tiny_image.std() > 0.01  # not a blank image, so the comparison means something
    np.testing.assert_allclose(generate(loaded), tiny_image, rtol=0, atol=1e-5)


def test_tiny_generation_is_deterministic(tiny, tiny_image):
    np.testing.assert_array_equal(generate(tiny), tiny_image)
    assert not np.array_equal(generate(tiny, seed=8), tiny_image)


def test_build_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    first, again = build_tiny_sdxl_pipeline(seed=3), build_tiny_sdxl_pipeline(seed=3)
    other = build_tiny_sdxl_pipeline(seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    weight = "conv_in.weight"
    assert torch.equal(first.unet.state_dict()[weight], again.unet.state_dict()[weight])
    assert not torch.equal(first.unet.state_dict()[weight], other.unet.state_dict()[weight])


# --- built-in models ------------------------------------------------------------------


def folder_bytes(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_materialise_builtin_is_byte_identical(tmp_path):
    for run in ("a", "b"):
        materialise_builtin(
            "tiny-sdxl", tmp_path / run / "model.safetensors", tmp_path / run / "cfg"
        )
    first, second = folder_bytes(tmp_path / "a"), folder_bytes(tmp_path / "b")
    assert first.keys() == second.keys()
    assert len(first) > 8  # checkpoint, model_index.json and the component configs
    for name in first:
        assert first[name] == second[name], name


def test_vpred_builtin_is_marked_and_loads_as_v_prediction(tmp_path, offline):
    checkpoint, config_dir = tmp_path / "vpred.safetensors", tmp_path / "cfg"
    materialise_builtin("tiny-sdxl-vpred", checkpoint, config_dir)
    assert has_vpred_key(check_checkpoint(checkpoint))
    pipe = load_sdxl_single_file(checkpoint, config_dir)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert BUILTIN_MODELS["tiny-sdxl-vpred"] == "v_prediction"


def test_epsilon_builtin_has_no_vpred_marker(exported):
    assert not has_vpred_key(check_checkpoint(exported[0]))


def test_unknown_builtin_is_refused_with_the_valid_ids(tmp_path):
    with pytest.raises(InputError) as error:
        materialise_builtin("tiny-sdxl-typo", tmp_path / "m.safetensors", tmp_path / "cfg")
    message = str(error.value)
    assert "\n" not in message
    assert "tiny-sdxl-typo" in message and "tiny-sdxl, tiny-sdxl-vpred" in message
    assert not (tmp_path / "m.safetensors").exists()


def test_export_is_atomic(tiny, tmp_path, monkeypatch):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"previous")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(single_file, "save_file", fail)
    with pytest.raises(OSError, match="disk full"):
        export_sdxl_single_file(tiny, target)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_export_adds_extra_tensors_as_is(tiny, tmp_path):
    path = tmp_path / "model.safetensors"
    export_sdxl_single_file(tiny, path, extra={"v_pred": torch.tensor([]), "ztsnr": torch.ones(1)})
    with safe_open(str(path), framework="pt") as f:
        assert f.get_tensor("v_pred").numel() == 0
        assert torch.equal(f.get_tensor("ztsnr"), torch.ones(1))
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


@pytest.mark.parametrize(
    "dropped",
    [
        "model.diffusion_model.out.2.weight",
        "first_stage_model.",
        "conditioner.embedders.1.model.ln_final.weight",
    ],
)
def test_incomplete_checkpoint_is_refused_before_loading(exported, tmp_path, offline, dropped):
    """diffusers would fail with "Cannot copy out of meta tensor", or for a text encoder
    weight load without complaint and fail at the first prompt."""
    checkpoint, config_dir = exported
    weights = {k: v for k, v in load_file(checkpoint).items() if not k.startswith(dropped)}
    incomplete = tmp_path / "incomplete.safetensors"
    save_file(weights, incomplete)
    with pytest.raises(InputError) as error:
        load_sdxl_single_file(incomplete, config_dir)
    message = str(error.value)
    assert "incomplete.safetensors" in message and dropped in message and "\n" not in message


def test_pickle_is_refused_before_loading(exported, tmp_path, offline):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(InputError, match="model.ckpt.*pickles run code"):
        load_sdxl_single_file(path, exported[1])


def test_config_folder_without_component_configs_is_refused(exported, tmp_path, offline):
    (tmp_path / "model_index.json").write_text("{}")
    with pytest.raises(InputError, match="not a usable SDXL config folder"):
        load_sdxl_single_file(exported[0], tmp_path)
