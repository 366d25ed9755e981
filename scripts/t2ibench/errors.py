"""Errors that reach the user as one clear line."""


class InputError(Exception):
    """Bad user input: a config key, a prompt file, a model file.

    The message is a single line that names the key or file and what was
    expected. Entry points print it without a traceback and exit non-zero.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
