"""The plan: seeds, indices and paths of every image target."""

from __future__ import annotations

import pytest

from t2ibench.config import validate_config
from t2ibench.errors import InputError
from t2ibench.plan import IMAGE_NAME, build_plan

from conftest import with_changes


def test_seeds_indices_and_paths(base_config):
    config = validate_config(
        with_changes(base_config, generation__seed=218, generation__images_per_prompt=2)
    )
    plan = build_plan(config)
    assert len(plan.jobs) == 3 * 2
    names = [j.relpath for j in plan.jobs]
    assert names[:4] == [
        "baseline/tiny/default/p000_i00_s218.png",
        "baseline/tiny/default/p000_i01_s219.png",
        "baseline/tiny/default/p001_i00_s218.png",
        "baseline/tiny/default/p001_i01_s219.png",
    ]
    assert (
        plan.path(plan.jobs[0])
        == f"{config['results_dir']}/baseline/tiny/default/p000_i00_s218.png"
    )
    # Every prompt sees the same seed sequence.
    by_prompt = {}
    for job in plan.jobs:
        by_prompt.setdefault(job.prompt_index, []).append(job.seed)
    assert set(map(tuple, by_prompt.values())) == {(218, 219)}
    assert all(IMAGE_NAME.match(j.filename) for j in plan.jobs)


def test_models_multiply_jobs_and_settings_are_complete(base_config):
    config = validate_config(
        with_changes(
            base_config,
            models=[
                {"name": "a", "source": "builtin:tiny-sdxl"},
                {"name": "b-vpred", "source": "builtin:tiny-sdxl"},
            ],
        )
    )
    plan = build_plan(config)
    assert len(plan.jobs) == 2 * 3 * 2
    job = plan.lookup("baseline", "b-vpred", "default", "002", "01", "219")
    settings = plan.settings(job)
    assert settings["prompt"] == "a cat on a mat"
    assert settings["seed"] == 219
    assert settings["prediction_type"] == "v_prediction"  # detected from the name
    assert {
        "sampler",
        "steps",
        "guidance_scale",
        "width",
        "height",
        "negative_prompt",
        "dtype",
        "model",
    } <= set(settings)


def test_lookup_rejects_unplanned_targets(base_config):
    import pytest

    plan = build_plan(validate_config(base_config))
    with pytest.raises(KeyError):
        plan.lookup("baseline", "tiny", "default", "000", "00", "999")
    with pytest.raises(KeyError):
        plan.lookup("baseline", "tiny", "default", "007", "00", "218")


def test_wide_indices_keep_sorting(base_config, tmp_path):
    import json

    many = tmp_path / "many.json"
    many.write_text(json.dumps({f"p{i}": {"text": f"prompt {i}"} for i in range(1002)}))
    config = validate_config(
        with_changes(base_config, prompts={"sources": [str(many)]}, generation__images_per_prompt=1)
    )
    plan = build_plan(config)
    assert plan.jobs[-1].filename == "p1001_i00_s218.png"
    assert IMAGE_NAME.match(plan.jobs[-1].filename)


def test_family_settings_are_filled_and_checked(base_config):
    import pytest

    from t2ibench.errors import InputError

    config = validate_config(
        with_changes(
            base_config,
            models=[{"name": "z", "source": "builtin:tiny-zimage"}],
            generation__hidden_layer=-3,
        )
    )
    plan = build_plan(config)
    settings = plan.settings(plan.jobs[0])
    assert settings["family"] == "zimage" and settings["sampler"] == "flow_match_euler"
    assert settings["hidden_layer"] == -3  # set in config
    assert settings["shift"] == 3.0 and settings["think_block"] is True  # family defaults
    assert settings["long_prompt_mode"] == "interpolate"
    sdxl = build_plan(validate_config(base_config))
    sdxl_settings = sdxl.settings(sdxl.jobs[0])
    assert "shift" not in sdxl_settings
    assert (sdxl_settings["clip_skip"], sdxl_settings["guidance_rescale"]) == (None, 0.0)
    mixed = with_changes(
        base_config,
        generation__shift=4.0,
        models=[
            {"name": "z", "source": "builtin:tiny-zimage"},
            {"name": "s", "source": "builtin:tiny-sdxl"},
        ],
    )
    with pytest.raises(
        InputError,
        match="'generation.shift': a setting of SD3, FLUX.1 and Z-Image models, but model 's' "
        "is SDXL",
    ):
        build_plan(validate_config(mixed))


