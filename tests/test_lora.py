"""LoRAs on the built-in tiny models, in kohya and diffusers / PEFT formats: switched on a
model loaded once, strength 0 is the base image bit for bit, cell order changes nothing,
and the images equal diffusers' own load_lora_weights + set_adapters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from t2ibench import lora
from t2ibench.errors import InputError
from t2ibench.models import families
from t2ibench.models.registry import builtin_dir, builtin_paths, resolve_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")
MODELS = ["tiny-sdxl", "tiny-sd15", "tiny-flux-dev", "tiny-sd3", "tiny-zimage", "tiny-chroma"]
# Z-Image's prompts are encoded by t2ibench, not by its pipeline: no plain-call twin.
PLAIN = [m for m in MODELS if m != "tiny-zimage"]
# diffusers reads their LoRAs in diffusers / PEFT keys only (our writer: Chroma's too)
PEFT_ONLY = ("sd3", "zimage", "chroma")


@pytest.fixture(scope="module")
def resources(tmp_path_factory):
    return str(tmp_path_factory.mktemp("resources"))


def built(builtin_id: str, resources: str):
    builtin = families.builtins()[builtin_id]
    family = families.get(builtin.family)
    checkpoint, config_dir = builtin_paths(resources, builtin_id)
    if builtin.layout == "folder":
        folder = builtin_dir(resources) / builtin_id
        if not folder.exists():
            family.build_builtin(builtin, folder, None)
    elif not Path(checkpoint).exists():
        family.build_builtin(builtin, Path(checkpoint), Path(config_dir))
    spec = resolve_model({"name": builtin_id, "source": f"builtin:{builtin_id}"}, 0, resources)
    return family, spec


def loaded(builtin_id: str, resources: str):
    import torch

    family, spec = built(builtin_id, resources)
    pipe = family.load(spec, torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return family, spec, pipe


def lora_files(builtin_id: str, resources: str, folder: Path) -> dict[str, str]:
    """Two LoRAs (seeds 1 and 2) in both formats for the model."""
    from t2ibench.models.tiny_flux import write_flux_lora
    from t2ibench.models.tiny_lora import write_tiny_lora

    _, _, pipe = loaded(builtin_id, resources)
    write = write_flux_lora if "flux" in builtin_id else write_tiny_lora
    files = {}
    for seed in (1, 2):
        for fmt in ("peft", "kohya"):
            path = folder / f"{builtin_id}-{fmt}-{seed}.safetensors"
            if fmt == "kohya" and any(f in builtin_id for f in PEFT_ONLY):
                files[f"{fmt}-{seed}"] = files[f"peft-{seed}"]
                continue
            # Z-Image's LoRAs adapt its transformer only (diffusers' loader reads no more);
            # Chroma's text encoder is a T5 (the writer adapts CLIP's).
            extra = {"text_encoder": False} if builtin_id in ("tiny-zimage", "tiny-chroma") else {}
            write(pipe, path, fmt, seed=seed, **extra)
            files[f"{fmt}-{seed}"] = str(path)
    return files


def entry(file: str, weight: float) -> dict:
    return lora.resolve(file, weight, "test", None)


def settings(family, spec, loras=()) -> dict:
    cfg = 1.0 if family.name == "flux" else 4.0  # FLUX: distilled guidance, no CFG
    gen = {"steps": 2, "width": 64, "height": 64, "guidance_scale": cfg, "sampler": "euler"}
    return {
        **family.family_settings(gen),
        **family.common_settings(gen),
        "sampler": "euler",
        "prediction_type": spec.prediction_type,
        "prompt": "a red cube on a table",
        "negative_prompt": "",
        "seed": 5,
        "family": family.name,
        "loras": list(loras),
    }


def make(family, pipe, adapters, s) -> np.ndarray:
    lora.apply(pipe, s["loras"], adapters)
    return np.asarray(family.make_image(pipe, dict(pipe.scheduler.config), s, "cpu"))


@pytest.mark.parametrize("builtin_id", MODELS)
def test_switching_strength_zero_order_and_both_formats(builtin_id, resources, tmp_path):
    family, spec, pipe = loaded(builtin_id, resources)
    files = lora_files(builtin_id, resources, tmp_path)
    adapters: dict = {}
    base = make(family, pipe, adapters, settings(family, spec))
    a = make(family, pipe, adapters, settings(family, spec, [entry(files["kohya-1"], 0.8)]))
    b = make(family, pipe, adapters, settings(family, spec, [entry(files["peft-2"], 0.8)]))
    zero = make(family, pipe, adapters, settings(family, spec, [entry(files["kohya-1"], 0.0)]))
    again = make(family, pipe, adapters, settings(family, spec, [entry(files["kohya-1"], 0.8)]))
    stacked = settings(family, spec, [entry(files["kohya-1"], 0.8), entry(files["peft-2"], 0.5)])
    both = make(family, pipe, adapters, stacked)
    after = make(family, pipe, adapters, settings(family, spec))
    assert (a != base).mean() > 0.5 and (b != a).mean() > 0.5 and (both != a).mean() > 0.5
    assert (zero == base).all() and (after == base).all()  # strength 0, none: the base
    assert (again == a).all()  # A, then B, then A again: A's image
    assert len(adapters) == 2  # each file loaded once
    # The same weights in kohya's and in PEFT's keys make the same image.
    assert (
        make(family, pipe, adapters, settings(family, spec, [entry(files["peft-1"], 0.8)])) == a
    ).all()


@pytest.mark.parametrize("builtin_id", ["tiny-sdxl", "tiny-flux-dev"])
def test_adapters_past_the_limit_are_unloaded_and_reloaded_to_the_same_image(
    builtin_id, resources, tmp_path
):
    """memory.max_loras = 1: A, B, A loads three times and keeps one adapter; A's image
    after reloading is A's first image bit for bit; a stack of two keeps both."""
    family, spec, pipe = loaded(builtin_id, resources)
    files = lora_files(builtin_id, resources, tmp_path)
    adapters: dict = {}

    def run(*stack):
        lora.apply(pipe, [entry(f, w) for f, w in stack], adapters, keep=1)
        s = settings(family, spec, [entry(f, w) for f, w in stack])
        return np.asarray(family.make_image(pipe, dict(pipe.scheduler.config), s, "cpu"))

    first = run((files["kohya-1"], 0.8))
    other = run((files["peft-2"], 0.8))
    assert len(adapters) == 1 and len(pipe.get_list_adapters().get(family.denoiser, [])) == 1
    again = run((files["kohya-1"], 0.8))
    assert (again == first).all() and (other != first).mean() > 0.5
    both = run((files["kohya-1"], 0.8), (files["peft-2"], 0.5))
    assert len(adapters) == 2 and (both != first).mean() > 0.5
    assert (run((files["kohya-1"], 0.8)) == first).all() and len(adapters) == 1


