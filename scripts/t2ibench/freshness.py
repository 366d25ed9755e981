"""What is left to make: one answer per planned image.

:meth:`Freshness.state` says, for an image of the plan, one of

``done``
    the PNG and its record (the ``.json`` beside it) are there, the record's settings
    are the plan's, the model's files are not newer than the image, and the PNG is the
    one the record describes: the same size, and the same sha256 when asked to verify
    (always in ``analyze``) or when the PNG is newer than its record (written over after
    it was made: the record is written, and touched by Snakemake, after its PNG);
``missing``
    no PNG at the image's path;
``outdated``
    a PNG is there, but it is not the image the plan asks for; the reason says why:
    its settings changed, the model is newer, its content is not the one recorded, it
    has no record, or its record or the PNG cannot be read.

Everything that decides what to make asks this module: the per-image rule and the
chunk jobs (which images to make), the image list (which images the tables cover),
``cli.py plan`` and the start-up summary. The checks read a file's metadata and the
small JSON record; the PNG itself is read only to verify its sha256, or for an image
without a record, its first and last bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from t2ibench.plan import ImageJob, Plan

DONE, MISSING, OUTDATED = "done", "missing", "outdated"

SETTINGS_CHANGED = "settings changed"
MODEL_NEWER = "model files newer than the image"
MODEL_CHANGED = "model weights changed (sha256 differs from the image's record)"
CONTENT_CHANGED = "content not the one recorded"
NO_RECORD = "no record (made elsewhere)"
RECORD_UNREADABLE = "record unreadable"
UNREADABLE = "not a complete PNG"

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk every PNG ends with


@dataclass(frozen=True)
class ImageState:
    state: str  # DONE, MISSING or OUTDATED
    reason: str = ""  # for OUTDATED: why (a constant above, with details)

    @property
    def done(self) -> bool:
        return self.state == DONE

    @property
    def todo(self) -> bool:
        return self.state != DONE

    @property
    def scorable(self) -> bool:
        """Its pixels can be scored as the image the plan names: done, or a complete PNG
        made elsewhere (no record), which `analyze` scores as it is."""
        return self.state == DONE or self.reason == NO_RECORD

    def __str__(self) -> str:
        return f"{self.state} ({self.reason})" if self.reason else self.state


_SHA_LOCK = threading.Lock()
_SHA: dict[tuple, str] = {}


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, remembered in this process while its size, mtime and
    inode are unchanged (the image list and every metric job ask for the same images)."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    with _SHA_LOCK:
        if key in _SHA:
            return _SHA[key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    with _SHA_LOCK:
        _SHA[key] = digest.hexdigest()
    return _SHA[key]


def is_complete_png(path: str | Path, size: int) -> bool:
    """The PNG signature at the start and the IEND chunk at the end: a cut file, or
    another format under a .png name, fails."""
    if size < len(PNG_SIGNATURE) + len(PNG_END):
        return False
    with open(path, "rb") as handle:
        head = handle.read(len(PNG_SIGNATURE))
        handle.seek(size - len(PNG_END))
        return head == PNG_SIGNATURE and handle.read() == PNG_END


def decodes(path: str | Path) -> bool:
    """The image decodes in full (PIL)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
        return True
    except Exception:  # PIL raises many kinds for a damaged file
        return False


# A PNG this much newer than its record was written after it. Generation writes a PNG
# and its record within milliseconds (the record last when Snakemake touches a job's
# outputs); the margin covers file systems with coarse times.
WRITTEN_AFTER_NS = 1_000_000_000


def newer_than_record(image: os.stat_result, record_path: Path) -> bool:
    """The PNG was written (or touched) after its record: its content is checked. A file
    written over with other bytes of the same size is found at once; a PNG only touched,
    or copied back, is read and kept."""
    try:
        return image.st_mtime_ns > record_path.stat().st_mtime_ns + WRITTEN_AFTER_NS
    except OSError:
        return True


def changed_keys(recorded: dict, planned: dict) -> list[str]:
    keys = sorted(set(recorded) | set(planned))
    return [k for k in keys if recorded.get(k, "<unset>") != planned.get(k, "<unset>")]


