"""Every model family through the same interface, on its built-in tiny models: loaded from
a single file (where the family has one) and from a diffusers folder, detected without a
`family:` key, repeatable bit for bit, and equal to a plain diffusers call."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from t2ibench.errors import InputError
from t2ibench.experiments import CATALOGUE_DIR
from t2ibench.models import families
from t2ibench.models.registry import builtin_dir, builtin_paths, resolve_model

from conftest import pipeline_index

BUILTINS = sorted(families.builtins())


@pytest.fixture(scope="module")
def resources(tmp_path_factory):
    return str(tmp_path_factory.mktemp("resources"))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def build(builtin_id: str, resources: str):
    """The built-in on disk as the rule writes it, and its ModelSpec."""
    builtin = families.builtins()[builtin_id]
    family = families.get(builtin.family)
    if builtin.layout == "file":
        checkpoint, config_dir = builtin_paths(resources, builtin_id)
        if not Path(checkpoint).exists():
            family.build_builtin(builtin, Path(checkpoint), Path(config_dir))
    else:
        folder = builtin_dir(resources) / builtin_id
        if not folder.exists():
            family.build_builtin(builtin, folder, None)
    spec = resolve_model({"name": builtin_id, "source": f"builtin:{builtin_id}"}, 0, resources)
    return family, spec


def settings_for(family, spec, **changes) -> dict:
    gen = {"steps": 2, "width": 64, "height": 64, "guidance_scale": 4.0, **changes}
    return {
        **family.family_settings(gen),
        **family.common_settings(gen),
        "sampler": family.sampler(gen),
        "prediction_type": spec.prediction_type,
        "prompt": "a red cube on a table",
        "negative_prompt": "blurry",
        "seed": 11,
        "family": family.name,
    }


def image(family, pipe, settings) -> np.ndarray:
    return np.asarray(family.make_image(pipe, dict(pipe.scheduler.config), settings, "cpu"))


def plain_call(pipe, **extra) -> np.ndarray:
    """diffusers' own pipeline call with the settings of `settings_for`."""
    import torch

    return np.asarray(
        pipe(
            prompt="a red cube on a table",
            negative_prompt="blurry",
            num_inference_steps=2,
            guidance_scale=4.0,
            width=64,
            height=64,
            generator=torch.Generator("cpu").manual_seed(11),
            **extra,
        ).images[0]
    )


def test_every_family_has_builtins_a_catalogue_experiment_and_documented_defaults():
    catalogued = set()
    for path in CATALOGUE_DIR.glob("*.yaml"):
        catalogued |= set(yaml.safe_load(path.read_text()).get("families") or [])
    page = (Path(__file__).parents[1] / "docs" / "models.md").read_text(encoding="utf-8")
    for family in families.all_families():
        assert family.builtins, family.name
        assert family.name in catalogued, f"no catalogue experiment for {family.name}"
        rows = [
            [c.strip() for c in line.strip("|").split("|")]
            for line in page.splitlines()
            if line.startswith(f"| `{family.name}` | {family.label} |")
        ]
        assert rows, f"docs/models.md lacks the defaults row of {family.name}"
        steps, guidance = rows[0][2].split()[0], rows[0][3].split()[0]
        if family.own_defaults:
            assert (steps, guidance) == (str(family.steps), str(family.guidance_scale)), rows[0]
        else:  # each model's pipeline's own
            assert rows[0][2] == rows[0][3] == "the pipeline's", rows[0]
        for setting in family.settings:
            assert f"`{setting.key}`" in page, (family.name, setting.key)


