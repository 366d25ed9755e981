"""Config validation: defaults from the schema, one-line errors for bad input."""

from __future__ import annotations

import pytest
import yaml

from t2ibench.config import load_yaml, validate_config
from t2ibench.errors import InputError
from t2ibench.plan import build_plan

from conftest import with_changes


def test_defaults_are_filled_from_the_schema(base_config):
    config = validate_config(base_config)
    assert config["generation"]["sampler"] is None  # the family's default (SDXL: euler_a)
    assert build_plan(config).settings(build_plan(config).jobs[0])["sampler"] == "euler_a"
    assert config["generation"]["seed"] == 218
    assert config["generation"]["steps"] == 2  # given values are kept
    assert config["metrics"]["clip"]["enabled"] is True
    assert config["metrics"]["lpips"]["net"] == "alex"
    assert config["prompts"]["ids"] == []
    assert config["device"] == "auto"


def test_empty_config_gets_a_complete_default():
    config = validate_config({})
    assert config["models"][0]["source"] == "builtin:tiny-sdxl"
    assert config["prompts"]["sources"]


def test_default_config_file_is_valid(repo):
    config = validate_config(load_yaml(repo / "config" / "config.yaml"))
    assert {m["source"] for m in config["models"]} == {
        "builtin:tiny-sdxl",
        "builtin:tiny-sdxl-vpred",
        "builtin:tiny-zimage",
        "builtin:tiny-sd15",
        "builtin:tiny-flux-dev",
        "builtin:tiny-chroma",
        "builtin:tiny-sd3",
    }


def test_real_model_example_matches_the_schema(repo):
    """The example's paths exist only on a user's machine; its keys and types must be right."""
    import jsonschema

    from t2ibench.config import load_schema

    example = load_yaml(repo / "config" / "example-real.yaml")
    jsonschema.Draft202012Validator(load_schema()).validate(example)


def test_schema_agrees_with_snakemake_validate(base_config, tmp_path):
    from snakemake.utils import validate

    from t2ibench.config import load_schema

    config = validate_config(base_config)
    before = yaml.safe_dump(config)
    schema = tmp_path / "schema.yaml"  # the file plus the metrics' sections
    schema.write_text(yaml.safe_dump(load_schema()))
    validate(config, schema=str(schema))
    assert yaml.safe_dump(config) == before


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"colour": "red"}, "unknown config key 'colour'"),
        ({"generation__stepz": 3}, "unknown config key 'stepz' under 'generation'"),
        (
            {"generation__steps": "many"},
            "'generation.steps': expected an integer or null, got 'many'",
        ),
        ({"generation__steps": 0}, "'generation.steps': expected a value >= 1, got 0"),
        (
            {"generation__images_per_prompt": -1},
            "'generation.images_per_prompt': expected a value >= 1",
        ),
        ({"generation__width": 100}, "'generation.width': expected a multiple of 8, got 100"),
        ({"generation__height": 63}, "'generation.height': expected a multiple of 8, got 63"),
        ({"generation__guidance_scale": "high"}, "'generation.guidance_scale': expected a number"),
        ({"generation__sampler": "euler_z"}, "unknown sampler 'euler_z'; expected one of: euler,"),
        ({"dtype": "fp8"}, "'dtype': expected one of fp32, fp16, bf16"),
        (
            {"models": [{"name": "a/b", "source": "builtin:tiny-sdxl"}]},
            "'models[0].name': 'a/b' is not allowed",
        ),
        (
            {"models": [{"name": "a..b", "source": "builtin:tiny-sdxl"}]},
            "'models[0].name': 'a..b' is not allowed",
        ),
        ({"models": [{"name": "..", "source": "builtin:tiny-sdxl"}]}, "'models[0].name'"),
        ({"models": [{"source": "builtin:tiny-sdxl"}]}, "'models[0]': missing required key 'name'"),
        (
            {"models": [{"name": "x", "source": "builtin:tiny-sdxl", "colour": 1}]},
            "unknown config key 'colour' under 'models[0]'",
        ),
    ],
)
def test_bad_config_gives_one_line_naming_the_key(base_config, changes, expected):
    with pytest.raises(InputError) as err:
        validate_config(with_changes(base_config, **changes))
    message = str(err.value)
    assert expected in message
    assert "\n" not in message


def test_duplicate_model_names(base_config):
    config = with_changes(
        base_config,
        models=[
            {"name": "m", "source": "builtin:tiny-sdxl"},
            {"name": "m", "source": "builtin:tiny-sdxl-vpred"},
        ],
    )
    with pytest.raises(InputError, match=r"models\[1\].name': duplicate model name 'm'"):
        validate_config(config)


