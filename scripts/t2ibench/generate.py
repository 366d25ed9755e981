"""Image generation: load each model once per process, then make images on demand.

Both generation rules reach :class:`Generator`: a per-image job makes one image, a chunk
job (clusters) a list of them, in batches of their batch_size. It keeps a process-wide
cache of loaded pipelines, so a process that runs many jobs loads each model once; the
default profile runs jobs as threads of the main Snakemake process
(`force-use-threads`), which makes that one process for a whole local run. A lock
serialises use of a device: diffusers pipelines and schedulers are not thread-safe.
Where a job runs is t2ibench.devices; how its files are written, t2ibench.writer.

Determinism: the initial noise comes from a CPU ``torch.Generator`` seeded with the
image's seed, so the same seed gives the same latents on any device.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from t2ibench import batching, prompt_cache, speed
from t2ibench.devices import DEVICES, HELD, candidate_devices, place_pipeline
from t2ibench.errors import InputError
from t2ibench.io import write_bytes, write_json
from t2ibench.models import families
from t2ibench.models.registry import ModelSpec
from t2ibench.writer import Writer, encode_png, image_flag, library_versions

log = logging.getLogger("t2ibench")

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


@dataclass
class LoadedModel:
    pipe: object
    scheduler_config: dict
    sha256: str  # a single file's sha256, a folder's digest (checks.model_digest)
    single_file: bool = True  # the sha256 is A1111's model hash
    adapters: dict = field(default_factory=dict)  # LoRA adapters loaded: name -> file


@dataclass
class Progress:
    """Images done in this process, their rate and the time left, logged every few
    seconds. The rate is measured from the first finished image on, so that model
    loading (which comes before it) does not count as generation time."""

    total: int = 0
    done: int = 0
    first_done: float | None = None
    last_report: float = 0.0
    every: float = 5.0

    def step(self) -> None:
        self.done += 1
        now = time.monotonic()
        if self.first_done is None:
            self.first_done = self.last_report = now
        finished = self.done == self.total
        if not finished and (self.done < 2 or now - self.last_report < self.every):
            return
        self.last_report = now
        if self.done > self.total:  # more than the plan said (later rounds): no total
            log.info("generated %d images", self.done)
            return
        total = self.total
        if self.done < 2:
            log.info("generated %d/%d images", self.done, total)
            return
        rate = (self.done - 1) / max(now - self.first_done, 1e-9)
        log.info(
            "generated %d/%d images (%.2f img/s, ~%.0f s left)",
            self.done,
            total,
            rate,
            (total - self.done) / rate,
        )


# Jobs run as threads of one process. Loading a diffusers model patches torch's module
# construction process-wide (accelerate's init_empty_weights), so a model built in another
# thread meanwhile gets empty "meta" weights; and one device runs one model at a time
# anyway. Every step that builds, loads or runs a model holds this lock.
TORCH_LOCK = threading.RLock()


# Set on Ctrl-C. Jobs run as threads, which Snakemake cannot stop: it waits for them. A
# job that makes one image is short; a chunk job checks this between images and stops.
STOP = threading.Event()


def stop_chunks_on_interrupt() -> None:
    """Make Ctrl-C (SIGINT) also set STOP, then do what it did before (raise
    KeyboardInterrupt for Snakemake). Called from the main thread, where the Snakefile is
    read; elsewhere, or where SIGINT is ignored, it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN or getattr(previous, "sets_stop", False):
        return

    def handler(signum, frame):
        STOP.set()
        if _exiting(frame):  # the run is over; its threads are being joined
            return
        if callable(previous):
            previous(signum, frame)
        else:
            signal.default_int_handler(signum, frame)

    handler.sets_stop = True
    signal.signal(signal.SIGINT, handler)


def _exiting(frame) -> bool:
    """The main thread is in Python's exit, waiting for threads (threading._shutdown): a
    KeyboardInterrupt there changes nothing but prints a traceback ("Exception ignored
    in: <module 'threading'>"). Jobs told to stop (STOP) end within an image."""
    while frame is not None:
        if frame.f_code.co_name == "_shutdown" and frame.f_code.co_filename == threading.__file__:
            return True
        frame = frame.f_back
    return False