def test_sdxl_setting_on_a_zimage_model_is_an_error(base_config):
    import pytest

    from t2ibench.errors import InputError

    config = with_changes(
        base_config,
        generation__clip_skip=2,
        models=[{"name": "z", "source": "builtin:tiny-zimage"}],
    )
    with pytest.raises(
        InputError,
        match="'generation.clip_skip': a setting of SDXL and SD 1.x/2.x models, but model 'z' "
        "is Z-Image",
    ):
        build_plan(validate_config(config))
    plan = build_plan(validate_config(with_changes(base_config, generation__clip_skip=2)))
    assert plan.settings(plan.jobs[0])["clip_skip"] == 2


def test_hidden_layer_out_of_range_is_caught_before_generation(base_config):
    import pytest

    from t2ibench.errors import InputError

    zimage = [{"name": "z", "source": "builtin:tiny-zimage"}]
    build_plan(
        validate_config(with_changes(base_config, models=zimage, generation__hidden_layer=-7))
    )
    with pytest.raises(
        InputError,
        match="'generation.hidden_layer': layer -8 is out of range "
        "for model 'z', whose text encoder has 6 layers",
    ):
        build_plan(
            validate_config(with_changes(base_config, models=zimage, generation__hidden_layer=-8))
        )
    with pytest.raises(InputError, match="'generation.hidden_layer_blend': layer 9"):
        build_plan(
            validate_config(
                with_changes(base_config, models=zimage, generation__hidden_layer_blend={9: 1.0})
            )
        )


def test_named_presets_become_their_text(base_config):
    from t2ibench.models.families.zimage import SYSTEM_PROMPT_PRESETS, THINKING_PRESETS

    zimage = [{"name": "z", "source": "builtin:tiny-zimage"}]
    plan = build_plan(
        validate_config(
            with_changes(
                base_config,
                models=zimage,
                generation__system_prompt="painter",
                generation__thinking_content="mood",
            )
        )
    )
    settings = plan.settings(plan.jobs[0])
    assert settings["system_prompt"] == SYSTEM_PROMPT_PRESETS["painter"]
    assert settings["thinking_content"] == THINKING_PRESETS["mood"]
    plan = build_plan(
        validate_config(
            with_changes(base_config, models=zimage, generation__system_prompt="Draw like a child.")
        )
    )
    assert plan.settings(plan.jobs[0])["system_prompt"] == "Draw like a child."


def test_steps_default_per_family(base_config):
    models = [
        {"name": "z", "source": "builtin:tiny-zimage"},
        {"name": "s", "source": "builtin:tiny-sdxl"},
    ]
    config = with_changes(base_config, models=models)
    del config["generation"]["steps"]
    plan = build_plan(validate_config(config))
    steps = {j.model: plan.settings(j)["steps"] for j in plan.jobs}
    assert steps == {"z": 9, "s": 28}
    plan = build_plan(validate_config(with_changes(config, generation__steps=5)))
    assert {plan.settings(j)["steps"] for j in plan.jobs} == {5}


@pytest.mark.parametrize(
    ("builtin", "refused"),
    [("tiny-zimage", True), ("tiny-flux-dev", True), ("tiny-sd3", True), ("tiny-sdxl", False)],
)
def test_a_size_the_pipeline_cannot_make_is_refused_before_the_run(base_config, builtin, refused):
    """Z-Image, FLUX.1 and SD3 pack 2x2 latent patches: 72 px would fail (Z-Image, SD3) or
    be resized (FLUX.1) in the job; SDXL takes multiples of 8."""
    config = dict(base_config, models=[{"name": "m", "source": f"builtin:{builtin}"}])
    config["generation"] = {**config["generation"], "width": 72}
    if refused:
        with pytest.raises(InputError, match=r"^config key 'generation.width': 72 for model 'm'"):
            build_plan(validate_config(config))
    else:
        build_plan(validate_config(config))
