"""Single-file checkpoints of the UNet families in the original (Stability / ldm) layout.

SDXL, SD 1.x and SD 2.x share the layout of the UNet and the VAE; their text encoders sit
under their own prefixes (`LAYOUTS`). Users bring such checkpoints as one ``.safetensors``
file in the layout Stability's code wrote, and diffusers reads those with
``from_single_file``. The built-in tiny models are written in that same layout so that the
tests and the workflow exercise the very code path a real checkpoint takes. diffusers
ships only the reader, so the writer lives here: it inverts diffusers' ``convert_ldm_*``
functions. The key layout is derived from each
component's config (number of blocks, layers per block, which blocks have attention), so
one function serves a tiny model and the real SDXL alike.
"""

import os
import uuid
from pathlib import Path

import torch
from diffusers import AutoencoderKL, StableDiffusionXLPipeline, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from t2ibench.errors import InputError
from t2ibench.models.checks import check_checkpoint

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_ENCODER_PREFIX = "conditioner.embedders.0.transformer.text_model."
TEXT_ENCODER_2_PREFIX = "conditioner.embedders.1.model."
SD1_TEXT_ENCODER_PREFIX = "cond_stage_model.transformer.text_model."
SD2_TEXT_ENCODER_PREFIX = "cond_stage_model.model."

# Renames inside one block, applied to the module path below a mapped prefix.
UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
VAE_ATTENTION = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}
OPEN_CLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}

# A prefix table maps a diffusers key prefix to (original prefix, renames below it).
PrefixTable = dict[str, tuple[str, dict[str, str]]]


def _has_attention(block_type: str) -> bool:
    return "CrossAttn" in block_type


def _unet_prefixes(config) -> PrefixTable:
    """The UNet's layout: ldm numbers its blocks flat (input_blocks.N, output_blocks.N).

    Each down block holds ``layers_per_block`` resnets (each optionally followed by a
    transformer) and, except the last, a downsampler in a slot of its own; each up block
    holds one more resnet than a down block and its upsampler shares the last slot.
    """
    per_block = config.layers_per_block
    if not isinstance(per_block, int):
        raise ValueError("the original SDXL layout needs one layers_per_block for all blocks")
    n_blocks = len(config.down_block_types)
    table: PrefixTable = {
        "conv_in.": ("input_blocks.0.0.", {}),
        "time_embedding.linear_1.": ("time_embed.0.", {}),
        "time_embedding.linear_2.": ("time_embed.2.", {}),
        "add_embedding.linear_1.": ("label_emb.0.0.", {}),
        "add_embedding.linear_2.": ("label_emb.0.2.", {}),
        "mid_block.resnets.0.": ("middle_block.0.", UNET_RESNET),
        "mid_block.attentions.0.": ("middle_block.1.", {}),
        "mid_block.resnets.1.": ("middle_block.2.", UNET_RESNET),
        "conv_norm_out.": ("out.0.", {}),
        "conv_out.": ("out.2.", {}),
    }
    for b, block_type in enumerate(config.down_block_types):
        for layer in range(per_block):
            slot = 1 + b * (per_block + 1) + layer
            table[f"down_blocks.{b}.resnets.{layer}."] = (f"input_blocks.{slot}.0.", UNET_RESNET)
            if _has_attention(block_type):
                table[f"down_blocks.{b}.attentions.{layer}."] = (f"input_blocks.{slot}.1.", {})
        if b < n_blocks - 1:
            slot = (b + 1) * (per_block + 1)
            table[f"down_blocks.{b}.downsamplers.0.conv."] = (f"input_blocks.{slot}.0.op.", {})
    for b, block_type in enumerate(config.up_block_types):
        for layer in range(per_block + 1):
            slot = b * (per_block + 1) + layer
            table[f"up_blocks.{b}.resnets.{layer}."] = (f"output_blocks.{slot}.0.", UNET_RESNET)
            if _has_attention(block_type):
                table[f"up_blocks.{b}.attentions.{layer}."] = (f"output_blocks.{slot}.1.", {})
        if b < n_blocks - 1:
            slot = b * (per_block + 1) + per_block
            index = 2 if _has_attention(block_type) else 1
            table[f"up_blocks.{b}.upsamplers.0."] = (f"output_blocks.{slot}.{index}.", {})
    return table


