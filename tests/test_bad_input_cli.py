"""Bad input through the real `snakemake` command: one line, non-zero, nothing written."""

from __future__ import annotations

import json

import pytest

from workflow_helpers import make_workdir, snakemake, write_config

pytestmark = pytest.mark.slow  # each case is a real `snakemake` run (about 2 s each)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("bad"), resources=False)


def good_config():
    return {
        "models": [{"name": "tiny", "source": "builtin:tiny-sdxl"}],
        "prompts": {"sources": ["prompts/simple.json"], "num_prompts": 2},
        "generation": {"steps": 2, "width": 64, "height": 64},
    }


def _safetensors_file(path, declared_end=16, actual_bytes=16):
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, declared_end]}})
    header = header.encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * actual_bytes)


def make_case(work, case):
    cfg = good_config()
    if case == "unknown_key":
        cfg["generaton"] = {}
        return cfg, "unknown config key 'generaton'"
    if case == "wrong_type":
        cfg["generation"]["steps"] = "ten"
        return cfg, "'generation.steps': expected an integer"
    if case == "width":
        cfg["generation"]["width"] = 1000 + 4
        return cfg, "'generation.width': expected a multiple of 8"
    if case == "steps":
        cfg["generation"]["steps"] = 0
        return cfg, "'generation.steps': expected a value >= 1"
    if case == "images_per_prompt":
        cfg["generation"]["images_per_prompt"] = 0
        return cfg, "'generation.images_per_prompt': expected a value >= 1"
    if case == "duplicate_models":
        cfg["models"].append({"name": "tiny", "source": "builtin:tiny-sdxl-vpred"})
        return cfg, "duplicate model name 'tiny'"
    if case == "slash_name":
        cfg["models"][0]["name"] = "../evil"
        return cfg, "'models[0].name'"
    if case == "missing_source":
        cfg["models"][0]["source"] = "models/nothere.safetensors"
        return cfg, "models/nothere.safetensors does not exist"
    if case == "truncated":
        _safetensors_file(work / "trunc.safetensors", declared_end=16, actual_bytes=5)
        cfg["models"][0]["source"] = "trunc.safetensors"
        return cfg, "trunc.safetensors"
    if case == "corrupt":
        (work / "corrupt.safetensors").write_bytes(b"\xff" * 64)
        cfg["models"][0]["source"] = "corrupt.safetensors"
        return cfg, "corrupt.safetensors"
    if case in ("ckpt", "pt", "bin"):
        (work / f"model.{case}").write_bytes(b"\x80\x04K\x01.")
        cfg["models"][0]["source"] = f"model.{case}"
        return cfg, f"model.{case}"
    if case == "bad_json":
        (work / "broken.json").write_text('{"a": {"text": "x",}}')
        cfg["prompts"]["sources"] = ["broken.json"]
        return cfg, "broken.json: not valid JSON"
    if case == "duplicate_ids":
        (work / "dup.json").write_text(json.dumps({"simple_001": {"text": "again"}}))
        cfg["prompts"]["sources"].append("dup.json")
        return cfg, "duplicate prompt id 'simple_001'"
    if case == "unpaired_image":
        folder = work / "pairs"
        folder.mkdir(exist_ok=True)
        (folder / "x.txt").write_text("a prompt")
        (folder / "y.png").write_bytes(b"\x89PNG\r\n\x1a\n")
        cfg["prompts"]["sources"] = ["pairs"]
        return cfg, "paired image pairs/y.png: missing its prompt file pairs/y.txt"
    if case == "empty_prompts":
        cfg["prompts"]["categories"] = ["no-such-category"]
        return cfg, "the prompt set is empty"
    if case == "zimage_setting_on_sdxl":
        cfg["generation"]["shift"] = 4.0
        return (
            cfg,
            "'generation.shift': a setting of SD3, FLUX.1 and Z-Image models, but model 'tiny'",
        )
    if case == "hidden_layer_range":
        cfg["models"] = [{"name": "z", "source": "builtin:tiny-zimage"}]
        cfg["generation"]["hidden_layer"] = -20
        return cfg, "'generation.hidden_layer': layer -20 is out of range for model 'z'"
    if case == "sampler":
        cfg["generation"]["sampler"] = "euler_b"
        return cfg, "unknown sampler 'euler_b'; expected one of"
    return soak_case(work, case, cfg)