@pytest.mark.parametrize("builtin_id", PLAIN)
def test_images_equal_diffusers_own_lora_loading(builtin_id, resources, tmp_path):
    """A fresh pipeline, diffusers' load_lora_weights + set_adapters and a plain call."""
    import torch
    from diffusers import EulerDiscreteScheduler

    family, spec, pipe = loaded(builtin_id, resources)
    files = lora_files(builtin_id, resources, tmp_path)
    stack = [entry(files["kohya-1"], 0.7), entry(files["peft-2"], 0.4)]
    ours = make(family, pipe, {}, settings(family, spec, stack))

    _, _, plain = loaded(builtin_id, resources)
    plain.load_lora_weights(files["kohya-1"], adapter_name="one")
    plain.load_lora_weights(files["peft-2"], adapter_name="two")
    plain.set_adapters(["one", "two"], [0.7, 0.4])
    if family.name == "flux":  # its own scheduler and distilled guidance
        extra = {"guidance_scale": 3.5}
    elif family.name in ("sd3", "diffusers"):  # its own scheduler
        extra = {"guidance_scale": 4.0}
    else:
        plain.scheduler = EulerDiscreteScheduler.from_config(plain.scheduler.config)
        extra = {"guidance_scale": 4.0}
    theirs = plain(
        prompt="a red cube on a table",
        num_inference_steps=2,
        width=64,
        height=64,
        generator=torch.Generator("cpu").manual_seed(5),
        **extra,
    ).images[0]
    assert (ours == np.asarray(theirs)).all()


