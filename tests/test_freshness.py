"""t2ibench.freshness: the one answer to "what is left to make"."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from t2ibench.config import validate_config
from t2ibench.freshness import (
    CONTENT_CHANGED,
    DONE,
    MISSING,
    MODEL_CHANGED,
    MODEL_NEWER,
    NO_RECORD,
    OUTDATED,
    RECORD_UNREADABLE,
    SETTINGS_CHANGED,
    UNREADABLE,
    Freshness,
    describe,
    file_sha256,
    is_complete_png,
)
from t2ibench.plan import build_plan

from conftest import with_changes
from freshness_helpers import png_bytes, write_image


@pytest.fixture
def plan(base_config):
    return build_plan(validate_config(base_config))


def state(plan, job, verify=False):
    return Freshness(plan, verify=verify).state(job)


def test_missing_done_and_settings_changed(plan):
    job = plan.jobs[0]
    assert state(plan, job).state == MISSING
    write_image(plan, job)
    assert state(plan, job).state == DONE
    write_image(plan, job, settings={**plan.settings(job), "steps": 9})
    got = state(plan, job)
    assert got.state == OUTDATED and got.reason == f"{SETTINGS_CHANGED}: steps"
    # A file where the image's folder goes: missing (making it then fails, in its job).
    folder = Path(plan.path(job)).parent
    shutil.rmtree(folder)
    folder.write_text("")
    assert state(plan, job).state == MISSING


def test_a_replaced_png_of_the_same_time_is_outdated(plan):
    """Another valid PNG under the image's name, its mtime set back: the size gives it
    away at once; one of the same size only the sha256 (verify)."""
    job = plan.jobs[0]
    path = write_image(plan, job)
    stat = path.stat()
    other = png_bytes(colour=(10, 200, 10), size=(20, 20))
    path.write_bytes(other)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert state(plan, job).reason.startswith(CONTENT_CHANGED)
    # Same size, other bytes: passes the size check, fails verification.
    write_image(plan, job)
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF
    path.write_bytes(bytes(data))
    assert state(plan, job).state == DONE
    got = state(plan, job, verify=True)
    assert got.state == OUTDATED and got.reason.startswith(CONTENT_CHANGED)


def test_a_png_newer_than_its_record_is_checked_by_content(plan):
    """A PNG written over after its record (other bytes, the same size) is found without
    verifying every image; one only touched, or copied back unchanged, is kept."""
    job = plan.jobs[0]
    path = write_image(plan, job)
    assert state(plan, job).state == DONE
    original = path.read_bytes()
    data = bytearray(original)
    data[40] ^= 0xFF
    later = path.with_suffix(".json").stat().st_mtime_ns + 5 * 10**9
    path.write_bytes(bytes(data))
    os.utime(path, ns=(later, later))
    got = state(plan, job)
    assert got.state == OUTDATED and got.reason == f"{CONTENT_CHANGED}: its sha256 differs"
    path.write_bytes(original)  # the same bytes again, later still
    os.utime(path, ns=(later + 10**9, later + 10**9))
    assert state(plan, job).state == DONE


def test_a_cut_png_is_outdated(plan):
    job = plan.jobs[0]
    path = write_image(plan, job)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert state(plan, job).reason.startswith(CONTENT_CHANGED)


def test_images_without_a_record(plan):
    """Made elsewhere: remade by a full run, scored as they are by `analyze`; a cut file
    or another format under the name is unreadable, and never scored."""
    job = plan.jobs[0]
    path = write_image(plan, job, record=False)
    got = state(plan, job)
    assert got.state == OUTDATED and got.reason == NO_RECORD and got.scorable
    path.write_bytes(path.read_bytes()[:-20])
    assert state(plan, job).reason == UNREADABLE and not state(plan, job).scorable
    path.write_text("not an image at all")
    assert state(plan, job).reason == UNREADABLE


def test_an_unreadable_record_is_not_trusted(plan):
    job = plan.jobs[0]
    path = write_image(plan, job)
    for text in ["{not json", "[]", '{"settings": 3}', "\xff"]:
        path.with_suffix(".json").write_text(text)
        assert state(plan, job).reason == RECORD_UNREADABLE


def test_model_newer_than_image_makes_it_outdated(plan):
    job = plan.jobs[0]
    image = write_image(plan, job)
    model_file = Path(plan.models["tiny"].input_files[0])
    model_file.parent.mkdir(parents=True, exist_ok=True)
    model_file.write_bytes(b"weights")
    old = image.stat().st_mtime - 100
    os.utime(model_file, (old, old))
    assert state(plan, job).state == DONE
    new = image.stat().st_mtime + 100
    os.utime(model_file, (new, new))
    assert state(plan, job).reason == MODEL_NEWER


def image_of_recorded_weights(plan):
    """(job, checkpoint, image): an image whose record names the checkpoint's sha256."""
    import hashlib

    job = plan.jobs[0]
    model_file = Path(plan.models["tiny"].checkpoint)
    model_file.parent.mkdir(parents=True, exist_ok=True)
    model_file.write_bytes(b"weights")
    image = write_image(plan, job)
    record_path = image.with_suffix(".json")
    record = json.loads(record_path.read_text())
    record["model_sha256"] = hashlib.sha256(b"weights").hexdigest()
    record_path.write_text(json.dumps(record))
    return job, model_file, image


