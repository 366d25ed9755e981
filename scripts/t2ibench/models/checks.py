"""Cheap safety checks on a user's checkpoint before anything loads it.

Only ``.safetensors`` files are accepted: pickle-based formats (``.ckpt``, ``.pt``, ...)
execute code when they are loaded. The checks read the file's header and nothing more, so
a truncated download or a renamed pickle is refused in milliseconds with one clear line,
instead of failing deep inside diffusers (or worse, running someone's code).
"""

import hashlib
import json
import os
import struct
import uuid
from pathlib import Path

from t2ibench.errors import InputError

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
# The reference safetensors reader refuses headers over 100 MB; real SDXL's is ~200 kB.
MAX_HEADER_BYTES = 100_000_000
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format is a zip archive of pickles
PICKLE_PROTOCOLS = range(2, 6)  # a pickle of protocol 2-5 starts with 0x80, then the protocol
HASH_CHUNK_BYTES = 1 << 20

_ONLY_SAFETENSORS = "only .safetensors checkpoints are loaded, because pickles run code on load"


def _looks_like_pickle(head: bytes) -> bool:
    """Zip or pickle magic where a safetensors header should be.

    A real safetensors file whose header length happens to start with the same bytes
    still has its JSON opening brace at offset 8, so it is not mistaken for a pickle.
    """
    if head[8:9] == b"{":
        return False
    is_pickle = len(head) >= 2 and head[0] == 0x80 and head[1] in PICKLE_PROTOCOLS
    return head.startswith(ZIP_MAGIC) or is_pickle


def _require_file(path: Path) -> int:
    """The file's size; a missing path is the user's error, not a traceback."""
    if not path.exists():
        raise InputError(f"{path}: checkpoint file not found")
    if not path.is_file():
        raise InputError(f"{path}: expected a checkpoint file, found a directory or device")
    return path.stat().st_size


def _check_data_offsets(path: Path, name: str, entry: object) -> int:
    """The end of one tensor's bytes, after checking the entry is well formed."""
    offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
    valid = (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(o, int) and o >= 0 for o in offsets)
        and offsets[0] <= offsets[1]
    )
    if not valid:
        raise InputError(
            f"{path}: safetensors header entry {name!r} has no valid data_offsets [start, end]"
        )
    return offsets[1]


def _check_complete(path: Path, header: dict, header_len: int, size: int) -> None:
    """Refuse a file shorter than the tensor data its header promises (a cut download)."""
    data_end = max(
        (_check_data_offsets(path, k, v) for k, v in header.items() if k != "__metadata__"),
        default=0,
    )
    expected = 8 + header_len + data_end
    if size < expected:
        raise InputError(
            f"{path}: safetensors file is truncated: {size} bytes, its header needs {expected}"
        )


def read_safetensors_header(path: Path) -> dict:
    """Parse a safetensors header (8-byte little-endian length, then JSON) without
    reading any tensor data, and check the file holds all the data the header promises."""
    path = Path(path)
    size = _require_file(path)
    with path.open("rb") as f:
        head = f.read(9)
        if _looks_like_pickle(head):
            raise InputError(
                f"{path}: file is a pickle or zip archive, not safetensors; {_ONLY_SAFETENSORS}"
            )
        if len(head) < 9:
            raise InputError(f"{path}: file is {size} bytes, too short to be safetensors")
        (header_len,) = struct.unpack("<Q", head[:8])
        if header_len > MAX_HEADER_BYTES or header_len > size - 8:
            raise InputError(
                f"{path}: not a valid safetensors file: header length {header_len} "
                f"does not fit a {size}-byte file"
            )
        f.seek(8)
        raw = f.read(header_len)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"{path}: not a valid safetensors file: header is not JSON") from None
    if not isinstance(header, dict):
        raise InputError(f"{path}: not a valid safetensors file: header is not a JSON object")
    _check_complete(path, header, header_len, size)
    return header


def check_checkpoint(path: Path) -> dict:
    """All checks on a user's checkpoint; returns its safetensors header."""
    path = Path(path)
    _require_file(path)
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise InputError(f"{path}: {suffix} is a pickle format; {_ONLY_SAFETENSORS}")
    if suffix != ".safetensors":
        raise InputError(f"{path}: expected a .safetensors checkpoint, got {suffix or 'no suffix'}")
    return read_safetensors_header(path)