def test_a_lora_of_another_base_is_refused(resources, tmp_path):
    """An SDXL LoRA on an SD 1.x model: its layers do not land; one line, no adapter left."""
    family, spec, pipe = loaded("tiny-sd15", resources)
    sdxl_lora = lora_files("tiny-sdxl", resources, tmp_path)["kohya-1"]
    adapters: dict = {}
    with pytest.raises(
        InputError,
        match=r"LoRA file .*tiny-sdxl-kohya-1.safetensors: .*(another model family or base)",
    ):
        make(family, pipe, adapters, settings(family, spec, [entry(sdxl_lora, 1.0)]))
    assert adapters == {}


def _folder(builtin_id: str, resources: str) -> Path:
    from t2ibench import lora_fit

    _, spec = built(builtin_id, resources)
    return lora_fit.config_folder(spec)


def test_whether_a_lora_fits_is_known_without_loading_weights(resources, tmp_path):
    """diffusers' loader on the model's components built on the meta device tells a LoRA
    of another base of the same family (SD 1.x on SD 2.x: the right blocks, other sizes),
    of another family, or matching only part, from one that fits, in both formats."""
    from safetensors.torch import load_file, save_file

    from t2ibench.lora_fit import misfit

    sd15 = lora_files("tiny-sd15", resources, tmp_path)
    sdxl = lora_files("tiny-sdxl", resources, tmp_path)
    flux = lora_files("tiny-flux-dev", resources, tmp_path)
    chroma = lora_files("tiny-chroma", resources, tmp_path)
    assert misfit(_folder("tiny-chroma", resources), chroma["peft-1"]) is None  # generic
    for fmt in ("kohya-1", "peft-1"):
        assert misfit(_folder("tiny-sd15", resources), sd15[fmt]) is None
        assert misfit(_folder("tiny-sdxl", resources), sdxl[fmt]) is None
        # FLUX.1 dev's LoRA on schnell: the same transformer; it fits.
        assert misfit(_folder("tiny-flux-schnell", resources), flux[fmt]) is None
        reason = misfit(_folder("tiny-sd2-vpred", resources), sd15[fmt])
        assert reason and "shape" in reason and "attn2.to_k" in reason, reason
        assert misfit(_folder("tiny-sd15", resources), sdxl[fmt])
    # Part of its layers in blocks the model lacks (a deeper model's LoRA).
    tensors = load_file(sd15["peft-1"])
    extra = {
        k.replace("down_blocks.0.", "down_blocks.7."): v.clone()
        for k, v in tensors.items()
        if k.startswith("unet.down_blocks.0.")
    }
    partial = tmp_path / "partial.safetensors"
    save_file({**tensors, **extra}, partial)
    reason = misfit(_folder("tiny-sd15", resources), str(partial))
    assert reason and reason.startswith("only ") and "layers match the model" in reason


def test_config_folder_of_a_single_file_before_its_base_config_is_made(tmp_path, resources):
    """A user's single file whose base config a rule of the run makes: the shipped one."""
    from t2ibench import lora_fit

    _, spec = built("tiny-sd15", resources)
    file = tmp_path / "mine.safetensors"
    file.symlink_to(spec.checkpoint)
    mine = resolve_model({"name": "mine", "source": str(file)}, 0, str(tmp_path / "empty"))
    assert mine.shared_config and not Path(mine.config_dir).exists()
    assert lora_fit.config_folder(mine) == lora_fit.REPO_CONFIGS / Path(mine.config_dir).name


