"""Prompt loading: structured JSON sets, .txt files, folders of prompts, paired folders,
GenEval metadata (.jsonl).

Order (stable, documented in docs/prompts.md):
1. sources in the order the config lists them;
2. inside a JSON set, the order of its keys; inside a .txt file, line order;
   inside a folder, file names sorted by code point;
3. then the filters: a prompt whose text an earlier prompt has is left out (with a
   warning: the same text twice makes the same images, two samples of one prompt), then
   `categories`, then `ids` (both keep source order), then `num_prompts` keeps the first N.
A prompt's index (the `p000` of an image name) is its position in the source list
BEFORE the filters: filtering never renumbers prompts, so it never makes an image file
stand for another prompt.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

from t2ibench.errors import InputError

log = logging.getLogger("t2ibench")
_WARNED: set[str] = set()  # each warning once per process (the plan is built per experiment)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str
    category: str
    source: str
    complexity: str = ""
    subjects: tuple[str, ...] = ()
    environment: str = ""
    reference_image: str | None = None
    index: int = 0  # position in the sources, before filters: the p000 of image names
    # GenEval metadata (tag, include, exclude) as canonical JSON; "" for other prompts
    geneval: str = ""


def _read_text(path: Path, strip: bool = True) -> str:
    """The file's text (UTF-8; a byte-order mark is not part of it)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"prompt file {path}: expected UTF-8 text") from None
    return text.strip() if strip else text


class _DuplicateKey(ValueError):
    pass


