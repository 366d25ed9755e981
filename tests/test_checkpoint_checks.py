"""Safety checks on user checkpoints: only sound .safetensors files get through."""

import hashlib
import json
import os
import pickle
import struct
import time

import pytest
import torch
from safetensors.torch import save_file

from t2ibench.errors import InputError
from t2ibench.models import checks
from t2ibench.models.checks import (
    PICKLE_SUFFIXES,
    check_checkpoint,
    has_vpred_key,
    read_safetensors_header,
    sha256_file,
)


@pytest.fixture
def valid(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"weight": torch.arange(12.0).reshape(3, 4), "bias": torch.ones(3)}, path)
    return path


def refused(path, *fragments):
    """The check refuses ``path`` with one line naming the file and each fragment."""
    with pytest.raises(InputError) as error:
        check_checkpoint(path)
    message = str(error.value)
    assert "\n" not in message
    assert path.name in message
    for fragment in fragments:
        assert fragment in message
    return message


def raw_safetensors(header: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + data


def test_valid_file_passes_and_returns_its_header(valid):
    header = check_checkpoint(valid)
    assert header["weight"]["shape"] == [3, 4]
    assert header["bias"]["dtype"] == "F32"
    assert not has_vpred_key(header)


def test_vpred_marker_is_found(tmp_path):
    path = tmp_path / "vpred.safetensors"
    save_file({"weight": torch.ones(2), "v_pred": torch.tensor([])}, path)
    assert has_vpred_key(check_checkpoint(path))


@pytest.mark.parametrize("suffix", PICKLE_SUFFIXES)
def test_pickle_suffixes_are_refused(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    torch.save({"weight": torch.ones(2)}, path)
    refused(path, "only .safetensors", "pickles run code on load")


def test_other_suffixes_are_refused(tmp_path, valid):
    path = valid.rename(tmp_path / "model.gguf")
    refused(path, "expected a .safetensors")


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(lambda path: torch.save({"w": torch.ones(2)}, path), id="torch-zip"),
        pytest.param(
            lambda path: torch.save(
                {"w": torch.ones(2)}, path, _use_new_zipfile_serialization=False
            ),
            id="torch-legacy-pickle",
        ),
        pytest.param(lambda path: path.write_bytes(pickle.dumps({"w": [1.0]})), id="pickle"),
        pytest.param(
            lambda path: path.write_bytes(pickle.dumps({"w": [1.0]}, protocol=2)), id="pickle-2"
        ),
    ],
)
def test_pickle_content_under_a_safetensors_name_is_refused(tmp_path, content):
    path = tmp_path / "renamed.safetensors"
    content(path)
    refused(path, "pickle or zip", "only .safetensors")


