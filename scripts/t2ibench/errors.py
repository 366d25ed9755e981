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


class Stopped(Exception):
    """A job stopped on Ctrl-C between images: one line saying how far it got; what it
    made is complete, and the next run makes the rest."""


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

    if err.errno is None and err.filename is None:
        # A library's own OSError (diffusers: "Error no file named config.json found in
        # directory ..."): its words as they are, not blamed on the file being written.
        where = f"while making {final_name(fallback_path)}" if fallback_path else "error"
        return f"{where}: {' '.join(str(err).split())}"
    code = errno.errorcode.get(err.errno or 0, "")
    cause = _CAUSES.get(code) or (err.strerror or str(err)).lower()
    path = err.filename or fallback_path or "a file"
    return f"{final_name(path)}: {cause}" + (f" ({code})" if code else "")
