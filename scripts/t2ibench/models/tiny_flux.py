"""FLUX.1 at toy size: built-in tiny dev and schnell models, the original (BFL) single-file
layout of a FLUX transformer, and tiny FLUX LoRAs in kohya and PEFT keys.

The tiny models are the real FLUX architecture (FluxTransformer2DModel with double and
single blocks, CLIP-L for the pooled prompt, T5 for the sequence, a 16-channel VAE with a
shift factor, the flow-matching Euler scheduler) with seeded random weights. dev embeds
the distilled guidance and shifts its sigmas by resolution; schnell has neither, as the
released models' configs say. The T5 tokenizer is a small Unigram model built here.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
from transformers import CLIPTextModel, T5Config, T5EncoderModel

from t2ibench.models.tiny import _text_config, _tokenizer, tiny_vae
from t2ibench.seeding import seeded

TINY_FLUX = {"tiny-flux-dev": True, "tiny-flux-schnell": False}  # id -> guidance embedded
T5_WIDTH, CLIP_WIDTH = 32, 32
T5_WORDS = "a the red blue green cube on table cat dog photo of in with and light night sea"


def t5_tokenizer():
    """A small T5-style (Unigram, Metaspace, appends </s>) tokenizer, built offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import AutoTokenizer, T5TokenizerFast

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -3.0)]
    vocab += [("▁" + w, -1.0) for w in T5_WORDS.split()]
    vocab += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789.,"]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    fast = T5TokenizerFast(
        tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>", extra_ids=0
    )
    with tempfile.TemporaryDirectory() as folder:  # as a user's folder holds it
        fast.save_pretrained(folder)
        return AutoTokenizer.from_pretrained(folder)


def _t5(vocab_size: int) -> T5EncoderModel:
    return T5EncoderModel(
        T5Config(
            vocab_size=vocab_size,
            d_model=T5_WIDTH,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            feed_forward_proj="gated-gelu",
            dense_act_fn="gelu_new",
            is_gated_act=True,
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=1,
        )
    )


def transformer(guidance: bool, width: int = 32, heads: int = 2, layers=(1, 1)):
    """FLUX's transformer: `layers` double and single blocks at `width` (heads x head)."""
    head = width // heads
    rope = (head - 2 * (3 * head // 8), 3 * head // 8, 3 * head // 8)
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,  # 16 latent channels, packed 2 x 2
        num_layers=layers[0],
        num_single_layers=layers[1],
        attention_head_dim=head,
        num_attention_heads=heads,
        joint_attention_dim=T5_WIDTH,
        pooled_projection_dim=CLIP_WIDTH,
        guidance_embeds=guidance,
        axes_dims_rope=rope,
    )


def scheduler(dev: bool) -> FlowMatchEulerDiscreteScheduler:
    """The released schedulers: dev shifts by resolution, schnell not at all."""
    if dev:
        return FlowMatchEulerDiscreteScheduler(
            shift=3.0,
            use_dynamic_shifting=True,
            base_shift=0.5,
            max_shift=1.15,
            base_image_seq_len=256,
            max_image_seq_len=4096,
        )
    return FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False)