def test_a_checkpoint_touched_but_not_changed_outdates_nothing(plan):
    """A model file newer than the image but with the sha256 the record names (copied,
    touched, rebuilt the same) leaves the image done; other content outdates it."""
    job, model_file, image = image_of_recorded_weights(plan)
    new = image.stat().st_mtime + 100
    os.utime(model_file, (new, new))
    assert state(plan, job).state == DONE
    model_file.write_bytes(b"other weights")
    os.utime(model_file, (new + 1, new + 1))
    assert state(plan, job).reason == MODEL_CHANGED


def test_weights_swapped_with_an_older_time_outdate_the_image(plan):
    """`cp -p`, `rsync -a` or a tar keep the old file's time: the sha256 the record names
    is what tells the weights changed, whatever the time."""
    job, model_file, image = image_of_recorded_weights(plan)
    old = image.stat().st_mtime - 1000
    os.utime(model_file, (old, old))
    assert state(plan, job).state == DONE
    model_file.write_bytes(b"other weights, older")
    os.utime(model_file, (old - 1, old - 1))
    assert state(plan, job).reason == MODEL_CHANGED


def test_records_older_than_the_png_digest_are_checked_by_decoding(plan):
    """A record written before records held the PNG's size and sha256: trusted on its
    settings, and with verify the PNG must decode."""
    job = plan.jobs[0]
    path = write_image(plan, job)
    record = path.with_suffix(".json")
    record.write_text(json.dumps({"settings": json.loads(record.read_text())["settings"]}))
    assert state(plan, job, verify=True).state == DONE
    path.write_bytes(path.read_bytes()[:60])
    assert state(plan, job).state == DONE
    assert state(plan, job, verify=True).reason == UNREADABLE


def test_describe_counts_reasons(base_config):
    plan = build_plan(validate_config(with_changes(base_config)))
    fresh = Freshness(plan)
    write_image(plan, plan.jobs[0])
    write_image(plan, plan.jobs[1], settings={**plan.settings(plan.jobs[1]), "steps": 9})
    write_image(plan, plan.jobs[2], settings={**plan.settings(plan.jobs[2]), "sampler": "ddim"})
    text = describe(fresh.states().values())
    missing = len(plan.jobs) - 3
    assert text == f"{missing} missing, 2 outdated (2 {SETTINGS_CHANGED})"
    assert fresh.todo(plan.jobs[:3]) == plan.jobs[1:3]


def test_png_helpers(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(png_bytes())
    assert is_complete_png(path, path.stat().st_size)
    assert file_sha256(path) == file_sha256(str(path))
    path.write_bytes(png_bytes()[:-1])
    assert not is_complete_png(path, path.stat().st_size)


def folder_model_image(base_config):
    """(plan, job, folder, image): a built-in folder model's image whose record names
    the folder's digest, as a generation job writes it."""
    from t2ibench.models.checks import sha256_folder

    config = {**base_config, "models": [{"name": "z", "source": "builtin:tiny-zimage"}]}
    plan = build_plan(validate_config(config))
    folder = Path(plan.models["z"].checkpoint)
    (folder / "transformer").mkdir(parents=True)
    index = {"_class_name": "ZImagePipeline", "transformer": ["diffusers", "ZImage"]}
    (folder / "model_index.json").write_text(json.dumps(index))
    (folder / "transformer" / "weights.safetensors").write_bytes(b"weights")
    job = plan.jobs[0]
    image = write_image(plan, job)
    record = json.loads(image.with_suffix(".json").read_text())
    record["model_sha256"] = sha256_folder(folder)
    image.with_suffix(".json").write_text(json.dumps(record))
    return plan, job, folder, image


def test_a_model_folder_made_again_the_same_outdates_nothing(base_config):
    """A built-in folder removed with resources/ and made again, or a folder copied:
    newer files with the same content leave the image done. Notes and caches beside the
    weights do not count."""
    plan, job, folder, image = folder_model_image(base_config)
    weights = folder / "transformer" / "weights.safetensors"
    new = image.stat().st_mtime + 100
    for path in (folder / "model_index.json", weights):
        path.write_bytes(path.read_bytes())
        os.utime(path, (new, new))
    (folder / "README.md").write_text("notes")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "lock").write_text("")
    os.utime(folder, (new, new))
    assert state(plan, job).state == DONE


