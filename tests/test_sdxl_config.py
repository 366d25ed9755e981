"""The shipped SDXL base configs: the architecture real checkpoints have, loadable offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from t2ibench.models.registry import resolve_model
from t2ibench.models.sdxl_config import SHIPPED, materialise_sdxl_config
from t2ibench.models.single_file import expected_original_keys

# Names from the original SDXL base checkpoint's layout, one per component and depth.
REAL_SDXL_KEYS = [
    "model.diffusion_model.input_blocks.4.1.transformer_blocks.1.attn1.to_k.weight",
    "model.diffusion_model.input_blocks.7.1.transformer_blocks.9.ff.net.0.proj.weight",
    "model.diffusion_model.middle_block.1.transformer_blocks.9.attn2.to_v.weight",
    "model.diffusion_model.output_blocks.2.2.conv.weight",
    "model.diffusion_model.output_blocks.5.2.conv.weight",
    "model.diffusion_model.label_emb.0.0.weight",
    "first_stage_model.decoder.up.3.block.2.conv2.weight",
    "first_stage_model.encoder.mid.attn_1.q.weight",
    "conditioner.embedders.0.transformer.text_model.encoder.layers.11.mlp.fc2.weight",
    "conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight",
    "conditioner.embedders.1.model.text_projection",
]


def test_shipped_configs_describe_sdxl_base():
    keys = expected_original_keys(SHIPPED)
    counts = {
        prefix: sum(k.startswith(prefix) for k in keys)
        for prefix in [
            "model.diffusion_model.",
            "first_stage_model.",
            "conditioner.embedders.0.",
            "conditioner.embedders.1.",
        ]
    }
    assert counts == {
        "model.diffusion_model.": 1680,
        "first_stage_model.": 248,
        "conditioner.embedders.0.": 196,
        "conditioner.embedders.1.": 389,
    }
    for key in REAL_SDXL_KEYS:
        assert key in keys


def test_materialised_folder_has_offline_tokenizers(tmp_path):
    from transformers import CLIPTokenizer

    out = tmp_path / "sdxl-base"
    materialise_sdxl_config(out)
    assert (out / "unet" / "config.json").read_text() == (
        SHIPPED / "unet" / "config.json"
    ).read_text()
    tok = CLIPTokenizer.from_pretrained(out / "tokenizer")
    tok2 = CLIPTokenizer.from_pretrained(out / "tokenizer_2")
    assert len(tok) == len(tok2) == 49408
    assert tok.pad_token == "<|endoftext|>" and tok2.pad_token == "!"
    ids = tok("a photo of a cat")["input_ids"]
    assert ids[0] == 49406 and ids[-1] == 49407 and len(ids) == 7
    materialise_sdxl_config(out)  # again: replaced whole, no temp folder left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sdxl-base"]


def test_single_file_without_config_uses_the_sdxl_base_folder(tmp_path):
    from t2ibench.models.tiny import materialise_builtin

    materialise_builtin("tiny-sdxl", tmp_path / "m.safetensors", tmp_path / "m.config")
    spec = resolve_model({"name": "m", "source": str(tmp_path / "m.safetensors")}, 0, "res")
    assert spec.config_dir == str(Path("res") / "configs" / "sdxl-base")
    assert spec.input_files == [str(tmp_path / "m.safetensors"), spec.config_dir]
    own = resolve_model(
        {
            "name": "m",
            "source": str(tmp_path / "m.safetensors"),
            "config": str(tmp_path / "m.config"),
        },
        0,
        "res",
    )
    assert own.input_files == [str(tmp_path / "m.safetensors")]
    with pytest.raises(Exception, match="model_index.json"):
        resolve_model(
            {"name": "m", "source": str(tmp_path / "m.safetensors"), "config": str(tmp_path)},
            0,
            "res",
        )
