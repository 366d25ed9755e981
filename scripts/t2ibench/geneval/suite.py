"""GenEval's prompt suite, made by our own code from its task definitions, and the
metadata of each prompt.

`generate_suite(seed=43, per_task=100)` follows GenEval's `prompts/create_prompts.py`
call for call (numpy's `default_rng`, the same draws in the same order, the same
de-duplication), so the default arguments give GenEval's own 553 prompts (80
single_object, 99 two_object, 80 counting, 94 colors, 100 position, 100 color_attr);
tests/test_geneval.py checks the output byte for byte against the sha256 of GenEval's
`evaluation_metadata.jsonl`.

A prompt's metadata (one JSON line of that file): `tag` (the task), `include` (objects
that must be there: `class`, `count`, optional `color`, optional `position`:
[relation, index of the include clause it is relative to]), optional `exclude` (objects
that must not reach `count`), and `prompt`.
"""

from __future__ import annotations

import json
from pathlib import Path

from t2ibench.errors import InputError

# GenEval's object_names.txt: the 80 COCO classes in COCO's order (a detector's label i
# is CLASSES[i]), with GenEval's spellings ("computer mouse", "tv remote", ...).
CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop",
    "computer mouse", "tv remote", "computer keyboard", "cell phone", "microwave", "oven",
    "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)  # fmt: skip
COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
POSITIONS = ("left of", "right of", "above", "below")
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
TASKS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")


def with_article(name: str) -> str:
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def plural(name: str) -> str:
    return f"{name}es" if name[-1] in "s" else f"{name}s"


def _single_objects(rng) -> list[dict]:
    picks = rng.choice(len(CLASSES), size=len(CLASSES), replace=False)
    return [
        {
            "tag": "single_object",
            "include": [{"class": CLASSES[i], "count": 1}],
            "prompt": f"a photo of {with_article(CLASSES[i])}",
        }
        for i in picks
    ]


def _two_objects(rng) -> dict:
    a, b = rng.choice(len(CLASSES), size=2, replace=False)
    return {
        "tag": "two_object",
        "include": [{"class": CLASSES[a], "count": 1}, {"class": CLASSES[b], "count": 1}],
        "prompt": f"a photo of {with_article(CLASSES[a])} and {with_article(CLASSES[b])}",
    }


def _counting(rng, max_count: int = 4) -> dict:
    i = rng.choice(len(CLASSES))
    n = int(rng.integers(2, max_count, endpoint=True))
    return {
        "tag": "counting",
        "include": [{"class": CLASSES[i], "count": n}],
        "exclude": [{"class": CLASSES[i], "count": n + 1}],
        "prompt": f"a photo of {NUMBERS[n]} {plural(CLASSES[i])}",
    }


def _not_person(index) -> int:
    """A draw over the 79 classes but "person" (no "[colour] person" prompts)."""
    return int((index + 1 + CLASSES.index("person")) % len(CLASSES))


def _colors(rng) -> dict:
    i = _not_person(rng.choice(len(CLASSES) - 1))
    color = COLORS[rng.choice(len(COLORS))]
    return {
        "tag": "colors",
        "include": [{"class": CLASSES[i], "count": 1, "color": color}],
        "prompt": f"a photo of {with_article(color)} {CLASSES[i]}",
    }


def _position(rng) -> dict:
    a, b = rng.choice(len(CLASSES), size=2, replace=False)
    relation = POSITIONS[rng.choice(len(POSITIONS))]
    return {
        "tag": "position",
        "include": [
            {"class": CLASSES[b], "count": 1},
            {"class": CLASSES[a], "count": 1, "position": [relation, 0]},
        ],
        "prompt": f"a photo of {with_article(CLASSES[a])} {relation} {with_article(CLASSES[b])}",
    }