def test_the_plan_check_remembers_loras_that_fit(base_config, resources, tmp_path):
    """check_plan loads each (model config, LoRA) pair once; pairs that fit are kept in
    the resources cache and not loaded again; a model's own LoRA that does not fit is
    named by its config key."""
    from t2ibench import lora_fit
    from t2ibench.config import validate_config
    from t2ibench.plan import build_plan

    sd15 = lora_files("tiny-sd15", resources, tmp_path)

    def plan_of(model: str):
        config = dict(base_config, resources_dir=resources)
        config["models"] = [
            {"name": model, "source": f"builtin:{model}", "loras": [{"file": sd15["peft-1"]}]}
        ]
        return build_plan(validate_config(config))

    cache = Path(resources) / "cache" / "lora-fit.json"
    cache.unlink(missing_ok=True)
    assert lora_fit.check_plan(plan_of("tiny-sd15")) == 1
    assert len(json.loads(cache.read_text())["fit"]) == 1
    assert lora_fit.check_plan(plan_of("tiny-sd15")) == 0  # remembered
    with pytest.raises(InputError, match=r"^config key 'models' \(model 'tiny-sd2-vpred'\): "):
        lora_fit.check_plan(plan_of("tiny-sd2-vpred"))
    assert len(json.loads(cache.read_text())["fit"]) == 1


def test_a_lora_of_another_base_stops_the_run_before_the_first_job(tmp_path, resources):
    """An SD 1.x LoRA swept on an SD 2.x model (same family, other sizes) beside a model
    it fits: one line naming the file, the model and the cell; no image is made."""
    from workflow_helpers import make_workdir, metrics_only, output, snakemake, write_config

    work = make_workdir(tmp_path)
    sd15 = lora_files("tiny-sd15", resources, work / "loras")
    (work / "lora_sweep.yaml").write_text(
        f"name: lora_sweep\ndescription: x\nvariables:\n  lora: [{sd15['kohya-1']}]\n"
    )
    (work / "prompts" / "t.json").write_text(json.dumps({"a": {"text": "a red cube"}}))
    write_config(
        work,
        {
            "models": [
                {"name": "tiny-sd15", "source": "builtin:tiny-sd15"},
                {"name": "tiny-sd2-vpred", "source": "builtin:tiny-sd2-vpred"},
            ],
            "experiments": ["baseline", "lora_sweep.yaml"],
            "prompts": {"sources": ["prompts/t.json"]},
            "generation": {"steps": 2, "width": 64, "height": 64, "images_per_prompt": 1},
            "metrics": metrics_only("clip"),
        },
    )
    proc = snakemake(work, "--configfile", "test-config.yaml", check=False)
    text = output(proc)
    assert proc.returncode != 0
    errors = [line for line in text.splitlines() if "error" in line.lower()]
    assert errors == [
        "t2ibench: error: experiment 'lora_sweep', cell 'lora-tiny-sd15-kohya-1': key 'lora': "
        f"LoRA file {sd15['kohya-1']} does not fit model 'tiny-sd2-vpred' (layer "
        "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k has LoRA weights of shape "
        "[4, 32], the model's take [4, 48]); a LoRA of another base or model family?"
    ], text[-3000:]
    assert "Traceback" not in text and "size mismatch" not in text
    assert not (work / "results").exists() or not list((work / "results").rglob("*.png"))


def test_a_lora_on_a_pipeline_without_a_lora_loader_is_refused_by_the_plan(base_config):
    """A generic diffusers pipeline takes LoRAs where diffusers has a loader for it
    (Chroma: yes; PixArt-Sigma: no), said when the plan is made."""
    from t2ibench.config import validate_config
    from t2ibench.plan import build_plan

    config = dict(base_config, models=[{"name": "px", "source": "builtin:tiny-pixart-sigma"}])
    config["generation"] = {**config["generation"], "lora": "missing.safetensors"}
    with pytest.raises(
        InputError,
        match=r"^config key 'generation.lora': model 'px' \(diffusers pipeline\) takes no LoRAs",
    ):
        build_plan(validate_config(config))
    chroma = resolve_model({"name": "c", "source": "builtin:tiny-chroma"}, 0, "resources")
    assert chroma.lora and chroma.family == "diffusers"


def test_a_lora_weight_without_a_lora_is_refused(base_config, tmp_path):
    """A strength of nothing: cells that sweep it alone would make the same images."""
    from t2ibench.config import validate_config
    from t2ibench.plan import build_plan

    config = dict(base_config)
    config["generation"] = {**config["generation"], "lora_weight": 0.5}
    with pytest.raises(
        InputError, match=r"^config key 'generation.lora_weight': 0.5 without a lora"
    ):
        build_plan(validate_config(config))
    sweep = tmp_path / "lw.yaml"
    sweep.write_text("name: lw\ndescription: d\nvariables:\n  lora_weight: [0.0, 1.0]\n")
    config = dict(base_config, experiments=[str(sweep)])
    with pytest.raises(
        InputError,
        match=r"^experiment 'lw', cell 'lora_weight-0.0': key 'lora_weight': 0.0 without",
    ):
        build_plan(validate_config(config))