def _vae_prefixes(config) -> PrefixTable:
    """The VAE's layout: ``down.N.block.M`` and ``up.N.block.M``, with up blocks numbered
    from the lowest resolution in diffusers but from the highest in ldm."""
    n_blocks = len(config.down_block_types)
    table: PrefixTable = {
        "encoder.conv_norm_out.": ("encoder.norm_out.", {}),
        "decoder.conv_norm_out.": ("decoder.norm_out.", {}),
    }
    for name in ("encoder.conv_in.", "encoder.conv_out.", "decoder.conv_in.", "decoder.conv_out."):
        table[name] = (name, {})
    for name in ("quant_conv.", "post_quant_conv."):
        table[name] = (name, {})
    for part in ("encoder", "decoder"):
        table[f"{part}.mid_block.resnets.0."] = (f"{part}.mid.block_1.", VAE_RESNET)
        table[f"{part}.mid_block.resnets.1."] = (f"{part}.mid.block_2.", VAE_RESNET)
        table[f"{part}.mid_block.attentions.0."] = (f"{part}.mid.attn_1.", VAE_ATTENTION)
    for b in range(n_blocks):
        for layer in range(config.layers_per_block):
            table[f"encoder.down_blocks.{b}.resnets.{layer}."] = (
                f"encoder.down.{b}.block.{layer}.",
                VAE_RESNET,
            )
        table[f"encoder.down_blocks.{b}.downsamplers.0."] = (f"encoder.down.{b}.downsample.", {})
        ldm_b = n_blocks - 1 - b
        for layer in range(config.layers_per_block + 1):
            table[f"decoder.up_blocks.{b}.resnets.{layer}."] = (
                f"decoder.up.{ldm_b}.block.{layer}.",
                VAE_RESNET,
            )
        table[f"decoder.up_blocks.{b}.upsamplers.0."] = (f"decoder.up.{ldm_b}.upsample.", {})
    return table


def _rename(key: str, table: PrefixTable, component: str) -> str:
    """The original name of one diffusers key; an unmapped key is a bug, never skipped."""
    for prefix, (ldm_prefix, renames) in table.items():
        if key.startswith(prefix):
            rest = key[len(prefix) :]
            module, _, param = rest.rpartition(".")
            return ldm_prefix + (f"{renames.get(module, module)}.{param}" if module else param)
    raise ValueError(f"{component} key {key!r} has no place in the original SDXL layout")


def _convert(state_dict: dict, table: PrefixTable, prefix: str, component: str) -> dict:
    return {prefix + _rename(k, table, component): v for k, v in state_dict.items()}


def unet_to_original(unet) -> dict[str, torch.Tensor]:
    return _convert(unet.state_dict(), _unet_prefixes(unet.config), UNET_PREFIX, "unet")


def vae_to_original(vae) -> dict[str, torch.Tensor]:
    """The VAE's mid-block attention was a 1x1 convolution in ldm, hence the reshape."""
    out = _convert(vae.state_dict(), _vae_prefixes(vae.config), VAE_PREFIX, "vae")
    for key, tensor in out.items():
        if ".mid.attn_1." in key and key.endswith(".weight") and tensor.ndim == 2:
            out[key] = tensor[:, :, None, None]
    return out


def text_encoder_to_original(text_encoder, prefix: str = TEXT_ENCODER_PREFIX):
    """CLIP-L keeps transformers' names; transformers >= 5.6 drops the text_model. level."""
    return {
        prefix + key.removeprefix("text_model."): tensor
        for key, tensor in text_encoder.state_dict().items()
    }


def text_encoder_2_to_original(text_encoder_2, prefix: str = TEXT_ENCODER_2_PREFIX):
    """An OpenCLIP text encoder (SDXL's bigG, SD 2.x's ViT-H) in open_clip's layout:
    fused q/k/v, and a text projection (where the model has one) stored as a
    [width, projection] matrix multiplied from the right."""
    sd = {k.removeprefix("text_model."): v for k, v in text_encoder_2.state_dict().items()}
    out = {
        "token_embedding.weight": sd.pop("embeddings.token_embedding.weight"),
        "positional_embedding": sd.pop("embeddings.position_embedding.weight"),
        "ln_final.weight": sd.pop("final_layer_norm.weight"),
        "ln_final.bias": sd.pop("final_layer_norm.bias"),
    }
    if "text_projection.weight" in sd:
        out["text_projection"] = sd.pop("text_projection.weight").T.contiguous()
    for i in range(text_encoder_2.config.num_hidden_layers):
        layer, block = f"encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for param in ("weight", "bias"):
            qkv = [sd.pop(f"{layer}self_attn.{p}_proj.{param}") for p in ("q", "k", "v")]
            out[f"{block}attn.in_proj_{param}"] = torch.cat(qkv)
            for name, ldm_name in OPEN_CLIP_LAYER.items():
                out[f"{block}{ldm_name}.{param}"] = sd.pop(f"{layer}{name}.{param}")
    if sd:
        raise ValueError(f"text_encoder_2 keys without an open_clip name: {sorted(sd)}")
    return {prefix + k: v for k, v in out.items()}