def _color_attr(rng) -> dict:
    a, b = (_not_person(i) for i in rng.choice(len(CLASSES) - 1, size=2, replace=False))
    color_a, color_b = (COLORS[i] for i in rng.choice(len(COLORS), size=2, replace=False))
    return {
        "tag": "color_attr",
        "include": [
            {"class": CLASSES[a], "count": 1, "color": color_a},
            {"class": CLASSES[b], "count": 1, "color": color_b},
        ],
        "prompt": (
            f"a photo of {with_article(color_a)} {CLASSES[a]} and "
            f"{with_article(color_b)} {CLASSES[b]}"
        ),
    }


def generate_suite(seed: int = 43, per_task: int = 100) -> list[dict]:
    """GenEval's suite: every class once alone, then `per_task` draws of each other task,
    duplicates dropped (GenEval's defaults: seed 43, 100 per task, 553 prompts)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    samples = _single_objects(rng)
    for make in (_two_objects, _counting, _colors, _position, _color_attr):
        samples += [make(rng) for _ in range(per_task)]
    unique, seen = [], set()
    for sample in samples:
        key = json.dumps(sample, sort_keys=True)
        if key not in seen:
            unique.append(sample)
            seen.add(key)
    return unique


def metadata_lines(samples: list[dict]) -> str:
    """evaluation_metadata.jsonl's text: one JSON object a line, as GenEval writes it."""
    return "".join(json.dumps(sample) + "\n" for sample in samples)


# --- reading metadata ---------------------------------------------------------------------


def check_metadata(data, where: str) -> dict:
    """One prompt's metadata, checked: a known task, known classes and colours, counts
    of at least 1, positions relative to an earlier clause. InputError names `where`."""
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a JSON object with tag, include and prompt")
    if data.get("tag") not in TASKS:
        raise InputError(f"{where}: unknown tag {data.get('tag')!r}; expected one of {TASKS}")
    if not isinstance(data.get("prompt"), str) or not data["prompt"].strip():
        raise InputError(f"{where}: expected a non-empty 'prompt'")
    include = data.get("include")
    if not isinstance(include, list) or not include:
        raise InputError(f"{where}: expected a non-empty 'include' list")
    for kind in ("include", "exclude"):
        clauses = data.get(kind, [])
        if not isinstance(clauses, list):
            raise InputError(f"{where}: '{kind}' must be a list")
        for i, clause in enumerate(clauses):
            _check_clause(clause, f"{where}: {kind}[{i}]", i if kind == "include" else 0)
    return data


def _check_clause(clause, where: str, index: int) -> None:
    if not isinstance(clause, dict):
        raise InputError(f"{where}: expected an object with class and count")
    if clause.get("class") not in CLASSES:
        raise InputError(
            f"{where}: unknown class {clause.get('class')!r}; expected one of GenEval's 80 "
            "COCO classes (e.g. 'dog', 'traffic light', 'computer mouse')"
        )
    count = clause.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise InputError(f"{where}: 'count' must be an integer >= 1, got {count!r}")
    if "color" in clause and clause["color"] not in COLORS:
        raise InputError(f"{where}: unknown color {clause['color']!r}; expected one of {COLORS}")
    if "position" in clause:
        position = clause["position"]
        if (
            not isinstance(position, list | tuple)
            or len(position) != 2
            or position[0] not in POSITIONS
            or not isinstance(position[1], int)
            or not 0 <= position[1] < index
        ):
            raise InputError(
                f"{where}: 'position' must be [relation, index of an earlier include clause] "
                f"with relation one of {POSITIONS}, got {position!r}"
            )


def read_metadata(path: Path) -> list[dict]:
    """The prompts of a GenEval evaluation_metadata.jsonl (ours or GenEval's own)."""
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"prompt file {path}: expected UTF-8 text") from None
    prompts = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"prompt file {path}: line {lineno}: not JSON ({err.msg})") from None
        prompts.append((lineno, check_metadata(data, f"prompt file {path}: line {lineno}")))
    if not prompts:
        raise InputError(f"prompt file {path}: no prompts")
    return prompts