def test_lora_files_and_folders_are_checked(tmp_path):
    import torch
    from safetensors.torch import save_file

    pickle = tmp_path / "old.pt"
    torch.save({"lora_unet_x.lora_down.weight": torch.zeros(1)}, pickle)
    with pytest.raises(InputError, match="old.pt.*pickle"):
        lora.check_file(str(pickle), "where")
    plain = tmp_path / "model.safetensors"
    save_file({"encoder.weight": torch.zeros(2)}, plain)
    with pytest.raises(InputError, match="model.safetensors holds no LoRA weights"):
        lora.check_file(str(plain), "where")
    with pytest.raises(InputError, match="not a number"):
        lora.resolve(str(plain), "strong", "where", None)
    empty = tmp_path / "epochs"
    empty.mkdir()
    with pytest.raises(InputError, match=r"where: .+epochs is a folder; expected a LoRA"):
        lora.check_file(str(empty), "where")
    (empty / "e1.ckpt").write_bytes(b"x")
    with pytest.raises(InputError, match="has no .safetensors files"):
        lora.folder_files(str(empty), "where")
    for name in ["e10", "e2", "e1"]:
        save_file({"lora_unet_a.lora_down.weight": torch.zeros(1)}, empty / f"{name}.safetensors")
    assert [p.stem for p in lora.folder_files(str(empty), "where")] == ["e1", "e2", "e10"]
    (empty / "._e1.safetensors").write_bytes(b"\0" * 4096)  # macOS AppleDouble: not a LoRA
    assert [p.stem for p in lora.folder_files(str(empty), "where")] == ["e1", "e2", "e10"]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tiny-sdxl", "tiny-flux-dev"])