# The text encoders of each layout: (pipeline component, writer, original prefix).
LAYOUTS = {
    "sdxl": (
        ("text_encoder", text_encoder_to_original, TEXT_ENCODER_PREFIX),
        ("text_encoder_2", text_encoder_2_to_original, TEXT_ENCODER_2_PREFIX),
    ),
    "sd1": (("text_encoder", text_encoder_to_original, SD1_TEXT_ENCODER_PREFIX),),
    "sd2": (("text_encoder", text_encoder_2_to_original, SD2_TEXT_ENCODER_PREFIX),),
}


def layout_of(header) -> str:
    """The layout of a checkpoint's keys (an SDXL, SD 1.x or SD 2.x single file)."""
    if any(k.startswith(TEXT_ENCODER_2_PREFIX) for k in header):
        return "sdxl"
    if any(k.startswith(SD2_TEXT_ENCODER_PREFIX) for k in header):
        return "sd2"
    return "sd1"


def to_original(components: dict, layout: str) -> dict[str, torch.Tensor]:
    """The weighted components of a pipeline under their original names."""
    out = {**unet_to_original(components["unet"]), **vae_to_original(components["vae"])}
    for name, writer, prefix in LAYOUTS[layout]:
        out.update(writer(components[name], prefix))
    return out


def sdxl_to_original(unet, vae, text_encoder, text_encoder_2) -> dict[str, torch.Tensor]:
    """All four weighted components of an SDXL pipeline under their original names."""
    parts = {"unet": unet, "vae": vae, "text_encoder": text_encoder}
    return to_original({**parts, "text_encoder_2": text_encoder_2}, "sdxl")


def build_components(config_dir: Path, device: str | torch.device, layout: str = "sdxl"):
    """The weighted components of a config folder's architecture (a dict by name), with
    freshly initialised weights made on `device` ("meta": no memory, no weights)."""
    config_dir = Path(config_dir)
    with torch.device(device):
        out = {
            "unet": UNet2DConditionModel.from_config(
                UNet2DConditionModel.load_config(config_dir / "unet")
            ),
            "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(config_dir / "vae")),
        }
        for name, _, _ in LAYOUTS[layout]:
            config = CLIPTextConfig.from_pretrained(config_dir / name)
            # SDXL's second encoder has a projection; SD 2.x's OpenCLIP is used without.
            model = CLIPTextModelWithProjection if name == "text_encoder_2" else CLIPTextModel
            out[name] = model(config)
    return out


def build_sdxl_components(config_dir: Path, device: str | torch.device):
    """(unet, vae, text_encoder, text_encoder_2) of an SDXL config folder's architecture."""
    parts = build_components(config_dir, device, "sdxl")
    return parts["unet"], parts["vae"], parts["text_encoder"], parts["text_encoder_2"]


def expected_original_keys(config_dir: Path, layout: str = "sdxl") -> set[str]:
    """Every weight name the config folder's architecture needs, in the original layout.

    The components are built on the meta device, so this costs no memory and no weights,
    even at full SDXL size.
    """
    return set(to_original(build_components(config_dir, "meta", layout), layout))


