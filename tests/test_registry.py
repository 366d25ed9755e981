"""Model entries resolved from the config: sources, models_dir, prediction type."""

from __future__ import annotations

import json

import pytest

from t2ibench.errors import InputError
from t2ibench.models.registry import model_name_from_file, resolve_model, resolve_models

from conftest import pipeline_index


def _safetensors(path, keys=("conditioner.embedders.1.model.ln_final.weight",)):
    header = {
        k: {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]}
        for i, k in enumerate(keys)
    }
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + b"\0" * (4 * len(keys)))
    return path


def config(tmp_path, models=(), models_dir=None):
    return {
        "models": list(models),
        "models_dir": models_dir,
        "resources_dir": str(tmp_path / "res"),
    }


def test_models_dir_adds_one_model_per_safetensors(tmp_path):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    _safetensors(folder / "b-model.safetensors")
    _safetensors(folder / "My Model v2.safetensors")
    (folder / "notes.txt").write_text("not a model")
    listed = [{"name": "tiny", "source": "builtin:tiny-sdxl"}]
    specs = resolve_models(config(tmp_path, listed, str(folder)))
    assert [s.name for s in specs] == ["tiny", "My_Model_v2", "b-model"]
    assert specs[2].source.endswith("b-model.safetensors") and specs[2].kind == "single_file"


def test_models_dir_name_clash_and_empty(tmp_path):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    _safetensors(folder / "tiny.safetensors")
    listed = [{"name": "tiny", "source": "builtin:tiny-sdxl"}]
    with pytest.raises(InputError, match="duplicate model name 'tiny' .*models\\[0\\]"):
        resolve_models(config(tmp_path, listed, str(folder)))
    with pytest.raises(InputError, match="'models_dir': .*nope is not a folder"):
        resolve_models(config(tmp_path, listed, str(tmp_path / "nope")))
    with pytest.raises(InputError, match="no models"):
        resolve_models(config(tmp_path))


@pytest.mark.parametrize(
    ("stem", "name"),
    [
        ("plain", "plain"),
        ("with space", "with_space"),
        ("a..b", "a_b"),
        ("ünï", "_n_"),
        ("..hidden", "_hidden"),
    ],
)
def test_names_from_file_stems_are_valid(tmp_path, stem, name):
    assert model_name_from_file(tmp_path / f"{stem}.safetensors") == name


@pytest.mark.parametrize(
    ("name", "keys", "given", "expected", "why"),
    [
        ("noob-v-pred-1.0", (), None, "v_prediction", "name contains 'v-pred'"),
        ("NoobAI_V_PRED", (), None, "v_prediction", "name contains 'V_PRED'"),
        ("model-v-prediction", (), None, "v_prediction", "name contains 'v-prediction'"),
        ("plain", ("v_pred",), None, "v_prediction", "checkpoint has a 'v_pred' key"),
        ("plain", (), None, "epsilon", "default"),
        ("noob-vpred", (), "epsilon", "epsilon", "set in config"),
    ],
)
def test_prediction_type_detection(tmp_path, name, keys, given, expected, why):
    path = _safetensors(
        tmp_path / f"{name}.safetensors", ("conditioner.embedders.1.model.ln_final.weight", *keys)
    )
    entry = {"name": name, "source": str(path)}
    if given:
        entry["prediction_type"] = given
    spec = resolve_model(entry, 0, str(tmp_path))
    assert (spec.prediction_type, spec.prediction_reason) == (expected, why)


def test_unknown_architecture_names_what_was_found(tmp_path):
    path = _safetensors(tmp_path / "odd.safetensors", ("foo.weight", "bar.bias"))
    with pytest.raises(InputError, match="unsupported architecture .*bar.bias, foo.weight"):
        resolve_model({"name": "odd", "source": str(path)}, 0, str(tmp_path))


@pytest.mark.parametrize(
    ("pipeline", "family"),
    [
        ("StableDiffusionXLPipeline", "sdxl"),
        ("ZImagePipeline", "zimage"),
        ("NoSuchPipeline", None),
    ],
)
def test_diffusers_folder_family_from_model_index(tmp_path, pipeline, family):
    (tmp_path / "model_index.json").write_text(json.dumps(pipeline_index(pipeline)))
    entry = {"name": "m", "source": str(tmp_path)}
    if family:
        assert resolve_model(entry, 0, str(tmp_path)).family == family
    else:
        with pytest.raises(InputError, match="unsupported architecture 'NoSuchPipeline'"):
            resolve_model(entry, 0, str(tmp_path))