@pytest.mark.parametrize("builtin_id", BUILTINS)
def test_builtin_is_detected_loads_from_file_and_folder_and_repeats(
    builtin_id, resources, tmp_path
):
    import torch

    family, spec = build(builtin_id, resources)
    pipe = family.load(spec, torch.float32)
    pipe.set_progress_bar_config(disable=True)
    settings = settings_for(family, spec)
    first = image(family, pipe, settings)
    assert first.std() > 0
    assert (first == image(family, pipe, settings)).all()  # bit for bit again

    # Saved as a diffusers folder: detected from model_index.json, same pixels.
    folder = tmp_path / "folder"
    pipe.save_pretrained(folder)
    entry = {"name": "f", "source": str(folder)}
    folder_spec = resolve_model(entry, 0, resources)
    assert (folder_spec.kind, folder_spec.family) == ("diffusers", family.name)
    assert folder_spec.prediction_type == spec.prediction_type
    again = family.load(folder_spec, torch.float32)
    again.set_progress_bar_config(disable=True)
    assert (image(family, again, settings) == first).all()

    if families.builtins()[builtin_id].layout == "file":
        # The single file on its own is detected as the family's, with its config folder.
        entry = {"name": "s", "source": spec.checkpoint, "config": spec.config_dir}
        file_spec = resolve_model(entry, 0, resources)
        assert (file_spec.kind, file_spec.family) == ("single_file", family.name)


def test_unet_families_equal_a_plain_diffusers_call(resources):
    """The family's call against diffusers' own: same components, scheduler and seed."""
    import torch
    from diffusers import EulerAncestralDiscreteScheduler

    for builtin_id in ["tiny-sdxl", "tiny-sd15", "tiny-sd2-vpred"]:
        family, spec = build(builtin_id, resources)
        pipe = family.load(spec, torch.float32)
        pipe.set_progress_bar_config(disable=True)
        ours = image(family, pipe, settings_for(family, spec))
        pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(
            pipe.scheduler.config, prediction_type=spec.prediction_type
        )
        assert (ours == plain_call(pipe)).all(), builtin_id


def test_sd15_clip_skip_equals_diffusers_own(resources):
    """diffusers' StableDiffusionPipeline reaches the final layer norm through
    `text_model`, which transformers 5.6 dropped: with that name put back, its clip skip
    gives our pixels."""
    import torch

    family, spec = build("tiny-sd15", resources)
    pipe = family.load(spec, torch.float32)
    pipe.set_progress_bar_config(disable=True)
    settings = settings_for(family, spec, clip_skip=2, sampler="euler")
    ours = image(family, pipe, settings)
    assert not (ours == image(family, pipe, {**settings, "clip_skip": None})).all()
    object.__setattr__(pipe.text_encoder, "text_model", pipe.text_encoder)
    from t2ibench.samplers import make_scheduler

    pipe.scheduler = make_scheduler("euler", dict(pipe.scheduler.config), "epsilon", seed=11)
    assert (ours == plain_call(pipe, clip_skip=2)).all()


def test_sd_single_files_pick_their_base_config_and_prediction(resources):
    """Without `config`, an SD 1.x file loads with SD 1.5's shipped configs and an SD 2.x
    file with SD 2.1's (768 px, v-prediction); a tiny file does not fit them, which is said
    in one line naming the file and a missing weight."""
    import torch

    for builtin_id, base, prediction, size in [
        ("tiny-sd15", "sd15-base", "epsilon", 512),
        ("tiny-sd2-vpred", "sd2-base", "v_prediction", 768),
    ]:
        family, spec = build(builtin_id, resources)
        plain = Path(resources) / f"{builtin_id}-plain.safetensors"
        plain.write_bytes(Path(spec.checkpoint).read_bytes())
        file_spec = resolve_model({"name": "plain", "source": str(plain)}, 0, resources)
        assert file_spec.family == "sd15" and file_spec.config_dir.endswith(base)
        assert file_spec.prediction_type == prediction
        assert family.common_settings({}, file_spec.defaults)["width"] == size
        family.build_base_config(base, Path(file_spec.config_dir))
        with pytest.raises(InputError, match=rf"{plain.name}: lacks \d+ weights that the SD"):
            family.load(file_spec, torch.float32)