def test_no_model_takes_the_name_of_what_the_rules_write_in_an_experiment_folder(base_config):
    """Every file and folder the rules write directly in an experiment's folder (read off
    rules/*.smk) is refused as a model name in one line: a model's folder there would
    collide with it (Snakemake: "a child to another output")."""
    import re

    from conftest import REPO

    text = "".join(p.read_text() for p in sorted((REPO / "rules").glob("*.smk")))
    written = set(re.findall(r"\{(?:ANALYSIS|RESULTS)\}/\{\{experiment\}\}/([^/\"{]+)", text))
    assert {"findings.md", "comparisons.csv", "plots"} <= written
    for name in sorted(written):
        config = with_changes(base_config, models=[{"name": name, "source": "builtin:tiny-sdxl"}])
        with pytest.raises(InputError, match=rf"model name '{re.escape(name)}' would be a folder"):
            build_plan(validate_config(config))


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("generation: [unclosed\n")
    with pytest.raises(InputError, match="bad.yaml.*not valid YAML"):
        load_yaml(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(InputError, match="list.yaml: expected a mapping"):
        load_yaml(listed)


def test_metric_weight_files_must_exist(base_config, tmp_path):
    missing = str(tmp_path / "nope" / "ViT-L-14.pt")
    config = with_changes(base_config, metrics={"clip": {"pretrained": missing}})
    with pytest.raises(InputError, match=r"'metrics.clip.pretrained': file .*ViT-L-14.pt does not"):
        validate_config(config)
    config = with_changes(base_config, metrics={"lpips": {"backbone_weights": "w/alex.pth"}})
    with pytest.raises(InputError, match="'metrics.lpips.backbone_weights': file w/alex.pth"):
        validate_config(config)
    # A disabled metric is not checked (unless another metric uses its model), and a tag
    # is not a path.
    off = {"enabled": False}
    metrics = {"lpips": {"enabled": False, "backbone_weights": "w/a.pth"}, "reference": off}
    validate_config(with_changes(base_config, metrics=metrics))
    with pytest.raises(InputError, match="'metrics.lpips.backbone_weights'"):
        validate_config(with_changes(base_config, metrics=metrics | {"reference": {}}))
    validate_config(
        with_changes(base_config, metrics={"clip": {"model": "ViT-L-14", "pretrained": "openai"}})
    )


def test_hardware_profiles(base_config):
    for name in ["cpu", "consumer-24gb", "datacenter-80gb", "low-vram"]:
        config = validate_config(with_changes(base_config, hardware=name))
        assert config["dtype"] in ("fp32", "fp16", "bf16")
    config = validate_config(with_changes(base_config, hardware="consumer-24gb"))
    assert (config["device"], config["dtype"]) == ("cuda", "bf16")
    assert config["memory"]["vae_tiling"] is True
    assert config["memory"]["attention"] == "native"
    # Keys in the config win over the profile.
    config = validate_config(
        with_changes(
            base_config, hardware="consumer-24gb", dtype="fp16", memory={"vae_tiling": False}
        )
    )
    assert config["dtype"] == "fp16" and config["memory"]["vae_tiling"] is False
    assert config["memory"]["vae_slicing"] is True
    with pytest.raises(
        InputError,
        match="'hardware': unknown profile 'h100'; expected one of: "
        "consumer-24gb, cpu, datacenter-80gb, low-vram",
    ):
        validate_config(with_changes(base_config, hardware="h100"))


def test_zero_terminal_snr_needs_a_sampler_that_supports_it(base_config):
    config = validate_config(
        with_changes(base_config, generation__zero_terminal_snr=True, generation__sampler="euler")
    )
    assert config["generation"]["zero_terminal_snr"] is True
    with pytest.raises(InputError, match="'generation.zero_terminal_snr': sampler 'heun' does"):
        validate_config(
            with_changes(
                base_config, generation__zero_terminal_snr=True, generation__sampler="heun"
            )
        )


def test_folders_have_one_spelling(base_config):
    """`results/` and `./results` are `results`: paths built from them match Snakemake's
    outputs (an outdated image is forced by its path)."""
    for spelling in ["out/", "./out", "out//"]:
        config = validate_config(with_changes(base_config, results_dir=spelling))
        assert config["results_dir"] == "out"


def test_reading_the_config_and_planning_import_no_torch():
    """`snakemake -n` reads the config and plans every image: importing torch there (2 to
    4 s) would be most of a dry run's time."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    code = (
        "import sys; sys.path.insert(0, 'scripts')\n"
        "from t2ibench.config import load_config, validate_config\n"
        "from t2ibench.plan import build_plan\n"
        "for files in (['config/config.yaml'], ['config/geneval.yaml']):\n"
        "    build_plan(validate_config(load_config(files)))\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_a_config_file_that_is_a_folder_is_one_line(tmp_path):
    with pytest.raises(InputError, match=r"config file .+: is a folder; expected a YAML file"):
        load_yaml(tmp_path)


def test_a_folder_has_one_spelling_however_the_config_spells_it(tmp_path, monkeypatch):
    """results_dir as "res", "./res/", or the absolute path of the same folder: one
    spelling, so Snakemake's records and the image lists name the same files."""
    from t2ibench.config import one_spelling

    monkeypatch.chdir(tmp_path)
    for spelled in ("res", "./res/", str(tmp_path / "res"), f"{tmp_path}/x/../res"):
        assert one_spelling(spelled) == "res", spelled
    assert one_spelling("a/b/") == "a/b"
    outside = tmp_path.parent / "elsewhere"
    assert one_spelling(str(outside)) == str(outside)
    assert one_spelling("../elsewhere") == str(outside)


def test_a_models_dir_without_checkpoints_is_named(base_config, tmp_path):
    """models_dir set to a folder with no .safetensors and no models listed: the message
    names models_dir (not "set 'models_dir'")."""
    empty = tmp_path / "checkpoints"
    empty.mkdir()
    config = with_changes(base_config, models=[], models_dir=str(empty))
    with pytest.raises(InputError, match=r"'models_dir': .+checkpoints holds no \.safetensors"):
        build_plan(validate_config(config))


def test_a_profiles_images_per_job_is_a_default_the_config_file_overrides(base_config):
    """profiles/slurm's `default_images_per_job=50` (a --config value, which beats the
    config file) gives chunks of 50 only where the config sets no images_per_job."""
    assert validate_config({**base_config, "default_images_per_job": 50})["images_per_job"] == 50
    own = {**base_config, "default_images_per_job": 50, "images_per_job": 64}
    own["generation"] = {**base_config["generation"], "batch_size": 64}
    assert validate_config(own)["images_per_job"] == 64
    assert validate_config(base_config)["images_per_job"] == 1