def test_weights_changed_inside_a_model_folder_outdate_the_image(base_config):
    """Before, only model_index.json's time counted: weights replaced inside the folder
    (with any time) went unseen."""
    plan, job, folder, image = folder_model_image(base_config)
    weights = folder / "transformer" / "weights.safetensors"
    old = image.stat().st_mtime - 1000
    weights.write_bytes(b"other weights")
    os.utime(weights, (old, old))
    assert state(plan, job).reason == MODEL_CHANGED
    weights.write_bytes(b"weights")
    weights.rename(folder / "transformer" / "renamed.safetensors")
    assert state(plan, job).reason == MODEL_CHANGED


def test_a_folder_record_without_a_digest_is_compared_by_time(base_config):
    plan, job, folder, image = folder_model_image(base_config)
    record = json.loads(image.with_suffix(".json").read_text())
    del record["model_sha256"]
    image.with_suffix(".json").write_text(json.dumps(record))
    assert state(plan, job).state == DONE
    new = image.stat().st_mtime + 100
    os.utime(folder, (new, new))  # a built-in's rule output is the folder
    assert state(plan, job).reason == MODEL_NEWER


def test_a_checkpoint_moved_elsewhere_with_the_same_weights_outdates_nothing(base_config, tmp_path):
    """Only model_source differs and the recorded digest is the file's: the images stand.
    Other weights at the new place do outdate them."""
    from t2ibench.models.checks import sha256_file

    first = tmp_path / "a" / "model.safetensors"
    first.parent.mkdir()
    header = json.dumps(  # an SDXL single file's header (its key names the family)
        {"conditioner.embedders.1.model.ln_final.weight": {"dtype": "F32", "shape": [1],
                                                           "data_offsets": [0, 4]}}
    ).encode()  # fmt: skip
    first.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4)
    config = {**base_config, "models": [{"name": "tiny", "source": str(first)}]}
    plan = build_plan(validate_config(config))
    job = plan.jobs[0]
    image = write_image(plan, job)
    record = json.loads(image.with_suffix(".json").read_text())
    record["model_sha256"] = sha256_file(first)
    image.with_suffix(".json").write_text(json.dumps(record))
    assert state(plan, job).state == DONE
    moved = tmp_path / "b" / "model.safetensors"
    moved.parent.mkdir()
    shutil.move(first, moved)
    config["models"][0]["source"] = str(moved)
    plan = build_plan(validate_config(config))
    assert state(plan, job).state == DONE
    data = bytearray(moved.read_bytes())
    data[-1] ^= 0xFF
    moved.write_bytes(bytes(data))
    got = state(build_plan(validate_config(config)), job)
    assert got.state == OUTDATED and got.reason.startswith(SETTINGS_CHANGED)


def test_a_single_files_own_config_folder_newer_than_the_image_outdates_it(base_config, tmp_path):
    """An SD3 or FLUX.1 transformer file's `config` folder holds the VAE and text
    encoders: a file in it newer than the image outdates the image, as a VAE does."""
    from t2ibench.models.checks import sha256_file
    from t2ibench.models.registry import ModelSpec

    plan = build_plan(validate_config(base_config))
    job = plan.jobs[0]
    image = write_image(plan, job)
    checkpoint = Path(plan.models["tiny"].checkpoint)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_bytes(b"weights")
    config = tmp_path / "cfg"
    (config / "vae").mkdir(parents=True)
    (config / "model_index.json").write_text('{"vae": ["diffusers", "AutoencoderKL"]}')
    (config / "vae" / "w.safetensors").write_bytes(b"vae")
    old = image.stat().st_mtime - 100
    for path in (config / "model_index.json", config / "vae" / "w.safetensors"):
        os.utime(path, (old, old))
    record = json.loads(image.with_suffix(".json").read_text())
    record["model_sha256"] = sha256_file(checkpoint)
    image.with_suffix(".json").write_text(json.dumps(record))
    spec = plan.models["tiny"]
    fields = {f: getattr(spec, f) for f in spec.__dataclass_fields__}
    plan.models["tiny"] = ModelSpec(**{**fields, "config_dir": str(config), "shared_config": False})
    assert state(plan, job).state == DONE
    (config / "vae" / "w.safetensors").write_bytes(b"other vae")  # newer than the image
    assert state(plan, job).reason == MODEL_NEWER