def test_a_file_no_family_knows_is_one_line(tmp_path, resources):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "odd.safetensors"
    save_file({"encoder.weight": torch.zeros(2)}, path)
    with pytest.raises(InputError, match="odd.safetensors: unsupported architecture"):
        resolve_model({"name": "odd", "source": str(path)}, 0, resources)
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "NoSuchPipeline"}))
    with pytest.raises(InputError, match="unsupported architecture 'NoSuchPipeline'"):
        resolve_model({"name": "odd", "source": str(folder)}, 0, resources)


def catalogue_experiment(family: str) -> str:
    for path in sorted(CATALOGUE_DIR.glob("*.yaml")):
        if family in (yaml.safe_load(path.read_text()).get("families") or []):
            return path.stem
    raise AssertionError(f"no catalogue experiment for {family}")


QUICK_FAMILIES = [f for f in families.names() if f not in ("sdxl", "zimage")]


@pytest.fixture(scope="module")
def quick_sweeps(tmp_path_factory):
    """One workflow run of every other family's catalogue experiment, quick, on all the
    family's built-ins (SDXL's and Z-Image's quick sweeps run in tests/test_sweeps.py),
    and whether a second run then had nothing to do."""
    from workflow_helpers import make_workdir, metrics_only, nothing_to_do, snakemake, write_config

    work = make_workdir(tmp_path_factory.mktemp("quick-families"))
    (work / "prompts" / "t.json").write_text(json.dumps({"a": {"text": "a red cube"}}))
    builtins = [b.id for f in QUICK_FAMILIES for b in families.get(f).builtins]
    write_config(
        work,
        {
            "models": [{"name": m, "source": f"builtin:{m}"} for m in builtins],
            "experiments": [catalogue_experiment(f) for f in QUICK_FAMILIES],
            "quick": True,
            "prompts": {"sources": ["prompts/t.json"]},
            "generation": {"steps": 2, "width": 64, "height": 64, "images_per_prompt": 1},
            "metrics": metrics_only("clip"),
            "report": {"grid_cell_size": 64},
            "torch_threads": 1,
        },
    )
    snakemake(work, "--configfile", "test-config.yaml")
    return work, nothing_to_do(snakemake(work, "--configfile", "test-config.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("family", QUICK_FAMILIES)
def test_quick_sweep_end_to_end(family, quick_sweeps):
    """The workflow on each family's built-ins: its catalogue experiment's quick run makes
    an image of each built-in in each cell, scored, and then there is nothing to do; the
    PNGs carry the family's settings as A1111 readers expect."""
    from PIL import Image

    work, then_nothing_to_do = quick_sweeps
    builtins = [b.id for b in families.get(family).builtins]
    experiment = catalogue_experiment(family)
    exp = work / "results" / experiment
    images = sorted(exp.glob("*/*/p*.png"))
    assert {p.parent.parent.name for p in images} == set(builtins)
    cells = {p.parent.name for p in images}
    assert len(images) == len(builtins) * len(cells) and len(cells) >= 3
    rows = (work / "results" / "quick" / experiment / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + len(images)
    if family == "sd15":
        text = Image.open(exp / "tiny-sd15" / "clip_skip-2" / images[0].name).text["parameters"]
        assert "Clip skip: 3" in text
        vpred = Image.open(exp / "tiny-sd2-vpred" / "clip_skip-none" / images[0].name)
        assert "Prediction type: v_prediction" in vpred.text["parameters"]
    if family == "flux":
        text = Image.open(exp / "tiny-flux-dev" / "guidance-5.0" / images[0].name).text
        assert "Distilled CFG Scale: 5.0" in text["parameters"]
        assert json.loads(text["t2ibench"])["guidance"] == 5.0
    assert then_nothing_to_do


def test_generic_family_reads_diffusers_source_as_diffusers_does(resources):
    """The text-to-image pipelines and their __call__ defaults, read from diffusers'
    source without importing it, equal what importing gives."""
    import inspect

    import diffusers
    from diffusers.pipelines.auto_pipeline import AUTO_TEXT2IMAGE_PIPELINES_MAPPING

    from t2ibench.models.families.diffusers import _call_defaults, text_to_image_pipelines

    assert text_to_image_pipelines() == {
        c.__name__ for c in AUTO_TEXT2IMAGE_PIPELINES_MAPPING.values()
    }
    keys = ("num_inference_steps", "guidance_scale", "width", "height", "max_sequence_length")
    for name in [
        "PixArtSigmaPipeline",
        "ChromaPipeline",
        "SanaPipeline",
        "Lumina2Pipeline",
        "AuraFlowPipeline",
    ]:
        params = inspect.signature(getattr(diffusers, name).__call__).parameters
        wanted = {k: params[k].default for k in keys if k in params}
        assert {k: v for k, v in _call_defaults(name).items() if k in wanted} == wanted, name


def test_generic_family_uses_the_pipelines_own_defaults(resources):
    """Left null, steps and guidance are the pipeline's: our image equals a plain
    AutoPipelineForText2Image call that passes neither."""
    import torch
    from diffusers import AutoPipelineForText2Image

    for builtin_id in ["tiny-pixart-sigma", "tiny-chroma"]:
        family, spec = build(builtin_id, resources)
        pipe = family.load(spec, torch.float32)
        pipe.set_progress_bar_config(disable=True)
        gen = {"width": 64, "height": 64}
        settings = {
            **family.common_settings(gen, spec.defaults),
            "prompt": "a red cube on a table",
            "negative_prompt": "",
            "seed": 11,
        }
        assert settings["steps"] > 2  # the pipeline's default, not ours
        settings["steps"] = 3
        ours = image(family, pipe, settings)
        plain = AutoPipelineForText2Image.from_pretrained(spec.checkpoint, local_files_only=True)
        plain.set_progress_bar_config(disable=True)
        theirs = plain(
            prompt="a red cube on a table",
            num_inference_steps=3,
            width=64,
            height=64,
            generator=torch.Generator("cpu").manual_seed(11),
        ).images[0]
        assert (ours == np.asarray(theirs)).all(), builtin_id


def test_a_diffusers_folder_of_another_task_is_refused(tmp_path, resources):
    folder = tmp_path / "img2img"
    folder.mkdir()
    (folder / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionImg2ImgPipeline"})
    )
    with pytest.raises(InputError, match="'StableDiffusionImg2ImgPipeline' is not a text-to-image"):
        resolve_model({"name": "i", "source": str(folder)}, 0, resources)


def test_flux_equals_a_plain_diffusers_call(resources):
    """dev with its distilled guidance and resolution shift, schnell without: the
    family's call against FluxPipeline's own defaults for the same settings."""
    import torch

    for builtin_id in ["tiny-flux-dev", "tiny-flux-schnell"]:
        family, spec = build(builtin_id, resources)
        pipe = family.load(spec, torch.float32)
        pipe.set_progress_bar_config(disable=True)
        gen = {"steps": 2, "width": 64, "height": 64}
        settings = {
            **family.family_settings(gen, spec.defaults),
            **family.common_settings(gen, spec.defaults),
            "prompt": "a red cube on a table",
            "negative_prompt": "blurry",
            "seed": 11,
        }
        ours = image(family, pipe, settings)
        theirs = pipe(
            prompt="a red cube on a table",
            num_inference_steps=2,
            width=64,
            height=64,
            guidance_scale=3.5,
            max_sequence_length=256 if "schnell" in builtin_id else 512,
            generator=torch.Generator("cpu").manual_seed(11),
        ).images[0]
        assert (ours == np.asarray(theirs)).all(), builtin_id
        shifted = image(family, pipe, {**settings, "shift": 3.0})
        assert not (shifted == ours).all()


def test_a_flux_transformer_file_needs_the_folder_of_its_other_components(tmp_path, resources):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "flux1-dev.safetensors"
    save_file({"model.diffusion_model.double_blocks.0.img_attn.qkv.weight": torch.zeros(1)}, path)
    with pytest.raises(InputError, match="flux1-dev.safetensors: a FLUX.1 transformer checkpoint"):
        resolve_model({"name": "f", "source": str(path)}, 0, resources)
    not_flux = tmp_path / "other"
    not_flux.mkdir()
    (not_flux / "model_index.json").write_text(json.dumps({"_class_name": "ZImagePipeline"}))
    with pytest.raises(InputError, match="is not a FLUX.1 diffusers folder"):
        resolve_model({"name": "f", "source": str(path), "config": str(not_flux)}, 0, resources)


@pytest.mark.slow
def test_flux_single_transformer_file_loads_through_diffusers(tmp_path, resources):
    """BFL's layout at FLUX's real width (diffusers' converter splits the single blocks
    at 3072 x (3, 4)), one double and one single block in bfloat16: written here, read
    back by the family through FluxTransformer2DModel.from_single_file with the other
    components from a folder, weight for weight."""
    import torch
    from safetensors.torch import save_file

    from t2ibench.models.tiny_flux import flux_to_original, transformer

    family, spec = build("tiny-flux-dev", resources)
    folder = tmp_path / "flux-folder"
    import shutil

    shutil.copytree(spec.checkpoint, folder)
    shutil.rmtree(folder / "transformer")
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.no_grad():
            wide = transformer(True, width=3072, heads=24, layers=(1, 1))
    finally:
        torch.set_default_dtype(torch.float32)
    wide.save_config(folder / "transformer")
    path = tmp_path / "flux1-tiny.safetensors"
    weights = flux_to_original(wide, prefix="model.diffusion_model.")  # ComfyUI's keys
    save_file({k: v.contiguous() for k, v in weights.items()}, path)
    del weights
    entry = {"name": "f", "source": str(path), "config": str(folder)}
    file_spec = resolve_model(entry, 0, resources)
    assert (file_spec.family, file_spec.kind, file_spec.defaults) == ("flux", "single_file", ())
    pipe = family.load(file_spec, torch.bfloat16)
    ours, theirs = wide.state_dict(), pipe.transformer.state_dict()
    assert set(ours) == set(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert pipe.text_encoder_2 is not None and pipe.vae.config.latent_channels == 16


def test_sd3_equals_a_plain_diffusers_call_and_loads_a_single_transformer_file(tmp_path, resources):
    """The family's call against StableDiffusion3Pipeline's own; T5 left out changes the
    image; the transformer written in MMDiT's keys loads back through
    SD3Transformer2DModel.from_single_file with the other components from the folder."""
    import shutil

    import torch
    from safetensors.torch import save_file

    from t2ibench.models.tiny_sd3 import sd3_to_original

    family, spec = build("tiny-sd3", resources)
    pipe = family.load(spec, torch.float32)
    pipe.set_progress_bar_config(disable=True)
    settings = settings_for(family, spec)
    ours = image(family, pipe, settings)
    assert (ours == plain_call(pipe, max_sequence_length=256)).all()
    assert not (image(family, pipe, {**settings, "t5": False}) == ours).all()
    assert pipe.text_encoder_3 is not None  # put back after the call

    folder = tmp_path / "sd3-folder"
    shutil.copytree(spec.checkpoint, folder)
    shutil.rmtree(folder / "transformer")
    pipe.transformer.save_config(folder / "transformer")
    path = tmp_path / "sd3.5_tiny.safetensors"
    weights = sd3_to_original(pipe.transformer)
    save_file({k: v.contiguous() for k, v in weights.items()}, path)
    with pytest.raises(InputError, match="an SD3 transformer checkpoint; its text encoders"):
        resolve_model({"name": "s", "source": str(path)}, 0, resources)
    file_spec = resolve_model(
        {"name": "s", "source": str(path), "config": str(folder)}, 0, resources
    )
    assert (file_spec.family, file_spec.kind) == ("sd3", "single_file")
    again = family.load(file_spec, torch.float32)
    again.set_progress_bar_config(disable=True)
    assert (image(family, again, settings) == ours).all()


def test_sd3_without_t5_in_any_cell_loads_without_t5(resources, base_config):
    """Where every cell of a model sets t5: false the plan leaves T5 out of its loading
    (memory), and the images are those made with T5 loaded and set aside per call."""
    import dataclasses

    import torch

    from t2ibench.config import validate_config
    from t2ibench.plan import build_plan

    family, spec = build("tiny-sd3", resources)
    config = dict(base_config, resources_dir=resources)
    config["models"] = [{"name": "s", "source": "builtin:tiny-sd3"}]
    with_t5 = build_plan(validate_config(config))
    assert with_t5.models["s"].unused == ()
    config["generation"] = {**config["generation"], "t5": False}
    without = build_plan(validate_config(config))
    assert without.models["s"].unused == ("text_encoder_3", "tokenizer_3")
    settings = settings_for(family, spec, t5=False)
    lean = family.load(dataclasses.replace(spec, unused=without.models["s"].unused), torch.float32)
    assert lean.text_encoder_3 is None and lean.tokenizer_3 is None
    full = family.load(spec, torch.float32)
    for pipe in (lean, full):
        pipe.set_progress_bar_config(disable=True)
    assert (image(family, lean, settings) == image(family, full, settings)).all()
    assert family.token_limit(lean, settings) == family.token_limit(full, settings)


def test_a_pipeline_without_a_negative_prompt_records_none(tmp_path, base_config):
    """FLUX.2's pipeline takes no negative prompt: the plan records "" for its images
    (what is applied), and the pipeline's own defaults."""
    from t2ibench.config import validate_config
    from t2ibench.plan import build_plan

    folder = tmp_path / "flux2"
    folder.mkdir()
    index = pipeline_index(
        "Flux2Pipeline", scheduler=["diffusers", "FlowMatchEulerDiscreteScheduler"]
    )
    (folder / "model_index.json").write_text(json.dumps(index))
    (folder / "scheduler").mkdir()
    (folder / "scheduler" / "scheduler_config.json").write_text("{}")
    config = validate_config(
        {
            **base_config,
            "models": [{"name": "f2", "source": str(folder)}],
            "generation": {"negative_prompt": "blurry"},
        }
    )
    plan = build_plan(config)
    settings = plan.settings(plan.jobs[0])
    assert settings["family"] == "diffusers" and settings["negative_prompt"] == ""
    assert settings["prediction_type"] == "flow_matching"
    from t2ibench.models.families.diffusers import _call_defaults

    defaults = _call_defaults("Flux2Pipeline")
    assert settings["steps"] == defaults["num_inference_steps"]
    assert settings["guidance_scale"] == defaults["guidance_scale"]


def test_a_family_given_against_the_files_own_keys_is_one_line(resources):
    """`family: sd15` on an SDXL single file is refused when the config is read (not in
    the job, with a message about the SD 1.x config folder); a built-in's family cannot
    be changed either. The file's own family, given, passes."""
    build("tiny-sdxl", resources)
    checkpoint = builtin_paths(resources, "tiny-sdxl")[0]
    for forced in ("sd15", "sd3", "flux"):
        entry = {"name": "m", "source": checkpoint, "family": forced}
        with pytest.raises(
            InputError, match=rf"'models\[0\].family': {forced}, but .+ has the keys of SDXL"
        ):
            resolve_model(entry, 0, resources)
    assert resolve_model({"name": "m", "source": checkpoint, "family": "sdxl"}, 0, resources)
    entry = {"name": "m", "source": "builtin:tiny-sdxl", "family": "zimage"}
    with pytest.raises(InputError, match=r"'models\[0\].family': zimage, but built-in model"):
        resolve_model(entry, 0, resources)
