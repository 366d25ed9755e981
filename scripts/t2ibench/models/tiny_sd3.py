"""SD3 / SD3.5 at toy size: a built-in tiny model and the original (MMDiT) single-file
layout of its transformer.

The tiny model is the real architecture (SD3Transformer2DModel with SD3.5's RMS q/k
norms; CLIP-L and CLIP-G with projections; T5; a 16-channel VAE with a shift factor;
flow-matching Euler with shift 3.0) with seeded random weights. The two CLIP widths add
up to T5's, as SD3's pad the CLIP embeddings to T5's width.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    FlowMatchEulerDiscreteScheduler,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
)
from transformers import CLIPTextModelWithProjection

from t2ibench.models.tiny import IMAGE_SIZE, POOLED_WIDTH, _text_config, _tokenizer, tiny_vae
from t2ibench.models.tiny_flux import T5_WIDTH, _t5, t5_tokenizer
from t2ibench.seeding import seeded

CLIP_L, CLIP_G = 12, 20  # add up to T5_WIDTH


def build_tiny_sd3_pipeline(seed: int = 0) -> StableDiffusion3Pipeline:
    t5_tok = t5_tokenizer()
    with seeded(seed):
        vae = tiny_vae(
            latent_channels=16,
            scaling_factor=1.5305,
            shift_factor=0.0609,
            use_quant_conv=False,
            use_post_quant_conv=False,
        )
        transformer = SD3Transformer2DModel(
            sample_size=IMAGE_SIZE // 8,
            patch_size=2,
            in_channels=16,
            num_layers=2,
            attention_head_dim=8,
            num_attention_heads=2,
            joint_attention_dim=T5_WIDTH,
            caption_projection_dim=16,
            pooled_projection_dim=2 * POOLED_WIDTH,
            out_channels=16,
            pos_embed_max_size=16,
            qk_norm="rms_norm",
        )
        clip_l = CLIPTextModelWithProjection(_text_config(CLIP_L, "quick_gelu", 49407))
        clip_g = CLIPTextModelWithProjection(_text_config(CLIP_G, "gelu", 0))
        t5 = _t5(len(t5_tok))
    assert CLIP_L + CLIP_G == T5_WIDTH
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae,
        text_encoder=clip_l,
        tokenizer=_tokenizer(pad_token="<|endoftext|>"),
        text_encoder_2=clip_g,
        tokenizer_2=_tokenizer(pad_token="!"),
        text_encoder_3=t5.eval(),
        tokenizer_3=t5_tok,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_sd3(folder: Path) -> None:
    from t2ibench.io import building_dir

    with building_dir(folder) as staging:
        build_tiny_sd3_pipeline().save_pretrained(staging)


def _swap(tensor: torch.Tensor) -> torch.Tensor:
    first, second = tensor.chunk(2)
    return torch.cat([second, first])


def sd3_to_original(model, prefix: str = "model.diffusion_model.") -> dict[str, torch.Tensor]:
    """An SD3Transformer2DModel's weights under the original MMDiT names (sd3.5_*.safetensors'
    layout): the inverse of diffusers' convert_sd3_transformer_checkpoint_to_diffusers.
    Dual-attention (SD3.5 Medium's attn2) layers are not written."""
    sd = dict(model.state_dict())
    out: dict[str, torch.Tensor] = {}

    def move(ours: str, theirs: str, change=None) -> None:
        for param in ("weight", "bias"):
            key = f"{ours}.{param}"
            if key in sd:
                value = sd.pop(key)
                out[f"{theirs}.{param}"] = change(value) if change else value

    out["pos_embed"] = sd.pop("pos_embed.pos_embed")
    move("pos_embed.proj", "x_embedder.proj")
    move("time_text_embed.timestep_embedder.linear_1", "t_embedder.mlp.0")
    move("time_text_embed.timestep_embedder.linear_2", "t_embedder.mlp.2")
    move("context_embedder", "context_embedder")
    move("time_text_embed.text_embedder.linear_1", "y_embedder.mlp.0")
    move("time_text_embed.text_embedder.linear_2", "y_embedder.mlp.2")
    last = model.config.num_layers - 1
    for i in range(model.config.num_layers):
        ours, x, c = (
            f"transformer_blocks.{i}.",
            f"joint_blocks.{i}.x_block.",
            f"joint_blocks.{i}.context_block.",
        )
        for param in ("weight", "bias"):
            out[f"{x}attn.qkv.{param}"] = torch.cat(
                [sd.pop(f"{ours}attn.to_{p}.{param}") for p in "qkv"]
            )
            out[f"{c}attn.qkv.{param}"] = torch.cat(
                [sd.pop(f"{ours}attn.add_{p}_proj.{param}") for p in "qkv"]
            )
        for name, theirs in [
            ("norm_q", f"{x}attn.ln_q"),
            ("norm_k", f"{x}attn.ln_k"),
            ("norm_added_q", f"{c}attn.ln_q"),
            ("norm_added_k", f"{c}attn.ln_k"),
        ]:
            move(f"{ours}attn.{name}", theirs)
        move(f"{ours}attn.to_out.0", f"{x}attn.proj")
        move(f"{ours}attn.to_add_out", f"{c}attn.proj")
        move(f"{ours}norm1.linear", f"{x}adaLN_modulation.1")
        move(f"{ours}norm1_context.linear", f"{c}adaLN_modulation.1", _swap if i == last else None)
        move(f"{ours}ff.net.0.proj", f"{x}mlp.fc1")
        move(f"{ours}ff.net.2", f"{x}mlp.fc2")
        move(f"{ours}ff_context.net.0.proj", f"{c}mlp.fc1")
        move(f"{ours}ff_context.net.2", f"{c}mlp.fc2")
    move("proj_out", "final_layer.linear")
    move("norm_out.linear", "final_layer.adaLN_modulation.1", _swap)
    if sd:
        raise ValueError(f"SD3 transformer weights without an MMDiT name: {sorted(sd)[:5]}")
    return {prefix + k: v for k, v in out.items()}
