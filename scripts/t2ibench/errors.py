"""Errors that reach the user as one clear line."""


class InputError(Exception):
    """Bad user input: a config key, a prompt file, a model file.

    The message is a single line that names the key or file and what was
    expected. Entry points print it without a traceback and exit non-zero.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class JobError(Exception):
    """A job stopped for a reason outside the workflow (a full disk, a folder it may not
    write): one line naming the file and the cause, in place of a library traceback."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


# errno -> what the user reads; other errors give the system's own words.
_CAUSES = {
    "ENOSPC": "no space left on the device",
    "EDQUOT": "disk quota exceeded",
    "EACCES": "permission denied",
    "EPERM": "operation not permitted",
    "EROFS": "read-only file system",
    "EIO": "input/output error",
    "ENOENT": "no such file or folder",
}


def os_error_line(err: OSError, fallback_path: str | None = None) -> str:
    """'results/x/p000_i00_s218.png: no space left on the device (ENOSPC)'."""
    import errno

    from t2ibench.io import final_name

    code = errno.errorcode.get(err.errno or 0, "")
    cause = _CAUSES.get(code) or (err.strerror or str(err)).lower()
    path = err.filename or fallback_path or "a file"
    return f"{final_name(path)}: {cause}" + (f" ({code})" if code else "")