def test_hf_source_resolves_through_the_local_cache(tmp_path, monkeypatch):
    """hf:<org>/<name> is read from the Hugging Face cache layout, never downloaded."""
    cache = tmp_path / "hub"
    snapshot = cache / "models--acme--tiny-xl" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text(
        json.dumps(pipeline_index("StableDiffusionXLPipeline"))
    )
    (cache / "models--acme--tiny-xl" / "refs").mkdir()
    (cache / "models--acme--tiny-xl" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    spec = resolve_model({"name": "m", "source": "hf:acme/tiny-xl"}, 0, str(tmp_path))
    assert spec.kind == "diffusers" and spec.family == "sdxl"
    assert spec.checkpoint == str(snapshot)
    with pytest.raises(
        InputError,
        match="hf:acme/other is not in the local Hugging Face cache.*hf download acme/other",
    ):
        resolve_model({"name": "m", "source": "hf:acme/other"}, 0, str(tmp_path))
    with pytest.raises(InputError, match="expected hf:<org>/<name>"):
        resolve_model({"name": "m", "source": "hf:../../etc"}, 0, str(tmp_path))


def test_zimage_single_file_is_recognised_and_refused_clearly(tmp_path):
    path = _safetensors(
        tmp_path / "z_image_turbo.safetensors",
        ("context_refiner.0.attention.to_q.weight", "cap_embedder.0.weight"),
    )
    with pytest.raises(InputError, match="a Z-Image transformer checkpoint .*diffusers folder"):
        resolve_model({"name": "z", "source": str(path)}, 0, str(tmp_path))


def test_a_family_given_for_another_familys_folder_is_refused(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    entry = {"name": "m", "source": str(tmp_path), "family": "sdxl"}
    with pytest.raises(
        InputError, match=r"'models\[0\].family': sdxl, but folder .+ holds a FluxPipeline"
    ):
        resolve_model(entry, 0, str(tmp_path))
    (tmp_path / "model_index.json").write_text(
        json.dumps(pipeline_index("StableDiffusionXLPipeline"))
    )
    assert resolve_model(entry, 0, str(tmp_path)).family == "sdxl"


def test_an_upper_case_suffix_is_refused_before_the_run(tmp_path):
    """diffusers reads only `.safetensors` as safetensors; `.SAFETENSORS` would be
    torch.load-ed in the job and fail there."""
    path = _safetensors(tmp_path / "model.SAFETENSORS")
    with pytest.raises(InputError, match=r"model.SAFETENSORS: .+rename it to model.safetensors"):
        resolve_model({"name": "m", "source": str(path)}, 0, str(tmp_path))


def test_a_component_folder_missing_from_a_model_folder_is_named(tmp_path):
    index = pipeline_index("StableDiffusionXLPipeline", vae=["diffusers", "AutoencoderKL"])
    index["feature_extractor"] = [None, None]  # optional: not there, and not needed
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(InputError, match=r"has no vae/ folder, which its model_index.json names"):
        resolve_model({"name": "m", "source": str(tmp_path)}, 0, str(tmp_path))
    (tmp_path / "vae").mkdir()
    with pytest.raises(InputError, match=r"vae is empty; its model_index.json names it"):
        resolve_model({"name": "m", "source": str(tmp_path)}, 0, str(tmp_path))
    (tmp_path / "vae" / "config.json").write_text("{}")
    assert resolve_model({"name": "m", "source": str(tmp_path)}, 0, str(tmp_path)).family == "sdxl"


@pytest.mark.parametrize(
    ("index", "message"),
    [
        ("[]", r"model_index.json: expected a JSON object"),
        ('"FluxPipeline"', r"model_index.json: expected a JSON object"),
        ('{"_class_name": null}', r"key '_class_name': expected the pipeline's class name"),
        ('{"_class_name": ["diffusers", "FluxPipeline"]}', r"key '_class_name': expected"),
        ('{"_class_name": "FluxPipeline", "vae": null}', r"key 'vae': expected \[library, class\]"),
        ('{"_class_name": "FluxPipeline", "vae": "AutoencoderKL"}', r"key 'vae': expected"),
    ],
)
def test_a_malformed_model_index_is_one_line(tmp_path, index, message):
    (tmp_path / "model_index.json").write_text(index)
    with pytest.raises(InputError, match=message):
        resolve_model({"name": "m", "source": str(tmp_path)}, 0, str(tmp_path))


@pytest.mark.parametrize(
    ("pipeline", "needed"),
    [
        ("ZImagePipeline", {"vae", "transformer", "text_encoder", "tokenizer", "scheduler"}),
        ("StableDiffusionXLPipeline", {"vae", "unet", "scheduler"}),  # encoders: optional
        ("ChromaPipeline", {"vae", "transformer", "text_encoder", "tokenizer", "scheduler"}),
    ],
)
def test_a_component_the_pipeline_needs_and_model_index_does_not_name_is_refused(
    tmp_path, pipeline, needed
):
    """As diffusers' from_pretrained decides (its __init__'s parameters without a default,
    less _optional_components): a folder whose model_index.json leaves one out would fail
    only in the first generation job."""
    from t2ibench.models.families.diffusers import required_components

    assert set(required_components(pipeline)) == needed
    index = pipeline_index(pipeline)
    del index["vae"]
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(
        InputError, match=rf"has no vae: its model_index.json does not name it, and a {pipeline} "
    ):
        resolve_model({"name": "m", "source": str(tmp_path)}, 0, str(tmp_path))
    index["vae"] = [None, None]  # named as absent: the pipeline is made without it
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    resolve_model({"name": "m", "source": str(tmp_path)}, 0, str(tmp_path))


def test_a_models_dir_file_listed_under_models_is_its_entry_and_hidden_files_are_skipped(
    tmp_path,
):
    """A file that needs its own entry (a transformer-only file with `config`, a LoRA, a
    name) is listed under `models:` and keeps that entry; macOS's `._` files are not
    models."""
    folder = tmp_path / "ckpts"
    folder.mkdir()
    special = _safetensors(folder / "special.safetensors")
    _safetensors(folder / "other.safetensors")
    (folder / "._other.safetensors").write_bytes(b"\0\0")  # AppleDouble metadata
    listed = [{"name": "mine", "source": str(special)}]
    specs = resolve_models(config(tmp_path, listed, str(folder)))
    assert [s.name for s in specs] == ["mine", "other"]


def test_a_models_dir_of_pickles_only_says_so(tmp_path):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    (folder / "old.ckpt").write_bytes(b"PK\x03\x04")
    with pytest.raises(InputError, match=r"holds no .safetensors file \(only pickles: old.ckpt"):
        resolve_models(config(tmp_path, [], str(folder)))
