"""Download a single-file checkpoint by URL (a Hugging Face ``resolve/`` or CivitAI link).

Checkpoints are gigabytes and links break, so the download is written to a hidden
``.<name>.part`` file beside the target, resumed with an HTTP ``Range`` request when run
again, hashed while it is written, and only renamed to its final name once it is complete
and passes the same header checks as any user checkpoint. A reader of ``models_dir`` never
sees a half-written model under a real name. Only ``.safetensors`` is accepted: pickle
formats run code when loaded. Standard library only, so it works before the heavy stack
is installed.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, TextIO

from t2ibench import __version__
from t2ibench.errors import InputError
from t2ibench.io import write_json
from t2ibench.models.checks import read_safetensors_header, sha256_file

CHUNK_BYTES = 1 << 20
SUFFIX = ".safetensors"
SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
HTML_STARTS = (b"<!doctype", b"<html")
USER_AGENT = f"t2ibench/{__version__}"
# RFC 6266: filename*=charset'lang'percent-encoded wins over a plain filename=.
_EXT_FILENAME = re.compile(r"""filename\*\s*=\s*([^']*)'[^']*'([^;\s]+)""", re.IGNORECASE)
_QUOTED_FILENAME = re.compile(r'filename\s*=\s*"((?:[^"\\]|\\.)*)"', re.IGNORECASE)
_TOKEN_FILENAME = re.compile(r"filename\s*=\s*([^;\s\"]+)", re.IGNORECASE)

Progress = Callable[[int, int | None], None]


def download_model(
    url: str,
    models_dir: Path,
    name: str | None = None,
    sha256: str | None = None,
    source_tag: str = "",
    progress: Progress | None = None,
    timeout: float = 60,
) -> Path:
    """Download `url` into `models_dir` and return the checkpoint's final path.

    The name is `name` + ``.safetensors`` when given, else the server's
    Content-Disposition filename, else the URL's last path segment. An existing final
    file is reused when no `sha256` is given or it matches. Every failure is an
    `InputError` with one line; after a dropped connection the ``.part`` file is kept so
    that the same call resumes.
    """
    _check_url(url)
    expected = _check_sha256(sha256)
    models_dir = Path(models_dir)
    if name is not None:
        final = models_dir / _safe_name(name.removesuffix(SUFFIX) + SUFFIX, f"name {name!r}")
        if _reusable(final, expected):
            return final
        response = _open(url, _part_size(final), timeout)
    else:
        response = _open(url, 0, timeout)
        final = models_dir / _safe_name(_served_name(response, url), url)
        if _reusable(final, expected):
            response.close()
            return final
        if _part_size(final):
            response.close()  # the name was only known now: ask again for the missing bytes
            response = _open(url, _part_size(final), timeout)
    with response:
        size, digest = _receive(response, url, _part_path(final), progress)
    _finish(final, url, size, digest, expected, source_tag)
    return final


def _check_url(url: str) -> None:
    """Only web URLs: a ``file:`` or ``ftp:`` URL would bypass every check on the host."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("https", "http") or not parsed.netloc:
        raise InputError(f"{url}: expected an https:// (or http://) download URL")


def _check_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    digest = sha256.strip().lower()
    if not SHA256_HEX.fullmatch(digest):
        raise InputError(f"sha256 {sha256!r}: expected 64 hexadecimal digits")
    return digest


def _safe_name(raw: str, origin: str) -> str:
    """A plain file name inside the models folder, or an error.

    Names come from the server too, so one that points elsewhere (``../x``, ``/etc/x``,
    ``C:\\x``) is refused rather than quietly shortened: it signals a hostile or broken
    link.
    """
    name = raw.strip().replace(" ", "_")
    escapes = "/" in name or "\\" in name or name.startswith(".") or ":" in name
    if not name or escapes:
        raise InputError(f"{origin}: file name {raw!r} is not a plain file name in the folder")
    if not SAFE_NAME.fullmatch(name):
        raise InputError(f"{origin}: file name {raw!r}: expected only A-Z a-z 0-9 . _ -")
    if not name.lower().endswith(SUFFIX):
        raise InputError(
            f"{origin}: file name {raw!r}: expected a .safetensors checkpoint; "
            "only .safetensors is downloaded, because pickles run code on load"
        )
    return name


def _served_name(response: http.client.HTTPResponse, url: str) -> str:
    """The Content-Disposition filename, else the last segment of the final URL's path."""
    disposition = response.headers.get("Content-Disposition", "")
    if match := _EXT_FILENAME.search(disposition):
        charset = match.group(1) or "utf-8"
        try:
            return urllib.parse.unquote(match.group(2), encoding=charset, errors="strict")
        except (LookupError, UnicodeDecodeError):
            raise InputError(f"{url}: undecodable Content-Disposition {disposition!r}") from None
    if match := _QUOTED_FILENAME.search(disposition):
        return re.sub(r"\\(.)", r"\1", match.group(1))
    if match := _TOKEN_FILENAME.search(disposition):
        return match.group(1)
    path = urllib.parse.urlparse(url).path
    return urllib.parse.unquote(path.rsplit("/", 1)[-1])


def _part_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.part")


def _part_size(final: Path) -> int:
    part = _part_path(final)
    return part.stat().st_size if part.is_file() else 0


def _reusable(final: Path, expected: str | None) -> bool:
    """An existing checkpoint is kept, never overwritten: it may be the user's own file."""
    if not final.exists():
        return False
    if expected is None:
        return True
    got = sha256_file(final)
    if got != expected:
        raise InputError(
            f"{final}: already exists with sha256 {got}, expected {expected}; "
            "delete it or choose another name to download again"
        )
    return True


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    """Send the request (with ``Range`` when resuming) and turn failures into one line."""
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and offset:
            # The .part is not a prefix of what the server has now: start again.
            return _open(url, 0, timeout)
        raise InputError(f"{url}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise InputError(f"{url}: cannot connect: {_describe(error.reason)}") from None
    except (OSError, http.client.HTTPException) as error:
        raise InputError(f"{url}: cannot connect: {_describe(error)}") from None


def _describe(error: object) -> str:
    """A short reason; a bare timeout's own message is empty or just 'timed out'."""
    if isinstance(error, TimeoutError):
        return "timed out"
    return str(error) or type(error).__name__


def _resume_offset(response: http.client.HTTPResponse, url: str, part: Path) -> int:
    """Where the response's bytes start: a 206 continues the .part, a 200 restarts it."""
    if response.status != 206:
        return 0
    content_range = response.headers.get("Content-Range", "")
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", content_range)
    offset = part.stat().st_size if part.is_file() else 0
    if not match or int(match.group(1)) != offset:
        raise InputError(
            f"{url}: server resumed at {content_range!r}, expected byte {offset}; "
            f"delete {part} to download from the start"
        )
    return offset


def _expected_total(response: http.client.HTTPResponse, offset: int) -> int | None:
    """The full file size when the server says it, so a short file is never accepted."""
    content_range = response.headers.get("Content-Range", "")
    if response.status == 206 and not content_range.endswith("*"):
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def _refuse_html(response: http.client.HTTPResponse, url: str) -> None:
    """A login or error page served with status 200 is a common result of a bad link."""
    content_type = response.headers.get("Content-Type", "")
    if content_type.split(";")[0].strip().lower() == "text/html":
        raise InputError(f"{url}: served an HTML page (Content-Type {content_type}), not a model")


def _looks_like_html(first: bytes) -> bool:
    return first.lstrip()[:16].lower().startswith(HTML_STARTS)


def _hash_prefix(part: Path, offset: int):
    """The digest must cover the whole file, including bytes an earlier run wrote."""
    digest = hashlib.sha256()
    with part.open("rb") as f:
        while offset and (chunk := f.read(min(CHUNK_BYTES, offset))):
            digest.update(chunk)
            offset -= len(chunk)
    return digest


def _receive(
    response: http.client.HTTPResponse, url: str, part: Path, progress: Progress | None
) -> tuple[int, str]:
    """Stream the body into `part`; return its total size and sha256."""
    _refuse_html(response, url)
    offset = _resume_offset(response, url, part)
    total = _expected_total(response, offset)
    digest = _hash_prefix(part, offset) if offset else hashlib.sha256()
    part.parent.mkdir(parents=True, exist_ok=True)
    with part.open("r+b" if offset else "wb") as out:
        out.truncate(offset)
        out.seek(offset)
        done = _copy(response, out, digest, offset, total, url, part, progress)
    if total is not None and done != total:
        raise InputError(_interrupted(url, part, done, total, "connection closed early"))
    return done, digest.hexdigest()


def _copy(response, out: BinaryIO, digest, done, total, url, part, progress) -> int:
    """Copy chunks, hashing and reporting progress; return the bytes now in `part`."""
    first = done == 0
    while True:
        try:
            # read1 returns what has arrived; read() would drop it all when a timeout hits.
            chunk = response.read1(CHUNK_BYTES)
        except (OSError, http.client.HTTPException) as error:
            raise InputError(_interrupted(url, part, done, total, _describe(error))) from None
        if not chunk:
            return done
        if first and _looks_like_html(chunk):
            out.close()
            part.unlink()
            raise InputError(f"{url}: served an HTML page, not a model")
        first = False
        out.write(chunk)
        digest.update(chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, total)


def _interrupted(url: str, part: Path, done: int, total: int | None, reason: str) -> str:
    of_total = f" of {total}" if total is not None else ""
    return (
        f"{url}: download interrupted after {done}{of_total} bytes ({reason}); "
        f"re-running the same command resumes from {part}"
    )


def _finish(
    final: Path, url: str, size: int, digest: str, expected: str | None, source_tag: str
) -> None:
    """Verify the finished .part, write the sidecar, then give the file its real name."""
    part = _part_path(final)
    if expected is not None and digest != expected:
        part.unlink()
        raise InputError(
            f"{url}: sha256 mismatch: expected {expected}, got {digest}; the download was removed"
        )
    try:
        read_safetensors_header(part)
    except InputError as error:
        part.unlink()
        detail = str(error).removeprefix(f"{part}: ")
        raise InputError(f"{url}: downloaded file refused: {detail}") from None
    record = {
        "url": url,
        "source_tag": source_tag,
        "sha256": digest,
        "size": size,
        "downloaded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(final.with_name(final.name + ".json"), record)
    os.replace(part, final)


def _human(n: float, unit: float, label: str) -> str:
    return f"{n / unit:.1f}" if label != "B" else str(int(n))


def _unit(n: float) -> tuple[float, str]:
    for unit, label in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if n >= unit:
            return unit, label
    return 1, "B"


class ProgressPrinter:
    """A `progress` callback that shows ``name: 45% 1.2/2.6 GB 35.1 MB/s`` on stderr.

    On a terminal it redraws one line with ``\\r`` at most every `interval` seconds; in a
    log file (not a TTY) it writes one line per 10 % so logs stay short.
    """

    def __init__(
        self,
        name: str,
        stream: TextIO | None = None,
        interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.name = name
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.interval = interval
        self.clock = clock
        self._start: tuple[float, int] | None = None
        self._last_time = float("-inf")
        self._last_tenth = -1
        self._open_line = False

    def __call__(self, done: int, total: int | None) -> None:
        now = self.clock()
        if self._start is None:
            self._start = (now, done)  # a resumed prefix does not count towards the speed
        if self._due(now, done, total):
            self._last_time = now
            self._write(self.format(done, total, now))

    def _due(self, now: float, done: int, total: int | None) -> bool:
        finished = total is not None and done >= total
        if self.tty or total is None:
            return finished or now - self._last_time >= self.interval
        tenth = min(10, done * 10 // max(total, 1))
        if tenth > self._last_tenth:
            self._last_tenth = tenth
            return True
        return False

    def format(self, done: int, total: int | None, now: float) -> str:
        start_time, start_done = self._start if self._start is not None else (now, done)
        elapsed = now - start_time
        speed = (done - start_done) / elapsed if elapsed > 0 else 0.0
        speed_unit, speed_label = _unit(speed)
        rate = f"{speed / speed_unit:.1f} {speed_label}/s"
        unit, label = _unit(total if total is not None else done)
        if total is None:
            return f"{self.name}: {_human(done, unit, label)} {label} {rate}"
        percent = done * 100 // max(total, 1)
        amount = f"{_human(done, unit, label)}/{_human(total, unit, label)} {label}"
        return f"{self.name}: {percent}% {amount} {rate}"

    def _write(self, line: str) -> None:
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K")
            self._open_line = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End a redrawn terminal line, so the next message starts on its own line."""
        if self._open_line:
            self.stream.write("\n")
            self.stream.flush()
            self._open_line = False