class Generator:
    """Process-wide pipeline cache plus the generation call."""

    def __init__(self):
        # (model name, checkpoint, device, dtype, memory settings) -> loaded pipeline
        self._models: dict[tuple, LoadedModel] = {}
        self._lock = TORCH_LOCK
        self.load_count = 0
        self.lora_loads = 0
        self.progress = Progress()

    def _acquire(self, spec: ModelSpec, candidates: list[str]):
        loaded_on = {key[2] for key in self._models if key[:2] == (spec.name, spec.checkpoint)}
        return DEVICES.acquire(candidates, loaded_on)

    @contextlib.contextmanager
    def hold_device(self, spec: ModelSpec, device: str):
        """Keep one device for every `generate` call this thread makes inside the block
        (a chunk job: its images run on one device, which loads the model once)."""
        with self._acquire(spec, candidate_devices(device)) as chosen:
            HELD.device = chosen
            try:
                yield chosen
            finally:
                HELD.device = None

    @staticmethod
    def model_key(spec: ModelSpec, device: str, dtype: str, memory: dict, options: dict) -> tuple:
        """What a loaded pipeline is cached by: the model, where, how, its speed options."""
        return (
            spec.name,
            spec.checkpoint,
            device,
            dtype,
            str(sorted(memory.items())),
            str(sorted(options.items())),
        )

    def model(
        self,
        spec: ModelSpec,
        device: str,
        dtype: str,
        sha_cache: Path | None,
        memory: dict,
        options: dict | None = None,
    ) -> tuple[LoadedModel, bool]:
        """The cached pipeline (with the speed `options`, t2ibench.speed), and whether
        this call loaded it."""
        options = options or {}
        key = self.model_key(spec, device, dtype, memory, options)
        if key in self._models:
            return self._models[key], False
        loaded = self._load(spec, device, dtype, sha_cache, memory)
        speed.apply(loaded.pipe, options, device, spec.name)
        self._models[key] = loaded
        return loaded, True

    def _load(self, spec: ModelSpec, device: str, dtype: str, sha_cache: Path | None, memory: dict):
        import torch

        from t2ibench.models.checks import model_digest

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        start = time.perf_counter()
        torch_dtype = getattr(torch, DTYPES[dtype])
        try:
            pipe = families.get(spec.family).load(spec, torch_dtype)
        except (OSError, ValueError) as err:
            if isinstance(err, OSError) and (err.errno is not None or err.filename):
                raise  # the system's (a full disk, a permission): logged() names the file
            # diffusers' and transformers' words on a model they cannot load (a component
            # missing, a null one, another family's folder)
            raise InputError(
                f"model '{spec.name}' ({spec.checkpoint}): it does not load: "
                f"{' '.join(str(err).split())[:400]}"
            ) from None
        # What freshness compares a later run's model with: a single file's sha256 (also
        # the infotext's model hash, as A1111's), a folder's digest of its files.
        sha = model_digest(Path(spec.checkpoint), sha_cache)
        if spec.vae:
            pipe.vae = load_vae(spec, torch_dtype)
        pipe.set_progress_bar_config(disable=True)
        place_pipeline(pipe, device, memory, families.get(spec.family))
        prompt_cache.install(pipe, memory.get("prompt_cache", 256))
        self.load_count += 1
        seconds = time.perf_counter() - start
        log.info(
            "Loading model %s from %s on %s/%s: %.1f s (model loads in this process: %d)",
            spec.name,
            spec.checkpoint,
            device,
            dtype,
            seconds,
            self.load_count,
        )
        return LoadedModel(pipe, dict(pipe.scheduler.config), sha, Path(spec.checkpoint).is_file())

    def generate(
        self,
        spec: ModelSpec,
        settings: dict,
        image_path: str,
        record_path: str,
        device: str,
        sha_cache: Path | None = None,
        memory: dict | None = None,
        writer: Writer | None = None,
    ) -> dict:
        """Make one image and write it (PNG with embedded parameters) plus its record;
        returns the record, with `model_loaded`: whether this call loaded the model.
        With a `writer`, the PNG is encoded and written by its thread while the next
        image is made (the record returned then lacks the PNG's size and sha256).

        On several CUDA devices, concurrent jobs each run on a device of their own (see
        DevicePool); models are built one at a time, and on a single device images are
        made one at a time.
        """
        items = [(settings, image_path, record_path)]
        return self.generate_batch(spec, items, device, sha_cache, memory, writer)[0]

    def generate_batch(
        self,
        spec: ModelSpec,
        items: list[tuple[dict, str, str]],
        device: str,
        sha_cache: Path | None = None,
        memory: dict | None = None,
        writer: Writer | None = None,
        on_written=None,
    ) -> list[dict]:
        """`generate` for (settings, image path, record path) items alike but for prompt
        and seed, made in one call at their batch_size (t2ibench.batching: fewer items
        than that are padded, so each image is the one a full batch makes).
        `on_written(image_path, image, record)` is called after each image is written,
        on the writer's thread when there is one (t2ibench.inline_scores)."""
        settings = items[0][0]
        candidates = candidate_devices(device)
        held = getattr(HELD, "device", None)
        with contextlib.nullcontext(held) if held else self._acquire(spec, candidates) as device:
            with self._lock:
                options = {k: settings[k] for k in speed.DEFAULTS if k in settings}
                loaded, fresh = self.model(
                    spec, device, settings["dtype"], sha_cache, memory or {}, options
                )
            # One device: hold the lock while making the image too (one model at a time).
            with self._lock if len(candidates) == 1 else contextlib.nullcontext():
                self._use_loras(loaded, settings, (memory or {}).get("max_loras", 8))
                cache = prompt_cache.of(loaded.pipe)
                if cache is not None:  # text-encoder LoRAs change the embeddings
                    cache.context = json.dumps(settings.get("loras") or [], sort_keys=True)
                images, seconds = self._run(loaded, [s for s, _, _ in items], device)
        family = families.get(spec.family)
        records = []
        for (row, image_path, record_path), image in zip(items, images, strict=True):
            tokens = family.count_tokens(loaded.pipe, row["prompt"])
            record = {
                "settings": row,
                "image_flag": image_flag(image),
                "generation_seconds": round(seconds / len(items), 4),
                "prompt_tokens": tokens,
                "prompt_truncated": tokens > family.token_limit(loaded.pipe, row),
                "model_sha256": loaded.sha256,
                "device": device,
                "versions": library_versions(),
            }
            write = functools.partial(
                self._write,
                image,
                record,
                image_path,
                record_path,
                spec.prediction_reason,
                on_written,
                loaded.single_file,
            )
            if writer is None:
                write()
            else:
                writer.submit(write)
            records.append({**record, "model_loaded": fresh})
        return records

    def _write(
        self,
        image,
        record: dict,
        image_path: str,
        record_path: str,
        reason: str,
        on_written=None,
        model_hash: bool = True,
    ):
        png = encode_png(image, record["settings"], record["model_sha256"], reason, model_hash)
        # What a later run checks the PNG against (t2ibench.freshness).
        done = {**record, "png_bytes": len(png), "png_sha256": hashlib.sha256(png).hexdigest()}
        # The record first, the image last: an existing PNG means a finished image.
        write_json(record_path, done)
        write_bytes(image_path, png)
        self.progress.step()
        if on_written is not None:
            on_written(image_path, image, done)

    def _use_loras(self, loaded: LoadedModel, settings: dict, keep: int) -> None:
        """The image's LoRAs active on the loaded model, no others (t2ibench.lora); at most
        `keep` (memory.max_loras) stay loaded."""
        from t2ibench import lora

        fresh = lora.apply(loaded.pipe, settings.get("loras", []), loaded.adapters, keep)
        if fresh:
            self.lora_loads += fresh
            log.info("LoRA adapters loaded in this process: %d", self.lora_loads)

    @staticmethod
    def _run(loaded: LoadedModel, rows: list[dict], device: str):
        """(images, seconds) of one generation call on `device`: one image, or a batch
        padded to its batch_size (the padding's images are dropped)."""
        import torch

        pipe = loaded.pipe
        family = families.get(rows[0]["family"])
        start = time.perf_counter()
        if batching.size_of(rows[0]) == 1 and len(rows) == 1:
            images = [family.make_image(pipe, loaded.scheduler_config, rows[0], device)]
        else:
            made = family.make_images(pipe, loaded.scheduler_config, batching.padded(rows), device)
            images = list(made)[: len(rows)]
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return images, time.perf_counter() - start


def load_vae(spec: ModelSpec, torch_dtype):
    """The model's replacement VAE: a diffusers folder, or a single file read with the
    model's own VAE config (offline)."""
    from diffusers import AutoencoderKL

    if Path(spec.vae).is_dir():
        return AutoencoderKL.from_pretrained(
            spec.vae, dtype=torch_dtype, local_files_only=True, use_safetensors=True
        )
    return AutoencoderKL.from_single_file(
        spec.vae,
        config=spec.config_dir or spec.checkpoint,
        subfolder="vae",
        torch_dtype=torch_dtype,
        local_files_only=True,
    )


GENERATOR = Generator()
