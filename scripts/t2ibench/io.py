"""Atomic file writes: a crash or Ctrl-C never leaves a truncated file at a final name.

Files and folders get the modes a plain ``open``/``mkdir`` would give them under the
user's umask (0644 and 0755 under 022), so colleagues on a shared folder can read the
results. (``tempfile.mkstemp`` and ``mkdtemp`` create 0600 and 0700, and a rename keeps
the mode.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path


def _temporary_name(path: Path, suffix: str) -> Path:
    return path.parent / f".{path.name}.{secrets.token_hex(4)}{suffix}"


_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{8}\.(part|staging|old)$")


def final_name(path: str | Path) -> str:
    """The file a temporary name stands for (`.x.png.1a2b3c4d.part` -> `x.png`)."""
    path = Path(path)
    match = _TEMPORARY.match(path.name)
    return str(path.parent / match["name"]) if match else str(path)


def umask_mode(mode: int) -> int:
    """`mode` less the process's umask, for files made by code that ignores it (SQLite).
    Read from /proc where it can be: os.umask changes the mask of every thread to read it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return mode & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mode & ~mask


def _create_file(path: Path) -> Path:
    """A new, empty temporary file beside `path`, mode 0666 less the umask."""
    while True:
        tmp = _temporary_name(path, ".part")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` on a temporary file beside `path`, then rename it into place.

    The rename is atomic on POSIX file systems, so readers see either the old file, no
    file, or the complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_file(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_if_changed(path: str | Path, text: str) -> None:
    """Write a text file unless it already holds `text` (its mtime then stays)."""
    try:
        if Path(path).read_text(encoding="utf-8") == text:
            return
    except (OSError, UnicodeDecodeError):
        pass
    write_text(path, text)


def write_json(path: str | Path, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_csv(frame, path: str | Path) -> None:
    """Write a pandas DataFrame as CSV, atomically."""
    write_text(path, frame.to_csv(index=False))


def write_rows(path: str | Path, rows: list[dict]) -> None:
    """Write dicts as CSV rows (the first row's keys are the header), atomically."""
    import csv
    import io as _io

    buffer = _io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


UNFINISHED = ".unfinished"


def unfinished_mark(output: str | Path) -> Path:
    """The mark of a job that began replacing `output` and has not finished:
    `.<name>.unfinished` beside it (t2ibench.console.logged)."""
    output = Path(output)
    return output.parent / f".{output.name}{UNFINISHED}"


def unfinished_outputs(folder: str) -> list[str]:
    """The outputs in `folder` that a job began replacing and did not finish (marks of
    outputs no longer there are removed). Paths as `folder` spells them."""
    found = []
    directory = Path(folder)
    if not directory.is_dir():
        return found
    for mark in directory.glob(f".*{UNFINISHED}"):
        name = mark.name[1 : -len(UNFINISHED)]
        if (directory / name).exists():
            found.append(f"{folder}/{name}")
        else:
            mark.unlink(missing_ok=True)
    return sorted(found)


MADE = ".made"
MADE_LIMIT = 256 << 20  # larger files (downloaded weights) have checks of their own


def made_mark(output: str | Path) -> Path:
    """What the job that made `output` left: `.<name>.made` beside it, holding the file's
    size, time and sha256 when the job finished (t2ibench.console.logged)."""
    output = Path(output)
    return output.parent / f".{output.name}{MADE}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def settings_digest(settings) -> str:
    """A digest of what a file was made with (a job's settings, as JSON)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def record_made(output: str | Path, settings=None) -> None:
    """Leave the made mark of a file a job has just written (not of large files), with
    the digest of the `settings` it was made with, when given."""
    output = Path(output)
    stat = output.stat()
    if stat.st_size > MADE_LIMIT:
        return
    entry = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": _sha256(output)}
    if settings is not None:
        entry["settings"] = settings_digest(settings)
    write_text(made_mark(output), json.dumps(entry))


def changed_outputs(folder: str, settings: dict | None = None) -> list[str]:
    """The files in `folder` that are no longer what their job made: removed, cut,
    edited or replaced since (by size and time, then by sha256: a file that only got
    another time, a copy or one Snakemake touched, is the same file), or, for a file
    named in `settings` (name -> settings_digest of what it would be made with now), made with
    other settings: Snakemake's record of a job's params is in .snakemake/, which a
    copied or moved results folder does not bring. A mark that cannot be read counts as
    changed. Nothing is written (dry runs call it too). Paths as `folder` spells them."""
    found = []
    directory = Path(folder)
    if not directory.is_dir():
        return found
    for mark in directory.glob(f".*{MADE}"):
        path = directory / mark.name[1 : -len(MADE)]
        try:
            entry = json.loads(mark.read_text(encoding="utf-8"))
            wanted = (settings or {}).get(path.name)
            if wanted is not None and entry.get("settings", wanted) != wanted:
                found.append(f"{folder}/{path.name}")
                continue
            stat = path.stat()
            if (stat.st_size, stat.st_mtime_ns) == (entry["size"], entry["mtime_ns"]):
                continue
            if stat.st_size == entry["size"] and _sha256(path) == entry["sha256"]:
                continue  # only its time changed (Snakemake touches some outputs)
        except (OSError, ValueError, KeyError, TypeError):
            pass
        found.append(f"{folder}/{path.name}")
    return sorted(found)


def staging_dir(folder: str | Path) -> Path:
    """A new empty folder beside `folder` (mode 0777 less the umask) to build it in."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = _temporary_name(folder, ".staging")
        try:
            tmp.mkdir(0o777)
            return tmp
        except FileExistsError:
            continue


def replace_dir(staging: Path, folder: str | Path) -> None:
    """Put the finished `staging` folder at `folder`, replacing what was there.

    Two renames: a reader sees the old folder, then (for a moment) none, then the new
    one, never a mix; a crash between them leaves the old folder under a hidden name.
    """
    folder = Path(folder)
    old = None
    if folder.exists() or folder.is_symlink():
        old = _temporary_name(folder, ".old")
        os.rename(folder, old)
    os.rename(staging, folder)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


@contextlib.contextmanager
def building_dir(folder: str | Path) -> Iterator[Path]:
    """Build a folder in a staging folder; on success it replaces `folder` whole, on an
    error the staging folder is removed and `folder` is left as it was."""
    staging = staging_dir(folder)
    try:
        yield staging
        replace_dir(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
