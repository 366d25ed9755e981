"""Built-in tiny SD 1.x and SD 2.x models: their architectures at toy size, random weights.

SD 1.x conditions a UNet on CLIP ViT-L (QuickGELU, pads with <|endoftext|>); SD 2.x on
OpenCLIP ViT-H (GELU, pads with "!", linear projections in the UNet's transformers) and
is trained for v-prediction at 768 px. Each is written as the original-layout single file
a user would bring (t2ibench.models.single_file, layouts "sd1" and "sd2") plus its config
folder, and loaded back through diffusers' single-file loader.
"""

from pathlib import Path

from diffusers import DDIMScheduler, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextModel

from t2ibench.models.clip_tokenizer import EOS_TOKEN, VOCAB_SIZE
from t2ibench.models.single_file import export_sdxl_single_file, write_sdxl_config_folder
from t2ibench.models.tiny import IMAGE_SIZE, TEXT_LAYERS, _text_config, _tokenizer, tiny_vae
from t2ibench.seeding import seeded

# id -> (layout, prediction type)
TINY_SD_MODELS = {"tiny-sd15": ("sd1", "epsilon"), "tiny-sd2-vpred": ("sd2", "v_prediction")}
TEXT_WIDTH = {"sd1": 32, "sd2": 48}
BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


def _unet(layout: str, latent_size: int) -> UNet2DConditionModel:
    """SD's UNet shape: attention at the higher resolutions, none at the lowest."""
    return UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=2,
        attention_head_dim=(2, 4) if layout == "sd2" else 4,
        use_linear_projection=layout == "sd2",
        cross_attention_dim=TEXT_WIDTH[layout],
        norm_num_groups=32,
    )


def _scheduler(layout: str, prediction_type: str):
    """SD 1.x's PNDM and SD 2.x's DDIM training schedules, as their model folders set."""
    if layout == "sd1":
        return PNDMScheduler(
            **BETAS, skip_prk_steps=True, steps_offset=1, prediction_type=prediction_type
        )
    return DDIMScheduler(
        **BETAS,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type=prediction_type,
    )


def build_tiny_sd_pipeline(model_id: str = "tiny-sd15", seed: int = 0) -> StableDiffusionPipeline:
    """A float32 tiny SD 1.x or 2.x pipeline whose weights depend only on ``seed``."""
    layout, prediction = TINY_SD_MODELS[model_id]
    with seeded(seed):
        vae = tiny_vae(scaling_factor=0.18215)
        unet = _unet(layout, IMAGE_SIZE // 2 ** (len(vae.config.block_out_channels) - 1))
        if layout == "sd1":
            config = _text_config(TEXT_WIDTH[layout], "quick_gelu", VOCAB_SIZE - 1)
        else:
            config = _text_config(TEXT_WIDTH[layout], "gelu", 0)
        text_encoder = CLIPTextModel(config)
    assert text_encoder.config.num_hidden_layers == TEXT_LAYERS
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=_tokenizer(pad_token=EOS_TOKEN if layout == "sd1" else "!"),
        unet=unet,
        scheduler=_scheduler(layout, prediction),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def materialise_tiny_sd(model_id: str, checkpoint: Path, config_dir: Path) -> None:
    """Write the model as a user brings it: one original-layout file and a config folder.
    The v-prediction model carries no marker: SD 2.x files do not, and the family's rule
    (v-prediction unless set otherwise) decides."""
    layout, _ = TINY_SD_MODELS[model_id]
    pipe = build_tiny_sd_pipeline(model_id)
    export_sdxl_single_file(pipe, checkpoint, layout=layout)
    write_sdxl_config_folder(pipe, config_dir)
