"""Encoded prompts, kept per loaded pipeline: each (prompt, encoder settings) is encoded
once and reused across seeds and cells.

`install(pipe, size)` wraps the pipeline's `encode_prompt`, which every diffusers
text-to-image pipeline calls from its `__call__`, with a cache keyed on every argument
of the call (the prompts, negative prompts, classifier-free guidance on or off, CLIP
skip, LoRA scale, device, ...) and on the image's LoRAs (`context`, set per image by the
engine: text-encoder LoRAs change the embeddings). A call with tensors or other values
the key cannot hold is not cached. Z-Image's own encoder (t2ibench.models.zimage) asks
the same cache. The first call computes the embeddings exactly as without the cache and
every later one gets copies of them, so the images are the same bit for bit
(tests/test_prompt_cache.py). At most `size` encodings are kept (least recently used
first out; config key memory.prompt_cache, 0 = off), on the device they were made on.
"""

from __future__ import annotations

from collections import OrderedDict

ATTRIBUTE = "_t2ibench_prompts"
_SKIP = object()


class PromptCache:
    def __init__(self, size: int):
        self.size = size
        self.entries: OrderedDict = OrderedDict()
        self.encoded = 0  # encodings computed
        self.reused = 0  # encodings served from the cache
        self.context = ""

    def get(self, key, compute):
        """The encoding of `key` (None: not cacheable), computed once."""
        if key is None or self.size <= 0:
            self.encoded += 1
            return compute()
        full = (self.context, key)
        if full in self.entries:
            self.entries.move_to_end(full)
            self.reused += 1
            return _copy(self.entries[full])
        value = compute()
        self.encoded += 1
        self.entries[full] = value
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return _copy(value)


def _copy(value):
    """Tensors cloned (a pipeline may change what it is given), containers rebuilt."""
    if hasattr(value, "clone"):
        return value.clone()
    if isinstance(value, tuple | list):
        return type(value)(_copy(v) for v in value)
    return value


def _plain(value):
    """`value` as a hashable key part; _SKIP for what a key cannot hold (tensors)."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, tuple | list):
        parts = tuple(_plain(v) for v in value)
        return _SKIP if any(p is _SKIP for p in parts) else parts
    name = type(value).__name__
    if name in ("device", "dtype"):  # torch.device, torch.dtype
        return f"{name}:{value}"
    return _SKIP


def call_key(args: tuple, kwargs: dict):
    parts = tuple(_plain(a) for a in args) + tuple(
        (k, _plain(v)) if _plain(v) is not _SKIP else _SKIP for k, v in sorted(kwargs.items())
    )
    return None if any(p is _SKIP for p in parts) else parts


def install(pipe, size: int) -> PromptCache:
    """Cache `pipe`'s prompt encodings (see the module's doc); returns the cache."""
    cache = PromptCache(size)
    object.__setattr__(pipe, ATTRIBUTE, cache)
    original = getattr(pipe, "encode_prompt", None)
    if callable(original):

        def encode_prompt(*args, **kwargs):
            return cache.get(call_key(args, kwargs), lambda: original(*args, **kwargs))

        object.__setattr__(pipe, "encode_prompt", encode_prompt)
    return cache


def of(pipe) -> PromptCache | None:
    return getattr(pipe, ATTRIBUTE, None)