def test_lora_epochs_by_strengths_sweep_end_to_end(model, tmp_path, resources):
    """A folder of three LoRA epochs x three strengths on one model: the base loads once,
    each LoRA once; strength 0 is the baseline's image; provenance in PNG and tables."""
    from PIL import Image

    from t2ibench.models.tiny_flux import write_flux_lora
    from t2ibench.models.tiny_lora import write_tiny_lora

    from workflow_helpers import make_workdir, metrics_only, output, snakemake, write_config

    work = make_workdir(tmp_path)
    _, _, pipe = loaded(model, resources)
    write = write_flux_lora if "flux" in model else write_tiny_lora
    epochs = work / "loras"
    for i, fmt in [(1, "kohya"), (2, "peft"), (10, "kohya")]:
        write(pipe, epochs / f"epoch-{i}.safetensors", fmt, seed=i)
    (work / "lora_sweep.yaml").write_text(
        "name: lora_sweep\ndescription: epochs x strengths\n"
        "variables:\n  lora: loras\n  lora_weight: [0.0, 0.5, 1.0]\n"
    )
    (work / "prompts" / "t.json").write_text(json.dumps({"a": {"text": "a red cube"}}))
    write_config(
        work,
        {
            "models": [{"name": model, "source": f"builtin:{model}"}],
            "experiments": ["baseline", "lora_sweep.yaml"],
            "prompts": {"sources": ["prompts/t.json"]},
            "generation": {"steps": 2, "width": 64, "height": 64, "images_per_prompt": 1},
            "metrics": metrics_only("clip"),
            "report": {"grid_cell_size": 64},
            "torch_threads": 1,
        },
    )
    proc = snakemake(work, "--configfile", "test-config.yaml")
    text = output(proc)
    assert text.count(f"Loading model {model}") == 1
    assert "LoRA adapters loaded in this process: 3" in text
    exp = work / "results" / "lora_sweep" / model
    cells = sorted(p.name for p in exp.iterdir() if p.is_dir())
    assert cells == sorted(
        f"lora-epoch-{e}__lora_weight-{w}" for e in (1, 2, 10) for w in ("0.0", "0.5", "1.0")
    )
    name = "p000_i00_s218.png"
    base = (work / "results" / "baseline" / model / "default" / name).read_bytes()
    base_pixels = np.asarray(Image.open(work / "results" / "baseline" / model / "default" / name))
    for e in (1, 2, 10):
        zero = np.asarray(Image.open(exp / f"lora-epoch-{e}__lora_weight-0.0" / name))
        assert (zero == base_pixels).all()
        full = np.asarray(Image.open(exp / f"lora-epoch-{e}__lora_weight-1.0" / name))
        assert (full != base_pixels).mean() > 0.5
    assert base  # the baseline image exists
    png = Image.open(exp / "lora-epoch-2__lora_weight-0.5" / name)
    meta = json.loads(png.text["t2ibench"])
    [used] = meta["loras"]
    assert used["name"] == "epoch-2" and used["weight"] == 0.5
    assert (
        used["sha256"] == lora.resolve(str(epochs / "epoch-2.safetensors"), 1, "", None)["sha256"]
    )
    params = png.text["parameters"]
    assert params.splitlines()[0] == "a red cube <lora:epoch-2:0.5>"
    short = lora.addnet_hash(str(epochs / "epoch-2.safetensors"))[:12]
    assert f'Lora hashes: "epoch-2: {short}"' in params
    # The workflow's PNG equals a plain diffusers call with diffusers' own LoRA loading.
    import torch
    from diffusers import EulerAncestralDiscreteScheduler

    _, _, plain = loaded(model, resources)
    plain.load_lora_weights(str(epochs / "epoch-2.safetensors"), adapter_name="e2")
    plain.set_adapters(["e2"], [0.5])
    if "flux" in model:
        extra = {"guidance_scale": 3.5, "max_sequence_length": 512}
    else:
        plain.scheduler = EulerAncestralDiscreteScheduler.from_config(plain.scheduler.config)
        extra = {"guidance_scale": 5.0}
    direct = plain(
        prompt="a red cube",
        num_inference_steps=2,
        width=64,
        height=64,
        generator=torch.Generator("cpu").manual_seed(218),
        **extra,
    ).images[0]
    assert (np.asarray(png.convert("RGB")) == np.asarray(direct)).all()

    import pandas as pd

    rows = pd.read_csv(work / "results" / "lora_sweep" / "results.csv")
    assert {"lora", "lora_weight"} <= set(rows.columns) and len(rows) == 9
    assert sorted(set(rows["lora"])) == ["epoch-1", "epoch-10", "epoch-2"]
    meta = json.loads((work / "results" / "lora_sweep" / "metadata.json").read_text())
    cell = meta["cells"]["lora-epoch-10__lora_weight-0.5"]["lora"]
    assert (cell["name"], cell["weight"]) == ("epoch-10", 0.5) and len(cell["sha256"]) == 64


def test_a_lora_of_another_family_is_refused_before_the_run(tmp_path, resources, base_config):
    """A FLUX LoRA on an SDXL model and an SDXL LoRA on a FLUX model: their keys name
    none of the model's blocks, which the plan says in one line, naming the model."""
    flux_lora = lora_files("tiny-flux-dev", resources, tmp_path)["kohya-1"]
    sdxl_lora = lora_files("tiny-sdxl", resources, tmp_path)["peft-1"]
    for model, file, label in [
        ("tiny-sdxl", flux_lora, "SDXL"),
        ("tiny-flux-dev", sdxl_lora, "FLUX.1"),
    ]:
        family = families.get(families.builtins()[model].family)
        with pytest.raises(InputError, match=f"is not a LoRA of {label} models"):
            lora.resolve(file, 1.0, "config key 'generation.lora'", None, family)
        assert lora.resolve(file, 1.0, "x", None)["weight"] == 1.0  # fine on its own
    from t2ibench.config import validate_config
    from t2ibench.plan import build_plan

    config = dict(base_config, resources_dir=resources)
    config["generation"] = {**base_config["generation"], "lora": str(flux_lora)}
    with pytest.raises(InputError, match=r"key 'lora' \(model 'tiny'\): .+ not a LoRA of"):
        build_plan(validate_config(config))
