"""An image's files: its PNG (parameters embedded, byte-identical across re-runs), its
flag, the library versions recorded with it, and the writer thread that writes a job's
images while the job makes the next one."""

from __future__ import annotations

import io
import json
import queue
import threading

from t2ibench import __version__
from t2ibench.infotext import format_infotext


class Writer:
    """Encodes and writes the images of a job on a thread of its own, in order, each
    atomically (t2ibench.io), while the job makes the next one; `close` waits for what
    is queued (at most `depth` images) and raises the first error of a write. Used as a
    context manager, an interrupted job still writes every image it made."""

    def __init__(self, depth: int = 4):
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.written = 0
        self.thread = threading.Thread(target=self._run, name="t2ibench-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            task = self.queue.get()
            if task is None:
                return
            try:
                if self.error is None:
                    task()
                    self.written += 1
            except BaseException as err:  # raised in the job's thread by submit/close
                self.error = err

    def submit(self, task) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(task)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def image_flag(image) -> str:
    """'black' for an all-black image (NaN latents decode to black), else ''.

    Such images are kept, so the run is complete, but flagged and left unscored: a CLIP
    score of a black square would quietly drag a model's mean down.
    """
    bands = image.convert("RGB").getextrema()  # (min, max) per channel
    return "black" if all(high == 0 for _, high in bands) else ""


def library_versions() -> dict:
    import diffusers
    import torch
    import transformers

    return {
        "t2ibench": __version__,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
    }


def encode_png(
    image, settings: dict, model_sha256: str, prediction_reason: str = "", model_hash: bool = True
) -> bytes:
    """The PNG file's bytes, with the parameters as PNG text; no timestamps, so re-runs
    are byte-identical.

    `prediction_reason` says why the prediction type was chosen (config, name, key);
    `model_hash`: the infotext names `model_sha256` as A1111's model hash (a single file's,
    not a folder's digest).
    """
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_itxt("parameters", format_infotext(settings, model_sha256 if model_hash else ""))
    meta = {
        **settings,
        "model_sha256": model_sha256,
        "prediction_type_reason": prediction_reason,
        "versions": library_versions(),
    }
    info.add_itxt("t2ibench", json.dumps(meta, sort_keys=True))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()
