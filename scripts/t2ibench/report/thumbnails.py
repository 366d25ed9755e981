"""The viewer's image files: one thumbnail and one pixel copy per image (see
t2ibench.report.viewer for what they are), named by a key of the image's path, mtime,
size and the sizes asked for, so a rebuild reuses an unchanged image's files and removes
those no image uses any more; `cache.json` keeps each key's sizes."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from t2ibench.io import write_bytes, write_if_changed

FORMAT_VERSION = 1  # of the thumbnail and pixel-copy files (part of their keys)
THUMB_QUALITY = 80
COPY_QUALITY = 90
LOSSLESS_MAX_PIXELS = 128 * 128
KEY_RE = re.compile(r"^[0-9a-f]{20}$")


@dataclass
class ThumbnailJob:
    """One image file to thumbnail: where it is and the key its outputs are named by."""

    source: Path
    key: str


@dataclass
class Build:
    """What one build collects while it reads the experiments."""

    out_dir: Path
    thumb_size: int
    compare_size: int
    jobs: dict[str, ThumbnailJob] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def image_key(source: Path, results_dir: Path, build: Build) -> str:
    """The name of an image's thumbnail and pixel copy: path, mtime, size and settings."""
    stat = source.stat()
    try:
        name = os.path.relpath(os.path.abspath(source), os.path.abspath(results_dir))
    except ValueError:
        name = os.path.abspath(source)
    text = (
        f"{Path(name).as_posix()}|{stat.st_mtime_ns}|{stat.st_size}|"
        f"{build.thumb_size}|{build.compare_size}|v{FORMAT_VERSION}"
    )
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:20]


def make_images(build: Build, workers: int | None = None) -> dict[str, dict]:
    """Write the thumbnail and pixel copy of every queued image (reusing unchanged ones);
    remove outputs no image refers to. Returns each key's sizes."""
    cache_path = build.out_dir / "cache.json"
    cache = load_cache(cache_path)
    todo = [job for key, job in build.jobs.items() if not outputs_exist(build, key, cache)]
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for job, info in zip(todo, pool.map(lambda j: render_image(j, build), todo), strict=True):
            if info is None:
                build.warnings.append(f"{job.source}: not a readable image; left out")
            else:
                cache[job.key] = info
    sizes = {key: cache[key] for key in build.jobs if key in cache}
    write_if_changed(cache_path, json.dumps(sizes, sort_keys=True, indent=0) + "\n")
    prune(build, set(sizes))
    return sizes


def load_cache(path: Path) -> dict:
    """cache.json's {key: sizes}; empty when missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def thumb_path(build: Build, key: str) -> Path:
    return build.out_dir / "thumbs" / f"{key}.webp"


def pixels_path(build: Build, key: str) -> Path:
    return build.out_dir / "px" / f"{key}.js"


def outputs_exist(build: Build, key: str, cache: dict) -> bool:
    """True when a previous build left this key's sizes, thumbnail and pixel copy."""
    return key in cache and thumb_path(build, key).is_file() and pixels_path(build, key).is_file()


def render_image(job: ThumbnailJob, build: Build) -> dict | None:
    """Write one image's thumbnail and pixel-copy script; its sizes, or None if unreadable."""
    from PIL import Image

    try:
        with Image.open(job.source) as image:
            width, height = image.size
            rgb = as_rgb(image)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    thumb = shrink(rgb, build.thumb_size)
    small = thumb.width * thumb.height <= LOSSLESS_MAX_PIXELS  # shown enlarged: keep it exact
    write_bytes(
        thumb_path(build, job.key), encode_webp(thumb, lossless=small, quality=THUMB_QUALITY)
    )
    copy = shrink(rgb, build.compare_size)
    lossless = copy.width * copy.height <= LOSSLESS_MAX_PIXELS
    data = encode_webp(copy, lossless=lossless, quality=COPY_QUALITY)
    script = (
        f'window.T2I.pixels["{job.key}"]="data:image/webp;base64,'
        f'{base64.b64encode(data).decode("ascii")}";\n'
    )
    write_bytes(pixels_path(build, job.key), script.encode("ascii"))
    return {
        "w": width, "h": height, "tw": thumb.width, "th": thumb.height,
        "pw": copy.width, "ph": copy.height, "lossless": lossless,
    }  # fmt: skip


def as_rgb(image):
    """The image as RGB, or RGBA when it has transparency (loaded into memory)."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB")


def shrink(image, size: int):
    """A copy with the longest side at most `size` (Lanczos); small images are kept."""
    from PIL import Image

    if max(image.size) <= size:
        return image
    copy = image.copy()
    copy.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return copy


def encode_webp(image, *, lossless: bool, quality: int) -> bytes:
    """WebP bytes: lossless (exact pixels) or lossy at `quality`."""
    buffer = io.BytesIO()
    if lossless:
        image.save(buffer, "WEBP", lossless=True, quality=0, method=0)
    else:
        image.save(buffer, "WEBP", quality=quality, method=0)
    return buffer.getvalue()


def prune(build: Build, keep: set[str]) -> None:
    """Remove thumbnails and pixel copies (named by a key) that no image uses any more."""
    for folder, suffix in (("thumbs", ".webp"), ("px", ".js")):
        directory = build.out_dir / folder
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            if path.suffix == suffix and KEY_RE.match(path.stem) and path.stem not in keep:
                path.unlink(missing_ok=True)


def attach_sizes(experiment: dict, sizes: dict[str, dict]) -> None:
    """Give every image its thumbnail, pixel copy and sizes (None when unreadable)."""
    for image in experiment["images"]:
        key = image.pop("key")
        info = sizes.get(key) if key else None
        image["thumb"] = f"thumbs/{key}.webp" if info else None
        image["px"] = key if info else None
        image["size"] = [info["w"], info["h"]] if info else None
        image["copy"] = [info["pw"], info["ph"], info["lossless"]] if info else None


def files_missing(out_dir: str | Path) -> bool:
    """True when a built viewer lacks a file it uses: a thumbnail or pixel copy that
    cache.json names, or one of its scripts and style sheets (removed by hand: the
    viewer's own outputs, index.html and data.js, are still there)."""
    from t2ibench.report.viewer import ASSET_FILES

    out_dir = Path(out_dir)
    if not (out_dir / "index.html").is_file():
        return False  # not built: the viewer job makes it all
    build = Build(out_dir, 0, 0)
    keys = load_cache(out_dir / "cache.json")
    return any(not (out_dir / name).is_file() for name in ASSET_FILES) or any(
        not (thumb_path(build, key).is_file() and pixels_path(build, key).is_file()) for key in keys
    )
