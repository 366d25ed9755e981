"""Experiments: the catalogue, cells, names, selection, quick mode and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from t2ibench.cells import slug
from t2ibench.config import coerce_strings, load_config, load_schema, validate_config
from t2ibench.errors import InputError
from t2ibench.experiments import CATALOGUE_DIR, load_experiment
from t2ibench.plan import build_plan

from conftest import REPO, with_changes

TINY_MODELS = [
    {"name": "tiny-sdxl", "source": "builtin:tiny-sdxl"},
    {"name": "tiny-sdxl-vpred", "source": "builtin:tiny-sdxl-vpred"},
    {"name": "tiny-zimage", "source": "builtin:tiny-zimage"},
    {"name": "tiny-sd15", "source": "builtin:tiny-sd15"},
    {"name": "tiny-flux-dev", "source": "builtin:tiny-flux-dev"},
    {"name": "tiny-chroma", "source": "builtin:tiny-chroma"},
    {"name": "tiny-sd3", "source": "builtin:tiny-sd3"},
]
FAMILY_OF = {"tiny-sdxl": "sdxl", "tiny-sdxl-vpred": "sdxl", "tiny-zimage": "zimage"}
FAMILY_OF.update({"tiny-sd15": "sd15", "tiny-flux-dev": "flux", "tiny-chroma": "diffusers"})
FAMILY_OF["tiny-sd3"] = "sd3"
# Cells of each catalogue experiment, full and quick (the seed tool's values).
CATALOGUE_CELLS = {
    "shift_sweep": (6, 6),
    "shift_steps_grid": (30, 9),
    "hidden_layer": (6, 6),
    "hidden_layer_blend": (8, 3),
    "think_block": (5, 5),
    "system_prompt": (5, 5),
    "steps_only": (8, 8),
    "long_prompt_mode": (4, 4),
    "sdxl_sampler": (13, 4),
    "sdxl_steps": (6, 3),
    "sdxl_guidance": (6, 6),
    "sdxl_clip_skip": (4, 4),
    "sdxl_prompt_sr": (4, 4),
    "sd15_clip_skip": (3, 3),
    "flux_guidance": (3, 3),
    "diffusers_steps": (3, 3),
    "sd3_t5": (4, 4),
}


def plan_for(base_config, experiments, **changes):
    config = with_changes(base_config, experiments=experiments, **changes)
    return build_plan(validate_config(config))


def write_experiment(tmp_path: Path, data: dict | str, name: str = "exp") -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return str(path)


def sweep(tmp_path, variables=None, **extra):
    data = {"name": "exp", "description": "test sweep", **extra}
    if variables is not None:
        data["variables"] = variables
    return write_experiment(tmp_path, data)


def test_catalogue_is_complete_and_every_experiment_plans(base_config):
    assert sorted(p.stem for p in CATALOGUE_DIR.glob("*.yaml")) == sorted(CATALOGUE_CELLS)
    base_config["models"] = TINY_MODELS
    for name, (full, quick) in CATALOGUE_CELLS.items():
        for is_quick, cells in ((False, full), (True, quick)):
            plan = plan_for(base_config, [name], quick=is_quick)
            exp = plan.experiments[name]
            assert len(exp.cells) == cells, (name, is_quick)
            wanted = exp.experiment.families
            assert wanted, name  # each catalogue experiment names the families it is for
            assert exp.models == [m["name"] for m in TINY_MODELS if FAMILY_OF[m["name"]] in wanted]
            assert len(plan.jobs) == len(exp.models) * cells * len(exp.prompts) * len(exp.seeds)
            assert exp.experiment.reference in exp.experiment.cell_names
            if is_quick:
                assert len(exp.prompts) == 2 and len(exp.seeds) == 1


def test_grid_cell_names_are_readable_and_settings_apply(base_config):
    base_config["models"] = TINY_MODELS
    plan = plan_for(base_config, ["shift_steps_grid"])
    exp = plan.experiments["shift_steps_grid"]
    assert exp.experiment.cell_names[:3] == [
        "shift-2.0__steps-6",
        "shift-2.0__steps-8",
        "shift-2.0__steps-9",
    ]
    job = next(j for j in plan.jobs if j.cell == "shift-3.5__steps-12")
    settings = plan.settings(job)
    assert (settings["shift"], settings["steps"]) == (3.5, 12)
    assert settings["hidden_layer"] == -2  # the rest: family defaults
    assert job.relpath.startswith("shift_steps_grid/tiny-zimage/shift-3.5__steps-12/p000_")


def test_named_values_compound_axes_and_presets(base_config):
    base_config["models"] = TINY_MODELS
    plan = plan_for(base_config, ["think_block", "system_prompt", "hidden_layer_blend"])
    think = plan.experiments["think_block"].experiment
    assert think.cell_names == [
        "think-empty",
        "think-none",
        "think-quality",
        "think-mood",
        "think-technical",
    ]
    assert think.reference == "think-empty"
    by_cell = {j.cell: plan.settings(j) for j in plan.jobs if j.experiment == "think_block"}
    assert by_cell["think-none"]["think_block"] is False
    assert by_cell["think-quality"]["thinking_content"].startswith("The image should be high")
    system = {j.cell: plan.settings(j) for j in plan.jobs if j.experiment == "system_prompt"}
    assert system["system_prompt-none"]["system_prompt"] is None
    assert system["system_prompt-painter"]["system_prompt"].startswith("You are a fine-art")
    blend = {j.cell: plan.settings(j) for j in plan.jobs if j.experiment == "hidden_layer_blend"}
    assert blend["hidden_layer_blend-L-2_L-3"]["hidden_layer_blend"] == {-2: 0.5, -3: 0.5}


def test_prompt_search_replace(base_config, tmp_path):
    path = sweep(tmp_path, {"prompt_sr": ["cube", "pyramid", "torus"]}, families=["sdxl"])
    plan = plan_for(base_config, [path])
    texts = {
        (j.cell, j.prompt_index): plan.settings(j)["prompt"]
        for j in plan.jobs
        if j.image_index == 0
    }
    assert texts[("prompt_sr-cube", 0)] == "a red cube"
    assert texts[("prompt_sr-pyramid", 0)] == "a red pyramid"
    assert texts[("prompt_sr-torus", 0)] == "a red torus"
    assert texts[("prompt_sr-torus", 2)] == "a cat on a mat"  # no match: unchanged
    job = next(j for j in plan.jobs if j.cell == "prompt_sr-torus")
    assert plan.prompt_text(job) == "a red torus"  # what CLIP scores against


def test_explicit_cells(base_config, tmp_path):
    path = write_experiment(
        tmp_path,
        {
            "name": "exp",
            "description": "two hand-picked cells",
            "cells": [{"steps": 2, "guidance_scale": 3.0}, {"name": "strong", "guidance_scale": 9}],
        },
    )
    plan = plan_for(base_config, [path])
    exp = plan.experiments["exp"].experiment
    assert exp.cell_names == ["steps-2__guidance_scale-3.0", "strong"]
    assert exp.axes == ["steps", "guidance_scale"]


def test_quick_mode_uses_fewer_prompts_seeds_and_values(base_config):
    base_config["models"] = TINY_MODELS
    full = plan_for(base_config, ["baseline", "sdxl_steps"])
    quick = plan_for(base_config, ["baseline", "sdxl_steps"], quick=True)
    assert len(full.experiments["sdxl_steps"].cells) == 6
    assert [c.name for c in quick.experiments["sdxl_steps"].cells] == [
        "steps-10",
        "steps-20",
        "steps-28",
    ]
    # Quick images are a subset of the full run's: a full run after a quick one reuses them.
    assert {full.path(j) for j in full.jobs} >= {quick.path(j) for j in quick.jobs}
    assert len(quick.experiments["baseline"].prompts) == 2


@pytest.mark.parametrize(
    ("quick", "message"),
    [
        ("{variables: {shiftt: [2.0]}}", r"key 'quick.variables.shiftt': not a variable"),
        ("{variables: {shift: [abc]}}", r"key 'quick.variables.shift\[0\]': "),
    ],
)
def test_a_quick_runs_variables_are_checked_in_every_run(tmp_path, quick, message):
    """A mistake in quick.variables is found by a full run too, under its own key."""
    path = tmp_path / "q.yaml"
    path.write_text(
        "name: q\ndescription: d\nvariables: {shift: [2.0, 3.0]}\n" + f"quick: {quick}\n"
    )
    for run_quick in (False, True):
        with pytest.raises(InputError, match=message):
            load_experiment(str(path), run_quick)
    cells = tmp_path / "c.yaml"
    cells.write_text(
        "name: c\ndescription: d\ncells: [{shift: 2.0}, {shift: 3.0}]\n"
        "quick: {variables: {shift: [2.0]}}\n"
    )
    with pytest.raises(InputError, match=r"key 'quick.variables': the experiment has cells"):
        load_experiment(str(cells))


def test_an_experiments_own_prompt_file_missing_names_the_experiment(base_config, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: p\ndescription: d\nvariables: {steps: [2, 3]}\nprompts: {sources: [nonexist.json]}\n"
    )
    config = validate_config(dict(base_config, experiments=[str(path)]))
    with pytest.raises(
        InputError, match=rf"^experiment file {path}: key 'prompts.sources': nonexist.json does not"
    ):
        build_plan(config)


def test_a_folder_listed_as_an_experiment_is_named_a_folder(tmp_path):
    with pytest.raises(InputError, match=rf"'experiments': {tmp_path} is a folder; expected"):
        load_experiment(str(tmp_path))


def test_explicit_seed_list(base_config):
    plan = plan_for(base_config, ["baseline"], generation__seeds=[218, 1024, 7])
    names = [j.filename for j in plan.jobs if j.prompt_index == 1]
    assert names == ["p001_i00_s218.png", "p001_i01_s1024.png", "p001_i02_s7.png"]
    with pytest.raises(InputError, match=r"'generation.seeds': seed 7 is listed twice"):
        plan_for(base_config, ["baseline"], generation__seeds=[7, 8, 7])


def test_prompt_filters_never_renumber_images(base_config):
    plan = plan_for(base_config, ["baseline"], prompts__categories=["animals"])
    assert {j.prompt_index for j in plan.jobs} == {2}  # b_001 stays p002
    assert plan.jobs[0].filename == "p002_i00_s218.png"


def test_custom_prompt_runs_apart(base_config):
    plan = plan_for(base_config, ["baseline"], prompt="a lone lighthouse")
    prompts = plan.experiments["baseline"].prompts
    assert [(p.id, p.text) for p in prompts] == [("custom", "a lone lighthouse")]
    assert plan.results_dir.startswith(base_config["results_dir"] + "/prompt-")
    other = plan_for(base_config, ["baseline"], prompt="another prompt")
    assert other.results_dir != plan.results_dir


def test_max_images_guard(base_config):
    base_config["models"] = TINY_MODELS[:3]  # two SDXL models and a Z-Image one
    with pytest.raises(InputError) as err:
        plan_for(base_config, ["baseline", "sdxl_sampler"], max_images=100)
    message = str(err.value)
    assert "the plan has 174 images (baseline 18, sdxl_sampler 156)" in message
    assert "--config max_images=174" in message
    assert len(plan_for(base_config, ["baseline", "sdxl_sampler"], max_images=174).jobs) == 174


def test_cell_names_are_stable_and_unique():
    assert slug("3.0") == "3.0"
    assert slug("You are a painter!") == "You_are_a_painter"
    long = slug("x" * 100)
    assert len(long) <= 40 and long == slug("x" * 100) and long != slug("x" * 99)


def test_experiment_names_cannot_shadow_rules_or_folders(repo, tmp_path):
    """The names taken are read from the workflow's rules: a rule added later is taken
    too; so are the folders a results folder holds besides its experiments."""
    from t2ibench.experiments import experiment_schema, load_experiment, reserved_names
    from t2ibench.models import families as model_families

    taken = reserved_names()
    assert {"all", "generate_image", "image_list", "metric", "viewer", "quick", "report"} <= taken
    for name in ["metric", "quick"]:
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"name: {name}\ndescription: x\nvariables: {{steps: [2, 3]}}\n")
        with pytest.raises(InputError, match=f"key 'name': '{name}' is taken by the workflow"):
            load_experiment(str(path))
    families = experiment_schema()["properties"]["families"]["items"]["enum"]
    assert families == model_families.names()


def test_cli_strings_are_coerced_by_schema():
    schema = load_schema()
    config = coerce_strings(
        {"generation": {"steps": "8", "seeds": ["1", "2"], "shift": "3.5", "sampler": "euler"}},
        schema,
    )
    assert config["generation"] == {"steps": 8, "seeds": [1, 2], "shift": 3.5, "sampler": "euler"}
    assert coerce_strings({"quick": "true", "prompt": "123"}, schema) == {
        "quick": True,
        "prompt": "123",
    }


def test_load_config_like_snakemake(tmp_path):
    demo = load_config()
    assert demo["experiments"] == ["baseline", "shift_sweep"]
    own = tmp_path / "own.yaml"
    own.write_text("models: [{name: a, source: 'builtin:tiny-sdxl'}]\n")
    config = load_config([str(own)], {"generation": {"steps": "3"}})
    assert "experiments" not in config and config["generation"] == {"steps": "3"}
    assert validate_config(config)["generation"]["steps"] == 3


BAD_EXPERIMENTS = [
    ({"variables": {"shift": []}}, r"key 'variables.shift': must not be empty"),
    ({"variables": {"shift": [2.0, 3.0, 2.0]}}, r"'variables.shift': duplicate value '2.0'"),
    (
        {"variables": {"shift": [2, 2.0]}},
        r"'variables.shift': duplicate value '2.0' \(same as '2'\)",
    ),
    ({"variables": {"steps": [4, "many"]}}, r"'variables.steps\[1\]': expected an integer"),
    (
        {"families": ["sdxl"], "variables": {"sampler": ["euler", "warp"]}},
        r"cell 'sampler-warp': key 'sampler': unknown sampler 'warp'",
    ),
    ({"variables": {"colour": ["red"]}}, r"unknown setting 'colour'"),
    ({"variables": {"seed": [1, 2]}}, r"'seed' cannot vary between cells"),
    (
        {"variables": {"system_prompt": ["a/b", "a_b"]}},
        r"two cells would share the directory name 'system_prompt-a_b'",
    ),
    ({"variables": {"hidden_layer": [-2, -40]}}, r"layer -40 is out of range for model"),
    ({"variables": {"hidden_layer_blend": [{-2: 1.0}]}}, r"needs a name"),
    ({"cells": []}, r"key 'cells': must not be empty"),
    ({}, r"give either 'variables' \(a grid\) or 'cells' \(a list\)"),
    (
        {"variables": {"shift": [2.0]}, "extra": 1},
        r"exp.yaml: unknown key 'extra'; expected one of: cells,",
    ),
    ({"variables": {"shift": [2.0]}, "reference": "shift-9.0"}, r"no cell named 'shift-9.0'"),
    ({"variables": {"shift": [2.0]}, "models": ["nope"]}, r"no configured model 'nope'"),
]


@pytest.mark.parametrize(("data", "message"), BAD_EXPERIMENTS)
def test_bad_experiment_files(base_config, tmp_path, data, message):
    base_config["models"] = TINY_MODELS
    path = write_experiment(
        tmp_path, {"name": "exp", "description": "bad", "families": ["zimage"], **data}
    )
    with pytest.raises(InputError, match=message) as err:
        plan_for(base_config, [path])
    assert "\n" not in str(err.value)


def test_family_unsupported_variable(base_config, tmp_path):
    path = sweep(tmp_path, {"hidden_layer": [-1, -2]})  # no families: applies to SDXL too
    with pytest.raises(InputError, match=r"varies 'hidden_layer', which sdxl models do not"):
        plan_for(base_config, [path])
    path = sweep(tmp_path, {"clip_skip": [1, 2]}, families=["zimage"])
    base_config["models"] = [{"name": "z", "source": "builtin:tiny-zimage"}]
    with pytest.raises(InputError, match=r"varies 'clip_skip', which zimage models do not"):
        plan_for(base_config, [path])
    with pytest.raises(InputError, match=r"applies to sdxl models, and none is configured"):
        plan_for(base_config, ["sdxl_guidance"])


def test_unknown_experiment_lists_the_catalogue(base_config):
    with pytest.raises(InputError) as err:
        plan_for(base_config, ["baseline", "shfit_sweep"])
    assert (
        "unknown experiment 'shfit_sweep'; expected one of: baseline, diffusers_steps, "
        "flux_guidance" in str(err.value)
    )


def test_unparsable_and_duplicate_key_yaml(base_config, tmp_path):
    path = write_experiment(tmp_path, "name: exp\nvariables: {shift: [1.0, 2.0\n")
    with pytest.raises(InputError, match=r"experiment file .*exp.yaml: line \d+ is not valid"):
        plan_for(base_config, [path])
    path = write_experiment(
        tmp_path, "name: exp\ndescription: d\nvariables:\n  steps: [2]\n  steps: [3]\n"
    )
    with pytest.raises(InputError, match=r"exp.yaml: line 5: duplicate key 'steps'"):
        plan_for(base_config, [path])


def test_reserved_and_mismatched_names(base_config, tmp_path):
    path = write_experiment(tmp_path, {"name": "grid", "description": "d", "variables": {}})
    with pytest.raises(InputError, match=r"exp.yaml: key 'variables': must not be empty"):
        plan_for(base_config, [path])
    path = write_experiment(
        tmp_path, {"name": "grid", "description": "d", "variables": {"steps": [2]}}
    )
    with pytest.raises(InputError, match=r"'grid' is taken by the workflow \(a rule"):
        plan_for(base_config, [path])


def test_load_experiment_records_source_and_axes():
    exp = load_experiment("shift_steps_grid")
    assert exp.axes == ["shift", "steps"]
    assert exp.source.endswith("config/experiments/shift_steps_grid.yaml")
    assert json.dumps(exp.cells[0].values) == '{"shift": "2.0", "steps": "6"}'
    assert REPO in Path(exp.source).resolve().parents


def test_a_setting_fixed_and_varied_at_once_is_refused(tmp_path):
    """`settings: {steps: 4}` beside `variables: {steps: [2, 3]}`: one of the two would be
    dropped silently; one line names the key."""
    path = sweep(tmp_path, {"steps": [2, 3]}, settings={"steps": 4})
    with pytest.raises(InputError, match=r"key 'settings.steps': also set by the cells"):
        load_experiment(path)
    assert load_experiment(sweep(tmp_path, {"steps": [2, 3]}, settings={"guidance_scale": 4}))