def test_header_length_that_looks_like_pickle_magic_is_not_refused(tmp_path):
    """A header of 0x0280 bytes starts with 0x80 0x02, like a protocol-2 pickle."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})
    padded = header.encode().ljust(0x0280, b" ")
    path = tmp_path / "model.safetensors"
    path.write_bytes(raw_safetensors(padded, b"\0" * 4))
    assert path.read_bytes()[:2] == b"\x80\x02"
    assert check_checkpoint(path)["w"]["shape"] == [1]


def test_truncated_file_is_refused(tmp_path, valid):
    path = tmp_path / "cut.safetensors"
    path.write_bytes(valid.read_bytes()[:-5])
    refused(path, "truncated")


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x05\x00", id="shorter-than-a-length"),
        pytest.param(b"\xff" * 64, id="absurd-length"),
        pytest.param(struct.pack("<Q", 1000) + b"{}", id="length-beyond-file"),
        pytest.param(raw_safetensors(b"{not json"), id="not-json"),
        pytest.param(raw_safetensors(b"\xff\xfe{}"), id="not-utf8"),
        pytest.param(raw_safetensors(b"[1, 2]"), id="not-an-object"),
        pytest.param(raw_safetensors(b'{"w": {"dtype": "F32"}}'), id="no-offsets"),
        pytest.param(raw_safetensors(b'{"w": {"data_offsets": [4, 0]}}'), id="bad-offsets"),
    ],
)
def test_garbage_header_is_refused(tmp_path, content):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(content)
    refused(path)


def test_missing_file_is_refused(tmp_path):
    refused(tmp_path / "absent.safetensors", "not found")


def test_directory_is_refused(tmp_path):
    path = tmp_path / "folder.safetensors"
    path.mkdir()
    refused(path, "directory")


def test_header_is_read_without_reading_tensor_data(tmp_path, monkeypatch):
    """A 64 MB checkpoint costs two small reads: cheap enough to run on every job."""
    path = tmp_path / "big.safetensors"
    save_file({"w": torch.zeros(16 * 1024 * 1024)}, path)
    sizes = []
    real_open = type(path).open

    def spy_open(self, *args, **kwargs):
        handle = real_open(self, *args, **kwargs)
        real_read = handle.read

        def read(n=-1):
            sizes.append(n)
            return real_read(n)

        handle.read = read
        return handle

    monkeypatch.setattr(type(path), "open", spy_open)
    assert read_safetensors_header(path)["w"]["shape"] == [16 * 1024 * 1024]
    assert sizes and max(sizes) < 1024 and -1 not in sizes


def test_sha256_matches_hashlib(valid):
    assert sha256_file(valid) == hashlib.sha256(valid.read_bytes()).hexdigest()


def test_sha256_cache_is_reused_and_invalidated_by_mtime(valid, tmp_path, monkeypatch):
    cache_file = tmp_path / "cache" / "sha256.json"
    expected = hashlib.sha256(valid.read_bytes()).hexdigest()
    calls = []
    real_stream = checks._sha256_stream

    def counting_stream(path):
        calls.append(path)
        return real_stream(path)

    monkeypatch.setattr(checks, "_sha256_stream", counting_stream)

    assert sha256_file(valid, cache_file) == expected
    assert sha256_file(valid, cache_file) == expected
    assert len(calls) == 1
    entry = json.loads(cache_file.read_text())[str(valid.resolve())]
    assert entry["sha256"] == expected

    stat = valid.stat()
    os.utime(valid, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert sha256_file(valid, cache_file) == expected
    assert len(calls) == 2
    assert [p.name for p in cache_file.parent.iterdir()] == ["sha256.json"]


def test_sha256_cache_survives_a_corrupt_cache_file(valid, tmp_path):
    cache_file = tmp_path / "sha256.json"
    cache_file.write_text("{ this is not json")
    assert sha256_file(valid, cache_file) == hashlib.sha256(valid.read_bytes()).hexdigest()
    assert str(valid.resolve()) in json.loads(cache_file.read_text())


def test_sha256_of_a_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="absent.safetensors"):
        sha256_file(tmp_path / "absent.safetensors")


def test_a_folders_digest_is_its_content_files_paths_and_digests(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    (folder / "unet").mkdir(parents=True)
    index = b'{"unet": ["diffusers", "UNet2DConditionModel"], "vae": [null, null]}'
    (folder / "model_index.json").write_bytes(index)
    (folder / "unet" / "w.safetensors").write_bytes(b"w" * 100)
    (folder / "README.md").write_text("notes")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "x.json").write_text("{}")
    # What a trainer leaves beside the pipeline's folders is not the model.
    (folder / "checkpoint-600").mkdir()
    (folder / "checkpoint-600" / "optimizer.bin").write_bytes(b"o")
    (folder / "trainer_state.json").write_text("{}")
    (folder / "vae").mkdir()  # named [null, null]: not loaded
    (folder / "vae" / "old.safetensors").write_bytes(b"v")
    expected = hashlib.sha256(
        "".join(
            f"{name}\0{hashlib.sha256(data).hexdigest()}\n"
            for name, data in [("model_index.json", index), ("unet/w.safetensors", b"w" * 100)]
        ).encode()
    ).hexdigest()
    cache_file = tmp_path / "sha256.json"
    calls = []
    real_stream = checks._sha256_stream
    monkeypatch.setattr(checks, "_sha256_stream", lambda p: calls.append(p) or real_stream(p))
    assert checks.model_digest(folder, cache_file) == expected
    assert checks.model_digest(folder, cache_file) == expected
    assert len(calls) == 2  # each content file once; the second call reads the cache
    assert (
        checks.model_digest(folder / "unet" / "w.safetensors")
        == hashlib.sha256(b"w" * 100).hexdigest()
    )


def test_a_built_in_folder_built_twice_has_one_digest(tmp_path):
    """What keeps images done when resources/ is cleaned and a built-in folder is made
    again: the builder writes the same bytes."""
    from t2ibench.models.zimage import save_tiny_zimage

    save_tiny_zimage(tmp_path / "a")
    save_tiny_zimage(tmp_path / "b")
    assert len(checks.folder_files(tmp_path / "a")) > 3
    assert checks.sha256_folder(tmp_path / "a") == checks.sha256_folder(tmp_path / "b")


def test_a_same_size_file_put_back_with_the_old_time_is_hashed_again(tmp_path):
    """`cp -p` or `touch -r` of other weights of the same size: size and mtime match the
    cache entry, the ctime does not."""
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"a" * 64)
    cache_file = tmp_path / "sha256.json"
    first = sha256_file(path, cache_file)
    stat = path.stat()
    time.sleep(0.05)  # the kernel's file times move in ticks of a few milliseconds
    path.write_bytes(b"b" * 64)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_mtime_ns == stat.st_mtime_ns and path.stat().st_size == stat.st_size
    assert sha256_file(path, cache_file) == hashlib.sha256(b"b" * 64).hexdigest() != first
