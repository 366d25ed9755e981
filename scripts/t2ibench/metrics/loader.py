"""Decoding images for the metrics: a DataLoader over image files, with worker
processes when decoding is slow enough to pay for them."""

from __future__ import annotations


def open_image(path: str):
    """The image at `path`, decoded, in its own mode (RGB, RGBA, L, P, ...): each scorer's
    transform converts it as its authors' code does (some resize before dropping alpha).
    One that cannot be decoded is an InputError naming it (a file that changed after the
    run checked it)."""
    from PIL import Image

    from t2ibench.errors import InputError

    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except (OSError, ValueError, SyntaxError) as err:  # PIL's ways of saying "not decodable"
        raise InputError(f"image {path}: cannot be decoded ({err})") from None


def open_rgb(path: str):
    """The image at `path` as RGB (see open_image)."""
    return open_image(path).convert("RGB")


class ImageFiles:
    """A map-style dataset of image files: item i is (transform(image i as decoded), i)."""

    def __init__(self, paths: list[str], transform):
        self.paths = paths
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return self.transform(open_image(self.paths[i])), i


# Worker processes pay off only when decoding is slow: each is a fresh Python that
# imports torch (seconds), while a 64 px PNG decodes in well under a millisecond and a
# 1024 px one in about 20 ms. Workers start when the images hold at least this many
# megapixels in all (about 5 s of decoding in one thread) and fill PARALLEL_BATCHES.
PARALLEL_MEGAPIXELS = 250
PARALLEL_BATCHES = 4


def loader_workers(paths: list[str], batch_size: int, workers: int, min_batches: int) -> int:
    """How many DataLoader workers to start for `paths` (0: decode in this process)."""
    import os

    from PIL import Image

    if workers <= 0 or not paths or len(paths) < min_batches * batch_size:
        return 0
    if min_batches > 0:  # judged on the first image's size (a header read)
        with Image.open(paths[0]) as image:
            megapixels = image.width * image.height / 1e6
        if megapixels * len(paths) < PARALLEL_MEGAPIXELS:
            return 0
    batches = -(-len(paths) // batch_size)
    return max(1, min(workers, batches, (os.cpu_count() or 2) - 1))


# Imported once by the forkserver, so that each worker forked from it starts with them.
PRELOAD = [
    "numpy",
    "PIL.Image",
    "torch",
    "torchvision.transforms",
    "open_clip",
    "transformers",
    "t2ibench.metrics.loader",
    "t2ibench.metrics.hf",
    "t2ibench.metrics.fid",
]


def worker_context():
    """The multiprocessing context of the DataLoader workers: "forkserver".

    Snakemake may run this job as a thread of a threaded process, which plain fork would
    copy in a broken state; "spawn" is safe but each worker imports torch and the model
    library afresh (seconds each). A forkserver is a single-threaded process that imports
    PRELOAD once; workers fork from it in milliseconds, and it serves every later job of
    this process too.
    """
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def decoded_batches(
    paths: list[str], transform, batch_size: int, workers: int, min_batches: int = PARALLEL_BATCHES
):
    """Yields (pixels, indices) batches of the images at `paths`, in order.

    A torch DataLoader opens and transforms the images (the transform converts their
    mode), in up to `workers` worker processes when that pays (see loader_workers;
    `min_batches=0` forces them), forked from a forkserver (see worker_context).
    """
    import torch
    from torch.utils.data import DataLoader

    from t2ibench.errors import InputError

    workers = loader_workers(paths, batch_size, workers, min_batches)
    loader = DataLoader(
        ImageFiles(paths, transform),
        batch_size=batch_size,
        num_workers=workers,
        multiprocessing_context=worker_context() if workers else None,
        pin_memory=workers > 0 and torch.cuda.is_available(),
    )
    try:
        yield from loader
    except InputError as err:  # from a worker, torch adds the worker's traceback
        import re

        found = re.findall(r"image \S+: cannot be decoded \(.*?\)(?= |$)", str(err))
        raise InputError(found[-1] if found else str(err)) from None
