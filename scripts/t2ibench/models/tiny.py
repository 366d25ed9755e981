"""Built-in tiny SDXL models: the real SDXL architecture at toy size, random weights.

They let the whole workflow run on a laptop CPU in seconds, with nothing downloaded, and
they travel the same road as a user's checkpoint: ``materialise_builtin`` writes an
original-layout single file plus a config folder, which the workflow then loads with
diffusers' single-file loader like any other SDXL checkpoint.
"""

import tempfile
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
)

from t2ibench.errors import InputError
from t2ibench.models.clip_tokenizer import (
    CONTEXT_LENGTH,
    EOS_TOKEN,
    VOCAB_SIZE,
    write_clip_tokenizer,
)
from t2ibench.models.single_file import export_sdxl_single_file, write_sdxl_config_folder
from t2ibench.seeding import seeded

# Built-in model id -> the prediction type its scheduler is configured for.
BUILTIN_MODELS = {
    "tiny-sdxl": "epsilon",
    "tiny-sdxl-vpred": "v_prediction",
}

IMAGE_SIZE = 64
TEXT_WIDTH, TEXT_2_WIDTH = 32, 48  # must differ: diffusers tells the encoders apart by width
POOLED_WIDTH = 32
TIME_EMBED_DIM = 8  # SDXL embeds 6 size/crop numbers at this width each
# Text encoder depth: deep enough for every clip_skip of the sdxl_clip_skip sweep (1-3).
TEXT_LAYERS = 4


def _check_model_id(model_id: str) -> None:
    if model_id not in BUILTIN_MODELS:
        valid = ", ".join(sorted(BUILTIN_MODELS))
        raise InputError(f"unknown built-in model {model_id!r}; valid ids: {valid}")


def tiny_vae(latent_channels: int = 4, scaling_factor: float = 0.13025, **extra) -> AutoencoderKL:
    """Four blocks like SDXL's VAE, so latents are 1/8 of the image side.

    The defaults are SDXL's latent settings; other families pass their own.
    """
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=latent_channels,
        sample_size=IMAGE_SIZE,
        scaling_factor=scaling_factor,
        **extra,
    )


def _unet(latent_size: int) -> UNet2DConditionModel:
    """SDXL's UNet shape: no attention at the top level, deeper transformers lower down,
    and the pooled-text plus size/crop embedding ("text_time")."""
    return UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=2,
        transformer_layers_per_block=(1, 2),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        cross_attention_dim=TEXT_WIDTH + TEXT_2_WIDTH,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=POOLED_WIDTH + 6 * TIME_EMBED_DIM,
        norm_num_groups=32,
    )


def _text_config(width: int, hidden_act: str, pad_token_id: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=VOCAB_SIZE,
        max_position_embeddings=CONTEXT_LENGTH,
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=TEXT_LAYERS,  # SDXL reads the penultimate layer
        num_attention_heads=4,
        projection_dim=POOLED_WIDTH,
        hidden_act=hidden_act,
        bos_token_id=VOCAB_SIZE - 2,
        eos_token_id=VOCAB_SIZE - 1,
        pad_token_id=pad_token_id,
    )


def _tokenizer(pad_token: str) -> CLIPTokenizer:
    with tempfile.TemporaryDirectory() as folder:
        write_clip_tokenizer(Path(folder), pad_token=pad_token)
        return CLIPTokenizer.from_pretrained(folder)


def _scheduler(prediction_type: str) -> EulerDiscreteScheduler:
    """SDXL's training noise schedule and default sampler."""
    return EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
        prediction_type=prediction_type,
    )


def build_tiny_sdxl_pipeline(
    model_id: str = "tiny-sdxl", seed: int = 0
) -> StableDiffusionXLPipeline:
    """A float32 tiny SDXL pipeline whose weights depend only on ``seed``.

    The global torch RNG is used to initialise the modules, inside ``fork_rng`` so the
    caller's random state is left as it was.
    """
    _check_model_id(model_id)
    with seeded(seed):
        vae = tiny_vae()
        unet = _unet(IMAGE_SIZE // 2 ** (len(vae.config.block_out_channels) - 1))
        text_encoder = CLIPTextModel(_text_config(TEXT_WIDTH, "quick_gelu", VOCAB_SIZE - 1))
        text_encoder_2 = CLIPTextModelWithProjection(_text_config(TEXT_2_WIDTH, "gelu", 0))
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=_tokenizer(pad_token=EOS_TOKEN),
        tokenizer_2=_tokenizer(pad_token="!"),
        unet=unet,
        scheduler=_scheduler(BUILTIN_MODELS[model_id]),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def materialise_builtin(model_id: str, checkpoint: Path, config_dir: Path) -> None:
    """Write a built-in model as a user would bring it: one original-layout checkpoint
    and a diffusers config folder. Same id, same bytes, in any process.

    The v-prediction model carries an empty ``v_pred`` tensor, the marker real
    v-prediction SDXL checkpoints carry.
    """
    _check_model_id(model_id)
    pipe = build_tiny_sdxl_pipeline(model_id)
    is_vpred = BUILTIN_MODELS[model_id] == "v_prediction"
    extra = {"v_pred": torch.tensor([])} if is_vpred else None
    export_sdxl_single_file(pipe, checkpoint, extra=extra)
    write_sdxl_config_folder(pipe, config_dir)