def flux_vae():
    """FLUX's 16-channel VAE latents (scaling and shift factors), without quant convs."""
    return tiny_vae(
        latent_channels=16,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


def build_tiny_flux_pipeline(model_id: str = "tiny-flux-dev", seed: int = 0) -> FluxPipeline:
    dev = TINY_FLUX[model_id]
    t5_tok = t5_tokenizer()
    with seeded(seed):
        vae = flux_vae()
        clip = CLIPTextModel(_text_config(CLIP_WIDTH, "quick_gelu", 49407))
        t5 = _t5(len(t5_tok))
        denoiser = transformer(guidance=dev)
    pipe = FluxPipeline(
        scheduler=scheduler(dev),
        vae=vae,
        text_encoder=clip,
        tokenizer=_tokenizer(pad_token="<|endoftext|>"),
        text_encoder_2=t5.eval(),
        tokenizer_2=t5_tok,
        transformer=denoiser,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_flux(model_id: str, folder: Path) -> None:
    from t2ibench.io import building_dir

    with building_dir(folder) as staging:
        build_tiny_flux_pipeline(model_id).save_pretrained(staging)


# --- the original (BFL) layout of the transformer ----------------------------------------

# diffusers name -> BFL name, inside a double block and a single block
DOUBLE = {
    "norm1.linear": "img_mod.lin",
    "norm1_context.linear": "txt_mod.lin",
    "attn.norm_q": "img_attn.norm.query_norm",
    "attn.norm_k": "img_attn.norm.key_norm",
    "attn.norm_added_q": "txt_attn.norm.query_norm",
    "attn.norm_added_k": "txt_attn.norm.key_norm",
    "ff.net.0.proj": "img_mlp.0",
    "ff.net.2": "img_mlp.2",
    "ff_context.net.0.proj": "txt_mlp.0",
    "ff_context.net.2": "txt_mlp.2",
    "attn.to_out.0": "img_attn.proj",
    "attn.to_add_out": "txt_attn.proj",
}
SINGLE = {
    "norm.linear": "modulation.lin",
    "attn.norm_q": "norm.query_norm",
    "attn.norm_k": "norm.key_norm",
    "proj_out": "linear2",
}
FUSED = {  # BFL's fused projections: (block kind, BFL name, diffusers parts in order)
    ("double", "img_attn.qkv"): ("attn.to_q", "attn.to_k", "attn.to_v"),
    ("double", "txt_attn.qkv"): ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
    ("single", "linear1"): ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"),
}
TOP = {
    "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
    "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
    "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
    "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
    "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
    "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
    "context_embedder": "txt_in",
    "x_embedder": "img_in",
    "proj_out": "final_layer.linear",
}


def flux_to_original(model, prefix: str = "") -> dict[str, torch.Tensor]:
    """A FluxTransformer2DModel's weights under BFL's names (flux1-dev.safetensors'
    layout; `prefix` "model.diffusion_model." for ComfyUI's): the inverse of diffusers'
    convert_flux_transformer_checkpoint_to_diffusers. Every weight gets a name."""
    sd = dict(model.state_dict())
    out: dict[str, torch.Tensor] = {}

    def take(name: str) -> torch.Tensor:
        return sd.pop(name)

    for ours, theirs in TOP.items():
        for param in ("weight", "bias"):
            if f"{ours}.{param}" in sd:
                out[f"{theirs}.{param}"] = take(f"{ours}.{param}")
    scale, shift = take("norm_out.linear.weight").chunk(2)  # diffusers: scale, shift
    out["final_layer.adaLN_modulation.1.weight"] = torch.cat([shift, scale])
    scale, shift = take("norm_out.linear.bias").chunk(2)
    out["final_layer.adaLN_modulation.1.bias"] = torch.cat([shift, scale])
    for kind, count, table, block in (
        ("double", model.config.num_layers, DOUBLE, "transformer_blocks"),
        ("single", model.config.num_single_layers, SINGLE, "single_transformer_blocks"),
    ):
        bfl_block = "double_blocks" if kind == "double" else "single_blocks"
        for i in range(count):
            ours, theirs = f"{block}.{i}.", f"{bfl_block}.{i}."
            for name, bfl in table.items():
                if bfl.endswith("_norm"):
                    out[f"{theirs}{bfl}.scale"] = take(f"{ours}{name}.weight")
                    continue
                for param in ("weight", "bias"):
                    out[f"{theirs}{bfl}.{param}"] = take(f"{ours}{name}.{param}")
            for (fused_kind, bfl), parts in FUSED.items():
                if fused_kind == kind:
                    for param in ("weight", "bias"):
                        out[f"{theirs}{bfl}.{param}"] = torch.cat(
                            [take(f"{ours}{part}.{param}") for part in parts]
                        )
    if sd:
        raise ValueError(f"FLUX transformer weights without a BFL name: {sorted(sd)[:5]}")
    return {prefix + k: v for k, v in out.items()}


def write_flux_lora(pipe, path: Path, fmt: str = "peft", seed: int = 0, rank: int = 4) -> None:
    """A LoRA on the double blocks' fused q/k/v, attention outputs and MLPs and the single
    blocks' output projection, as kohya (BFL names, fused q/k/v) or PEFT keys; one set of
    weights, so both formats make the same image."""
    from safetensors.torch import save_file

    model = pipe.transformer
    modules = dict(model.named_modules())
    targets: list[tuple[str, tuple[str, ...]]] = []
    for i in range(model.config.num_layers):
        block = f"transformer_blocks.{i}."
        targets.append((f"double_blocks.{i}.img_attn.qkv", FUSED["double", "img_attn.qkv"]))
        for name in ("attn.to_out.0", "attn.to_add_out", "ff.net.0.proj", "ff.net.2"):
            targets.append((f"double_blocks.{i}.{DOUBLE[name]}", (name,)))
        targets[-5:] = [(bfl, tuple(block + p for p in parts)) for bfl, parts in targets[-5:]]
    for i in range(model.config.num_single_layers):
        targets.append((f"single_blocks.{i}.linear2", (f"single_transformer_blocks.{i}.proj_out",)))
    tensors: dict[str, torch.Tensor] = {}
    with seeded(seed):
        for bfl, parts in targets:
            linears = [modules[p] for p in parts]
            down = torch.randn(rank, linears[0].in_features) * 0.3
            up = torch.randn(sum(m.out_features for m in linears), rank) * 0.3
            if fmt == "kohya":
                key = "lora_unet_" + bfl.replace(".", "_")
                tensors[f"{key}.lora_down.weight"] = down
                tensors[f"{key}.lora_up.weight"] = up
                tensors[f"{key}.alpha"] = torch.tensor(float(rank))
                continue
            for part, part_up in zip(
                parts, up.split([m.out_features for m in linears]), strict=True
            ):
                tensors[f"transformer.{part}.lora_A.weight"] = down.clone()
                tensors[f"transformer.{part}.lora_B.weight"] = part_up.clone()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata={"format": "pt"})
