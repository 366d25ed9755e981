"""Build CLIP's real BPE tokenizer offline, from the merges that open_clip ships.

The built-in tiny models need a tokenizer that behaves exactly like the one a real SDXL
checkpoint uses (same ids for the same prompt, 77 tokens), and nothing may be downloaded.
open_clip's wheel carries CLIP's merge table, which is all a byte-level BPE tokenizer needs:
the vocabulary follows from it.
"""

import gzip
import importlib.util
import json
from pathlib import Path

CONTEXT_LENGTH = 77
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
# CLIP's vocabulary is 49,408 tokens: 256 byte symbols, the same with "</w>", one per merge,
# then the two special tokens. The merges file holds more lines than that; CLIP uses the first.
VOCAB_SIZE = 49408
N_MERGES = VOCAB_SIZE - 2 * 256 - 2


def _bpe_merges_path() -> Path:
    """Locate open_clip's bundled merges without importing open_clip (that imports torch)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("open_clip_torch is needed to build the CLIP tokenizer")
    return Path(spec.submodule_search_locations[0]) / "bpe_simple_vocab_16e6.txt.gz"


def _byte_symbols() -> list[str]:
    """CLIP's printable stand-in for each of the 256 bytes, in CLIP's vocabulary order.

    Printable bytes stand for themselves and come first; the others are mapped to
    chr(256 + n), in byte order, so that BPE never sees whitespace or control characters.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + n) for n in range(len(others))]


def _read_merges() -> list[str]:
    """The first N_MERGES merge lines, after the '#version' header line."""
    text = gzip.open(_bpe_merges_path()).read().decode("utf-8")
    return text.split("\n")[1 : N_MERGES + 1]


def _vocab(merges: list[str]) -> dict[str, int]:
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols]
    tokens += [merge.replace(" ", "") for merge in merges]
    tokens += [BOS_TOKEN, EOS_TOKEN]
    return {token: i for i, token in enumerate(tokens)}


def _tokenizer_config(pad_token: str) -> dict:
    return {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": CONTEXT_LENGTH,
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "unk_token": EOS_TOKEN,
        "pad_token": pad_token,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": True,
    }


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_clip_tokenizer(out_dir: Path, pad_token: str = EOS_TOKEN) -> None:
    """Write a transformers CLIPTokenizer folder (vocab.json, merges.txt, configs).

    SDXL's first tokenizer pads with "<|endoftext|>"; its second pads with "!" (id 0),
    which is what open_clip pads with. The output is the same bytes on every call.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    merges = _read_merges()
    vocab = _vocab(merges)
    if len(vocab) != VOCAB_SIZE:
        raise ValueError(f"built a CLIP vocabulary of {len(vocab)} tokens, expected {VOCAB_SIZE}")
    _write_json(out_dir / "vocab.json", vocab)
    merges_text = "#version: 0.2\n" + "\n".join(merges) + "\n"
    (out_dir / "merges.txt").write_text(merges_text, encoding="utf-8")
    config = _tokenizer_config(pad_token)
    _write_json(out_dir / "tokenizer_config.json", config)
    special = {key: config[key] for key in ("bos_token", "eos_token", "unk_token", "pad_token")}
    _write_json(out_dir / "special_tokens_map.json", special)