def _unique_pairs(pairs):
    """A JSON object's pairs as a dict; a key given twice is an error (json keeps the last)."""
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def load_json_set(path: Path) -> list[Prompt]:
    try:
        data = json.loads(_read_text(path, strip=False), object_pairs_hook=_unique_pairs)
    except _DuplicateKey as err:
        raise InputError(
            f"prompt file {path}: key '{err.args[0]}' is given twice in one object "
            "(a prompt id must be unique)"
        ) from None
    except json.JSONDecodeError as err:
        raise InputError(
            f"prompt file {path}: not valid JSON "
            f"({err.msg} at line {err.lineno} column {err.colno})"
        ) from None
    if not isinstance(data, dict):
        raise InputError(f"prompt file {path}: expected an object mapping prompt ids to entries")
    prompts = []
    for pid, entry in data.items():
        if isinstance(entry, str):
            entry = {"text": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
            raise InputError(f"prompt file {path}: entry '{pid}' needs a 'text' string")
        if not entry["text"].strip():
            raise InputError(f"prompt file {path}: entry '{pid}' has an empty 'text'")
        subjects = entry.get("subjects", [])
        if isinstance(subjects, str):
            subjects = [subjects]
        prompts.append(
            Prompt(
                id=str(pid),
                text=entry["text"].strip(),
                category=str(entry.get("category", path.stem)),
                complexity=str(entry.get("complexity", "")),
                subjects=tuple(str(s) for s in subjects),
                environment=str(entry.get("environment", "")),
                source=str(path),
            )
        )
    return prompts


def load_txt_lines(path: Path) -> list[Prompt]:
    """One prompt per non-empty line, but lines starting with `#`; ids are
    `<stem>_<line number>` (the number of the line in the file, blank lines counted)."""
    prompts = []
    for lineno, line in enumerate(_read_text(path, strip=False).splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            prompts.append(
                Prompt(
                    id=f"{path.stem}_{lineno:03d}",
                    text=line.strip(),
                    category=path.stem,
                    source=str(path),
                )
            )
    return prompts


def load_folder(path: Path) -> list[Prompt]:
    """A folder of `.txt` prompts (one per file), optionally paired with images.

    An image `x.png` is paired with `x.txt` (its reference image); an image without
    its `.txt` is an error, since a reference with no prompt cannot be scored.
    """
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    texts = {p.stem: p for p in files if p.suffix.lower() == ".txt"}
    images = {}
    for p in files:
        if p.suffix.lower() in IMAGE_SUFFIXES:
            if p.stem not in texts:
                raise InputError(
                    f"paired image {p}: missing its prompt file {p.with_suffix('.txt')}"
                )
            check_image(p, "paired image")
            images[p.stem] = p
    prompts = []
    for stem, txt in texts.items():
        text = _read_text(txt)
        if not text:
            raise InputError(f"prompt file {txt}: is empty")
        ref = images.get(stem)
        prompts.append(
            Prompt(
                id=stem,
                text=text,
                category=path.name,
                source=str(txt),
                reference_image=str(ref) if ref else None,
            )
        )
    return prompts


def load_source(source: str | Path) -> list[Prompt]:
    path = Path(source)
    if path.is_dir():
        return load_folder(path)
    if not path.exists():
        raise InputError(f"config key 'prompts.sources': {path} does not exist")
    if path.suffix.lower() == ".json":
        return load_json_set(path)
    if path.suffix.lower() == ".txt":
        return load_txt_lines(path)
    if path.suffix.lower() == ".jsonl":
        return load_geneval(path)
    raise InputError(
        f"config key 'prompts.sources': {path} is not a .json set, a .txt file, a GenEval "
        ".jsonl or a folder"
    )


def load_geneval(path: Path) -> list[Prompt]:
    """A GenEval evaluation_metadata.jsonl (GenEval's own, or prompts/geneval.jsonl): one
    prompt per line with its task as category; ids are `<stem>_<line number>`."""
    from t2ibench.geneval.suite import read_metadata

    return [
        Prompt(
            id=f"{path.stem}_{lineno:03d}",
            text=data["prompt"].strip(),
            category=data["tag"],
            source=str(path),
            geneval=json.dumps(
                {k: data[k] for k in ("tag", "include", "exclude") if k in data}, sort_keys=True
            ),
        )
        for lineno, data in read_metadata(path)
    ]


def check_image(path: Path, what: str) -> None:
    """`path` is an image PIL can read (its header and structure; the pixels are decoded
    when a metric reads it). A text file under an image's name, or a cut PNG, fails here,
    before the run, instead of inside a metric job."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as err:  # PIL raises many kinds for a file that is not an image
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise InputError(f"{what} {path}: not a readable image ({reason})") from None


def load_reference_images(folder: str | Path) -> list[str]:
    path = Path(folder)
    if not path.is_dir():
        raise InputError(f"config key 'prompts.reference_images': {path} is not a folder")
    images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise InputError(
            f"config key 'prompts.reference_images': {path} holds no images "
            f"({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    for image in images:
        check_image(image, "reference image")
    return [str(p) for p in images]


def load_prompts(prompts_config: dict) -> list[Prompt]:
    """Load, de-duplicate and filter the prompts described by the `prompts` config."""
    prompts: list[Prompt] = []
    origin: dict[str, str] = {}
    by_text: dict[str, Prompt] = {}
    for source in prompts_config["sources"]:
        for prompt in load_source(source):
            if prompt.id in origin:
                raise InputError(
                    f"duplicate prompt id '{prompt.id}' in {prompt.source} "
                    f"(already defined in {origin[prompt.id]})"
                )
            origin[prompt.id] = prompt.source
            control = next((c for c in prompt.text if ord(c) < 32 and c not in "\t\n\r"), None)
            if control is not None or "\x7f" in prompt.text:
                code = ord(control) if control is not None else 0x7F
                raise InputError(
                    f"prompt '{prompt.id}' in {prompt.source}: its text holds the control "
                    f"character U+{code:04X}; expected printable text"
                )
            index = len(origin) - 1
            first = by_text.setdefault(prompt.text, prompt)
            if first is not prompt:
                _warn_once(
                    f"prompt '{prompt.id}' ({prompt.source}) has the text of '{first.id}' "
                    f"({first.source}): left out (the same text makes the same images; "
                    "counted twice, it would look like two prompts' evidence)"
                )
                continue
            prompts.append(replace(prompt, index=index))
    if prompts_config.get("categories"):
        wanted = set(prompts_config["categories"])
        prompts = [p for p in prompts if p.category in wanted]
    if prompts_config.get("ids"):
        unknown = [i for i in prompts_config["ids"] if i not in origin]
        if unknown:
            raise InputError(f"config key 'prompts.ids': unknown prompt id '{unknown[0]}'")
        wanted = set(prompts_config["ids"])
        prompts = [p for p in prompts if p.id in wanted]
    if prompts_config.get("num_prompts"):
        prompts = prompts[: prompts_config["num_prompts"]]
    if not prompts:
        raise InputError(
            "config key 'prompts': the prompt set is empty after loading "
            f"{', '.join(map(str, prompts_config['sources']))} and applying the filters"
        )
    return prompts


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning("%s", message)


def custom_prompt(text: str) -> Prompt:
    """The one prompt given with `prompt: "..."` (e.g. `--config prompt="a red fox"`)."""
    if not text.strip():
        raise InputError("config key 'prompt': expected a non-empty prompt text")
    return Prompt(id="custom", text=text.strip(), category="custom", source="config key 'prompt'")