class Freshness:
    """The state of each planned image. `verify`: check each PNG's sha256 against its
    record (reads every image; `analyze` and the image list always do). `listed`: the
    paths of the experiments' current image lists; a finished image missing from its
    experiment's list (left out when the list was made: its content had changed) is
    verified too, so that it is found and made again. States are computed once per
    instance: make a new one to see files that changed since."""

    def __init__(self, plan: Plan, verify: bool = False, listed: dict[str, set] | None = None):
        self.plan = plan
        self.verify = verify
        self.listed = listed or {}
        self._model_mtime: dict[str, float] = {}
        self._model_sha: dict[str, str] = {}
        self._parts_mtime: dict[str, float] = {}
        self._states: dict[ImageJob, ImageState] = {}
        self.mtime: dict[ImageJob, float] = {}  # the PNG's mtime, for images that exist
        self.sha: dict[ImageJob, str] = {}  # the recorded png_sha256 of finished images

    def model_mtime(self, model: str) -> float:
        """The newest of the model's weights files: the checkpoint (a diffusers folder's
        model_index.json) and its VAE; not the shared SDXL config folder, which is made
        again, the same, whenever resources/ is cleaned. 0 for files not there yet: a
        model made in this run outdates nothing until it is there."""
        if model not in self._model_mtime:
            spec = self.plan.models[model]
            files = [
                f for f in spec.input_files if not (spec.shared_config and f == spec.config_dir)
            ]
            times = [os.stat(f).st_mtime for f in files if os.path.exists(f)]
            self._model_mtime[model] = max(times, default=0.0)
        return self._model_mtime[model]

    def model_changed(self, model: str, record: dict, image_mtime: float) -> str:
        """Why the model is not the one the image was made with, or "".

        A checkpoint whose digest the record names, a single file's sha256 or a folder's
        digest of its files (models.checks.model_digest), is compared by content (each
        file's digest is cached by path, size and times, so it is read again only when the
        file's stat changed): weights swapped for others, even with an older time (`cp
        -p`, `rsync -a`, a tar), outdate the image; a file touched, copied unchanged or a
        built-in folder made again the same does not. A separate VAE, and records without
        a digest (folders' records before they had one), are compared by time.
        """
        spec = self.plan.models[model]
        recorded = record.get("model_sha256")
        if recorded and self._checkpoint_there(spec):
            if self.model_sha(model) != recorded:
                return MODEL_CHANGED
            # the checkpoint matched: the VAE's time counts, and the newest file of a
            # single file's own config folder (an SD3 or FLUX.1 one holds weights)
            return MODEL_NEWER if self.parts_mtime(model) > image_mtime else ""
        return MODEL_NEWER if self.model_mtime(model) > image_mtime else ""

    def parts_mtime(self, model: str) -> float:
        """The newest time of a model's parts besides its checkpoint: its VAE, and the
        files of a `config` folder given with it (not the shared base config a rule
        makes); 0 when it has none."""
        if model not in self._parts_mtime:
            from t2ibench.models.checks import folder_files

            spec = self.plan.models[model]
            config = spec.config_dir if not spec.shared_config else None
            parts = []
            for path in (Path(p) for p in (spec.vae, config) if p):
                parts += folder_files(path) if path.is_dir() else [path]
            times = [p.stat().st_mtime for p in parts if p.exists()]
            self._parts_mtime[model] = max(times, default=0.0)
        return self._parts_mtime[model]

    def _moved(self, model: str, record: dict, made_with: dict, planned: dict) -> bool:
        """Only the model's source differs, and its weights are the ones the image was
        made with (the recorded digest): a checkpoint moved or copied elsewhere."""
        if changed_keys(made_with, planned) != ["model_source"]:
            return False
        recorded = record.get("model_sha256")
        spec = self.plan.models[model]
        return bool(recorded) and self._checkpoint_there(spec) and self.model_sha(model) == recorded

    @staticmethod
    def _checkpoint_there(spec) -> bool:
        """A file, or a folder with its model_index.json (a built-in not made yet is not)."""
        path = Path(spec.checkpoint)
        return path.is_file() or (path / "model_index.json").is_file()

    def model_sha(self, model: str) -> str:
        """The checkpoint's digest (read once per instance, cached across runs)."""
        from t2ibench.models.checks import model_digest, sha_cache

        if model not in self._model_sha:
            cache = sha_cache(self.plan.config["resources_dir"])
            spec = self.plan.models[model]
            self._model_sha[model] = model_digest(Path(spec.checkpoint), cache)
        return self._model_sha[model]

    def state(self, job: ImageJob) -> ImageState:
        if job not in self._states:
            self._states[job] = self._state(job)
        return self._states[job]

    def _state(self, job: ImageJob) -> ImageState:
        image = Path(self.plan.path(job))
        try:
            stat = image.stat()
        except (FileNotFoundError, NotADirectoryError):  # a file where a folder goes
            return ImageState(MISSING)
        if not image.is_file():
            return ImageState(OUTDATED, f"{UNREADABLE}: not a file")
        self.mtime[job] = stat.st_mtime
        record_path = image.with_suffix(".json")
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
            made_with = record["settings"]
            if not isinstance(made_with, dict):
                raise TypeError
        except FileNotFoundError:
            if not is_complete_png(image, stat.st_size) or (self.verify and not decodes(image)):
                return ImageState(OUTDATED, UNREADABLE)
            return ImageState(OUTDATED, NO_RECORD)
        except (ValueError, KeyError, TypeError, OSError):
            return ImageState(OUTDATED, RECORD_UNREADABLE)
        planned = json.loads(json.dumps(self.plan.settings(job)))
        if made_with != planned and not self._moved(job.model, record, made_with, planned):
            changed = changed_keys(made_with, planned)
            return ImageState(OUTDATED, f"{SETTINGS_CHANGED}: {', '.join(changed[:4])}")
        changed = self.model_changed(job.model, record, stat.st_mtime)
        if changed:
            return ImageState(OUTDATED, changed)
        size, sha = record.get("png_bytes"), record.get("png_sha256")
        if size is not None and size != stat.st_size:
            return ImageState(OUTDATED, f"{CONTENT_CHANGED}: its size differs")
        verify = self.verify or self._left_out(job) or newer_than_record(stat, record_path)
        if verify:
            if sha is not None and sha != file_sha256(image):
                return ImageState(OUTDATED, f"{CONTENT_CHANGED}: its sha256 differs")
            if sha is None and not decodes(image):  # a record older than png_sha256
                return ImageState(OUTDATED, UNREADABLE)
        self.sha[job] = sha or ""
        return ImageState(DONE)

    def _left_out(self, job: ImageJob) -> bool:
        listed = self.listed.get(job.experiment)
        return listed is not None and self.plan.path(job) not in listed

    def todo(self, jobs: list[ImageJob]) -> list[ImageJob]:
        return [j for j in jobs if self.state(j).todo]

    def states(self, experiment: str | None = None) -> dict[ImageJob, ImageState]:
        return {j: self.state(j) for j in self.plan.jobs if experiment in (None, j.experiment)}


def read_image_lists(plan: Plan, analysis_dir: str) -> dict[str, set]:
    """The paths in each experiment's current image list (experiments without one are
    left out)."""
    lists = {}
    for experiment in plan.experiments:
        path = Path(analysis_dir) / experiment / "images.txt"
        try:
            lists[experiment] = set(path.read_text(encoding="utf-8").splitlines())
        except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
            continue
    return lists


def reason_counts(states) -> Counter:
    """How many images are outdated for each reason (details after ':' dropped)."""
    return Counter(s.reason.split(":")[0] for s in states if s.state == OUTDATED)


def describe(states) -> str:
    """'12 missing, 30 outdated (28 settings changed, 2 content not the one recorded)'."""
    states = list(states)
    missing = sum(s.state == MISSING for s in states)
    outdated = reason_counts(states)
    parts = []
    if missing:
        parts.append(f"{missing} missing")
    if outdated:
        why = ", ".join(f"{n} {reason}" for reason, n in outdated.most_common())
        parts.append(f"{sum(outdated.values())} outdated ({why})")
    return ", ".join(parts) or "none"