# Names that are a pipeline's components wherever they appear in a model_index.json.
COMPONENTS = ("unet", "transformer", "vae", "scheduler", "text_encoder", "tokenizer",
              "text_encoder_2", "tokenizer_2", "text_encoder_3", "tokenizer_3")  # fmt: skip


def check_model_index(path: Path, model_index: dict, key: str) -> None:
    """model_index.json names its pipeline class, and each component it names is a
    [library, class] pair (or [null, null]): anything else fails deep in diffusers."""
    pipeline = model_index.get("_class_name")
    if not isinstance(pipeline, str) or not pipeline:
        raise InputError(
            f"config key '{key}': {path / 'model_index.json'}: key '_class_name': expected the "
            f"pipeline's class name (text), got {pipeline!r}"
        )
    for name in COMPONENTS:
        value = model_index.get(name, [None, None])
        if not (
            isinstance(value, list)
            and len(value) == 2
            and all(v is None or isinstance(v, str) for v in value)
        ):
            raise InputError(
                f"config key '{key}': {path / 'model_index.json'}: key '{name}': expected "
                f'[library, class] (e.g. ["diffusers", "AutoencoderKL"]) or [null, null], got '
                f"{json.dumps(value)}"
            )


def check_components(path: Path, model_index: dict, key: str, required=None) -> None:
    """Each component model_index.json names ([library, class], not null) has its folder,
    not an empty one, and it names each of the pipeline's `required` components (null
    counts: the pipeline is then made without it): one missing fails only when the model
    loads, in the first job."""
    pipeline = model_index["_class_name"]
    missing = [name for name in required or () if name not in model_index]
    if missing:
        raise InputError(
            f"config key '{key}': folder {path} has no {', '.join(missing)}: its "
            f"model_index.json does not name {'it' if len(missing) == 1 else 'them'}, and a "
            f"{pipeline} loads only with {', '.join(required)}; copy the whole model folder"
        )
    for name, value in model_index.items():
        if name.startswith("_") or not isinstance(value, list) or None in value:
            continue
        if not (path / name).is_dir():
            raise InputError(
                f"config key '{key}': folder {path} has no {name}/ folder, which its "
                f"model_index.json names ({value[1]}); copy the whole model folder"
            )
        if not any(f.is_file() for f in (path / name).iterdir()):
            raise InputError(
                f"config key '{key}': folder {path / name} is empty; its model_index.json "
                f"names it ({value[1]}): copy the whole model folder"
            )


def vae_latent_channels(vae: Path, header: dict | None = None) -> int | None:
    """The latent channels a VAE makes: a folder's config.json, or a file's encoder
    output (mean and log-variance: twice the channels); None when it does not say."""
    vae = Path(vae)
    if vae.is_dir():
        try:
            value = json.loads((vae / "config.json").read_text(encoding="utf-8")).get(
                "latent_channels"
            )
        except (OSError, ValueError, AttributeError):
            return None
        return value if isinstance(value, int) else None
    for name, info in (header or {}).items():
        if name.endswith("encoder.conv_out.weight") and isinstance(info, dict):
            shape = info.get("shape") or []
            return shape[0] // 2 if shape and isinstance(shape[0], int) else None
    return None


def check_vae_latents(vae: Path, header: dict | None, model_folder: Path, key: str, spec) -> None:
    """A replacement VAE makes the latents the model's own VAE makes (a FLUX.1 VAE on an
    SDXL model fails at the first decode, after the denoising)."""
    got = vae_latent_channels(vae, header)
    wanted = vae_latent_channels(model_folder / "vae")
    if got and wanted and got != wanted:
        raise InputError(
            f"config key '{key}': {vae} makes latents of {got} channels, and model "
            f"'{spec.name}' ({spec.family}) works in {wanted}: a VAE of another family"
        )


def has_vpred_key(header: dict) -> bool:
    """Real v-prediction SDXL checkpoints carry an (empty) ``v_pred`` tensor as a marker."""
    return "v_pred" in header