def soak_case(work, case, cfg):
    """Input that passed validation once and failed only inside jobs (or with a
    traceback): each is now refused before any job, in one line."""
    if case == "huge_image":
        cfg["generation"].update(width=100000, height=100000)
        return cfg, "'generation.width': expected a value <= 16384, got 100000"
    if case == "wide_image":
        cfg["generation"]["width"] = 65536
        return cfg, "'generation.width': expected a value <= 16384, got 65536"
    if case == "max_pixels":
        cfg["generation"].update(width=8192, height=8192)
        return cfg, "'generation.width': 8192x8192 is 67108864 pixels, above max_pixels"
    if case == "seed_range":
        cfg["generation"]["seed"] = 2**64
        return cfg, "'generation.seed': expected a value <= 9223372036854775807"
    if case == "last_seed_range":
        cfg["generation"].update(seed=2**63 - 1, images_per_prompt=2)
        return cfg, "'generation.seed': the last image's seed"
    if case == "nan_guidance":
        cfg["generation"]["guidance_scale"] = float("nan")
        return cfg, "'generation.guidance_scale': expected a finite number, got nan"
    if case == "inf_in_blend":
        cfg["models"] = [{"name": "z", "source": "builtin:tiny-zimage"}]
        cfg["generation"]["hidden_layer_blend"] = {-2: float("inf")}
        return cfg, "'generation.hidden_layer_blend.-2': expected a finite number, got inf"
    if case == "blend_key":
        cfg["models"] = [{"name": "z", "source": "builtin:tiny-zimage"}]
        cfg["generation"]["hidden_layer_blend"] = {"abc": 0.5}
        return cfg, "'generation.hidden_layer_blend': layer 'abc' is not a hidden-state index"
    if case == "clip_skip_range":
        cfg["generation"]["clip_skip"] = 4
        return cfg, (
            "'generation.clip_skip': 4 is out of range for model 'tiny', whose text "
            "encoders have 4 layers (valid: 1 to 3"
        )
    if case in ("results_below_file", "resources_below_file"):
        key = case.split("_")[0] + "_dir"
        (work / "a-file").write_text("")
        cfg[key] = "a-file/out"
        return cfg, f"config key '{key}': a-file/out cannot be a folder"
    if case == "prompts_not_utf8":
        (work / "latin1.json").write_bytes('{"a": {"text": "caf\xe9"}}'.encode("latin-1"))
        cfg["prompts"]["sources"] = ["latin1.json"]
        return cfg, "prompt file latin1.json: expected UTF-8 text"
    if case == "paired_not_an_image":
        folder = work / "pairs-text"
        folder.mkdir(exist_ok=True)
        (folder / "x.txt").write_text("a prompt")
        (folder / "x.png").write_text("not an image")
        cfg["prompts"]["sources"] = ["pairs-text"]
        return cfg, "paired image pairs-text/x.png: not a readable image"
    if case == "reference_not_an_image":
        folder = work / "refs"
        folder.mkdir(exist_ok=True)
        (folder / "r.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut")
        cfg["prompts"]["reference_images"] = "refs"
        return cfg, "reference image refs/r.jpg: not a readable image"
    if case == "metric_device_name":
        cfg["metrics"] = {"device": "gpu"}
        return cfg, "'metrics.device': expected auto, cpu, mps, cuda or cuda:N; got 'gpu'"
    if case == "metric_device_absent":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a CUDA device")
        cfg["metrics"] = {"device": "cuda"}
        return cfg, "config key 'metrics.device': cuda requested, but torch sees 0 CUDA device"
    if case == "duplicate_key_in_configfile":
        return "quick: true\nquick: false\n", "test-config.yaml: line 2: duplicate key 'quick'"
    raise AssertionError(case)