def check_original_checkpoint(path: Path, config_dir: Path, layout: str, label: str) -> None:
    """Refuse a checkpoint that is unsafe, damaged, or lacks weights the config needs
    (see check_sdxl_checkpoint)."""
    header = check_checkpoint(path)
    encoders = "both text encoders" if len(LAYOUTS[layout]) == 2 else "text encoder"
    try:
        expected = expected_original_keys(config_dir, layout)
    except OSError as error:  # what diffusers and transformers raise for a bad config
        reason = next(iter(str(error).splitlines()), "unreadable")
        raise InputError(f"{config_dir}: not a usable {label} config folder: {reason}") from None
    missing = expected - header.keys()
    if missing:
        raise InputError(
            f"{path}: lacks {len(missing)} weights that the {label} architecture in "
            f"{config_dir} needs, e.g. {sorted(missing)[0]}; expected a complete {label} "
            f"checkpoint (UNet, VAE and {encoders})"
        )


def check_sdxl_checkpoint(path: Path, config_dir: Path) -> None:
    """Refuse a checkpoint that is unsafe, damaged, or lacks weights the config needs.

    diffusers' loader does not say which weights are missing: a UNet or VAE weight gone
    fails with "Cannot copy out of meta tensor", and a text-encoder weight gone loads
    "fine" and fails at the first prompt. Extra keys (EMA copies, ``v_pred``) are allowed.
    """
    check_original_checkpoint(path, config_dir, "sdxl", "SDXL")


def export_sdxl_single_file(
    pipe: StableDiffusionXLPipeline,
    path: Path,
    extra: dict[str, torch.Tensor] | None = None,
    layout: str = "sdxl",
) -> None:
    """Write the pipeline as one original-layout ``.safetensors`` file.

    ``extra`` tensors are stored under their own names (e.g. the ``v_pred`` marker real
    v-prediction checkpoints carry). The file appears atomically: it is written beside the
    target and renamed, so a crash never leaves a half-written checkpoint. safetensors
    orders tensors by dtype and name, so equal weights give equal bytes.
    """
    names = ["unet", "vae", *(name for name, _, _ in LAYOUTS[layout])]
    weights = to_original({name: getattr(pipe, name) for name in names}, layout)
    tensors = {**weights, **(extra or {})}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        # safetensors creates its file with mode 0600; give it the mode (umask) of any
        # other output instead, read from a file Python creates.
        tmp.touch(exist_ok=False)
        mode = tmp.stat().st_mode
        save_file(tensors, tmp, metadata={"format": "pt"})
        tmp.chmod(mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_sdxl_config_folder(pipe: StableDiffusionXLPipeline, config_dir: Path) -> None:
    """Write the pipeline's configs and tokenizers, without weights.

    ``from_single_file(config=...)`` reads every component's config and both tokenizers
    from this folder, which is what keeps loading offline: without it diffusers guesses a
    Hub repo from the checkpoint's keys and tries to download its configs.
    """
    config_dir = Path(config_dir)
    config_dir.mkdir(parents=True, exist_ok=True)
    pipe.save_config(config_dir)
    pipe.scheduler.save_config(config_dir / "scheduler")
    pipe.unet.save_config(config_dir / "unet")
    pipe.vae.save_config(config_dir / "vae")
    for suffix in ("", "_2"):
        if getattr(pipe, f"text_encoder{suffix}", None) is not None:
            getattr(pipe, f"text_encoder{suffix}").config.save_pretrained(
                config_dir / f"text_encoder{suffix}"
            )
            getattr(pipe, f"tokenizer{suffix}").save_pretrained(config_dir / f"tokenizer{suffix}")


def load_sdxl_single_file(
    path: Path, config_dir: Path, torch_dtype: torch.dtype = torch.float32
) -> StableDiffusionXLPipeline:
    """Load an original-layout SDXL checkpoint with diffusers, never touching the Hub.

    Configs, tokenizers and the scheduler come from ``config_dir``; the weights come from
    ``path``. The prediction type is therefore the scheduler config's: diffusers does not
    look at a checkpoint's ``v_pred`` key, so callers choose a v-prediction config folder
    for a v-prediction checkpoint (see ``checks.has_vpred_key``). The checkpoint is
    checked first (``check_sdxl_checkpoint``), so a bad file fails in one clear line.
    """
    check_sdxl_checkpoint(path, config_dir)
    return load_original_single_file(StableDiffusionXLPipeline, path, config_dir, torch_dtype)


def load_original_single_file(pipeline, path: Path, config_dir: Path, torch_dtype):
    """diffusers' single-file loader of `pipeline`, offline, configs from `config_dir`."""
    return pipeline.from_single_file(
        str(path),
        config=str(config_dir),
        local_files_only=True,
        torch_dtype=torch_dtype,
    )