def _sha256_stream(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _read_cache(cache_file: Path) -> dict:
    """A missing or unreadable cache is an empty one: it only saves time."""
    try:
        cache = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def _cached_digest(entry: object, stamp: dict) -> str | None:
    """The cached digest while the file's stamp (size, times) still matches, else None."""
    if not isinstance(entry, dict) or any(entry.get(k) != v for k, v in stamp.items()):
        return None
    digest = entry.get("sha256")
    return digest if isinstance(digest, str) else None


def _write_cache(cache_file: Path, cache: dict) -> None:
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_name(f".{cache_file.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(cache, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, cache_file)


def sha_cache(resources_dir: str | Path) -> Path:
    """Where checkpoints' digests are kept between runs."""
    return Path(resources_dir) / "cache" / "sha256.json"


def sha256_file(path: Path, cache_file: Path | None = None) -> str:
    """The file's sha256, streamed (checkpoints are gigabytes).

    With ``cache_file``, a digest is reused while the file's resolved path, size, mtime_ns
    and ctime_ns are unchanged, so a multi-gigabyte checkpoint is hashed once, not per run.
    The ctime is what tells a file replaced by one of the same size whose time was kept
    (`cp -p`, `rsync -a`, `touch -r`): a copy cannot set it.
    Two processes updating the cache at once may drop one entry; it is then recomputed.
    """
    path = Path(path)
    _require_file(path)
    if cache_file is None:
        return _sha256_stream(path)
    cache = _read_cache(Path(cache_file))
    digest, computed = _digest_with(cache, path)
    if computed:
        _write_cache(Path(cache_file), cache)
    return digest


# Not a model's content: notes, licences, sample pictures (a hub repository has them).
_NOT_CONTENT = (".md", ".png", ".jpg", ".jpeg", ".webp", ".gif")


def folder_files(folder: Path) -> list[Path]:
    """A model folder's files that are its content: weights, configs and tokenizer files
    (links followed); names starting with "." (caches, lock files) and notes, licences and
    pictures are left out. In a diffusers folder, only model_index.json and the component
    folders it names: what a trainer leaves beside them (checkpoint-600/, optimizer.bin,
    trainer_state.json) is not what the pipeline loads."""
    folder = Path(folder)
    index = folder / "model_index.json"
    named = None
    if index.is_file():
        try:
            data = json.loads(index.read_text(encoding="utf-8"))
            named = {k for k, v in data.items() if isinstance(v, list) and None not in v}
        except (OSError, ValueError, AttributeError):
            named = None  # unreadable: every file counts
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        only = named if Path(root) == folder else None  # the top: the named components
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (only is None or d in only))
        if only is not None:
            files = [f for f in files if f == "model_index.json"]
        for name in sorted(files):
            suffix = Path(name).suffix.lower()
            if name.startswith(".") or not suffix or suffix in _NOT_CONTENT:
                continue
            found.append(Path(root) / name)
    return found


def sha256_folder(folder: Path, cache_file: Path | None = None) -> str:
    """A model folder's digest: the sha256 of each content file's path in the folder and
    its own sha256 (cached as a single file's), so that a folder written again the same
    keeps its digest and one whose weights changed does not, whatever the files' times."""
    folder = Path(folder)
    cache = _read_cache(Path(cache_file)) if cache_file else {}
    computed = False
    digest = hashlib.sha256()
    for path in folder_files(folder):
        file_digest, new = _digest_with(cache, path)
        computed |= new
        digest.update(f"{path.relative_to(folder).as_posix()}\0{file_digest}\n".encode())
    if computed and cache_file:
        _write_cache(Path(cache_file), cache)
    return digest.hexdigest()


def model_digest(checkpoint: Path, cache_file: Path | None = None) -> str:
    """A single file's sha256, or a model folder's digest (sha256_folder)."""
    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():
        return sha256_folder(checkpoint, cache_file)
    return sha256_file(checkpoint, cache_file)


def _digest_with(cache: dict, path: Path) -> tuple[str, bool]:
    """The file's sha256 from `cache` while its resolved path, size, mtime_ns and
    ctime_ns match, else computed and put in `cache`; and whether it was computed."""
    stat = path.stat()
    key = str(path.resolve())
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ctime_ns": stat.st_ctime_ns}
    digest = _cached_digest(cache.get(key), stamp)
    if digest is not None:
        return digest, False
    digest = _sha256_stream(path)
    cache[key] = {**stamp, "sha256": digest}
    return digest, True