CASES = [
    "unknown_key",
    "wrong_type",
    "width",
    "steps",
    "images_per_prompt",
    "duplicate_models",
    "slash_name",
    "missing_source",
    "truncated",
    "corrupt",
    "ckpt",
    "pt",
    "bin",
    "bad_json",
    "duplicate_ids",
    "unpaired_image",
    "empty_prompts",
    "sampler",
    "zimage_setting_on_sdxl",
    "hidden_layer_range",
    "huge_image",
    "wide_image",
    "max_pixels",
    "seed_range",
    "last_seed_range",
    "nan_guidance",
    "inf_in_blend",
    "blend_key",
    "clip_skip_range",
    "results_below_file",
    "resources_below_file",
    "prompts_not_utf8",
    "paired_not_an_image",
    "reference_not_an_image",
    "metric_device_name",
    "metric_device_absent",
    "duplicate_key_in_configfile",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_clear_line(work, case):
    config, expected = make_case(work, case)
    if isinstance(config, str):
        (work / "test-config.yaml").write_text(config)
    else:
        write_config(work, config)
    proc = snakemake(work, "--configfile", "test-config.yaml", check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("t2ibench: error:")]
    assert len(errors) == 1, proc.stderr
    assert expected in errors[0]
    assert "Traceback" not in proc.stderr
    assert not (work / "results").exists()
    assert not (work / "resources").exists()


def test_own_configfile_replaces_the_demo_config(work):
    """The demo's num_prompts (10) and two tiny models must not leak into a user config."""
    write_config(
        work,
        {
            "models": [{"name": "only", "source": "builtin:tiny-sdxl"}],
            "prompts": {"sources": ["prompts/simple.json"]},
        },
    )
    proc = snakemake(work, "-n", "--configfile", "test-config.yaml")
    assert "plan: 24 images over 1 model(s) and 12 prompt(s)" in proc.stderr
    assert "is extended by" not in proc.stderr + proc.stdout  # it is replaced, not extended
    proc = snakemake(
        work, "-n", "--configfile", "test-config.yaml", "--config", "results_dir=elsewhere"
    )
    assert (
        "24 images over 1 model(s) and 12 prompt(s) in 1 experiment(s) (baseline) in elsewhere/"
        in proc.stderr
    )
    proc = snakemake(work, "-n")  # no --configfile: the demo config
    assert "plan: 390 images over 7 model(s) and 10 prompt(s) in 2 experiment(s)" in proc.stderr


def test_an_error_found_only_in_a_job_is_said_once_without_frames(tmp_path):
    """A checkpoint that lacks weights is found when its job loads it (the check needs the
    architecture built): the console has t2ibench's line and the failed job's log, not
    Snakemake's RuleException with its frames, nor "no backup found" for the outputs the
    job never wrote; Snakemake's full log keeps the frames."""
    from t2ibench.models.registry import builtin_paths

    work = make_workdir(tmp_path)
    checkpoint = builtin_paths(str(work / "resources"), "tiny-sdxl")[0]
    config = good_config()
    config["models"] = [{"name": "full", "source": checkpoint, "family": "sdxl"}]
    config["prompts"]["num_prompts"] = 1
    config["generation"]["images_per_prompt"] = 1
    write_config(work, config)
    proc = snakemake(work, "--configfile", "test-config.yaml", check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("t2ibench: error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert "lacks" in errors[0] and "expected a complete SDXL checkpoint" in errors[0]
    for noise in ("RuleException", "InputError", "Traceback", 'File "', "no backup found"):
        assert noise not in proc.stderr, proc.stderr[-3000:]
    assert "Failed generate_image" in proc.stderr  # which job, and its log, still shown
    [full_log] = (work / ".snakemake" / "log").glob("*.snakemake.log")
    assert "RuleException" in full_log.read_text()
    assert not list((work / "results").rglob("*.png"))
