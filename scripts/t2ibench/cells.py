"""The cells of an experiment: each axis's values, their labels and directory names,
the grid of their combinations or the cells listed one by one, each value checked
against the generation schema (t2ibench.experiments reads the file around them).

Light on purpose (no torch): the Snakefile uses it while it is parsed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema

from t2ibench.config import format_schema_error
from t2ibench.errors import InputError

PROMPT_SR = "prompt_sr"
# Generation keys a cell may not vary: seeds pair the images of all cells.
FIXED_KEYS = {"seed", "seeds", "images_per_prompt"}
MAX_LABEL = 40


@dataclass(frozen=True)
class Cell:
    name: str
    settings: dict  # generation keys this cell sets (prompt_sr: [search, replacement])
    values: dict = field(default_factory=dict)  # axis -> the value's label, as shown


def canonical(settings) -> str:
    """Settings as text in which equal numbers are equal (2 and 2.0 are one value)."""

    def numbers(value):
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, dict):
            return {k: numbers(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [numbers(v) for v in value]
        return value

    return json.dumps(numbers(settings), sort_keys=True, default=str)


def check_value(where: str, key_path: str, key: str, value, gen_schema: dict) -> None:
    if key in FIXED_KEYS:
        raise InputError(
            f"{where}: key '{key_path}': '{key}' cannot vary between cells "
            "(every cell uses the same seeds, so images pair up); set it in the config"
        )
    if key not in gen_schema:
        raise InputError(
            f"{where}: key '{key_path}': unknown setting '{key}'; expected one of: "
            f"{', '.join(k for k in gen_schema if k not in FIXED_KEYS)}, {PROMPT_SR}"
        )
    try:
        jsonschema.validate(value, gen_schema[key])
    except jsonschema.ValidationError as err:
        message = format_schema_error(err).split(": ", 1)[1]
        raise InputError(f"{where}: key '{key_path}': {message}") from None


def format_label(value) -> str:
    """A value as shown in cell names and tables: 3.0, -2, none, true, the text."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return str(value)


def slug(label: str) -> str:
    """A label as a directory-name part: letters, digits, '.', '_', '-' only; long
    labels are cut and made unique with a hash of the whole label."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "empty"
    if len(text) > MAX_LABEL:
        digest = hashlib.sha256(label.encode()).hexdigest()[:8]
        text = f"{text[: MAX_LABEL - 9]}-{digest}"
    return text


def _axis_values(
    where: str, axis: str, spec, gen_schema: dict, prefix: str = "variables"
) -> list[tuple[str, dict]]:
    """(label, settings) for each value of one axis (its key: `<prefix>.<axis>`)."""
    key_path = f"{prefix}.{axis}"
    if axis == PROMPT_SR:
        if not isinstance(spec, list) or not all(isinstance(v, str) and v for v in spec):
            raise InputError(
                f"{where}: key '{key_path}': expected a list of non-empty strings "
                "(the first is searched for in each prompt, each value replaces it)"
            )
        out = [(v, {PROMPT_SR: [spec[0], v]}) for v in spec]
    elif axis == "lora" and isinstance(spec, str):
        # A folder of LoRA files (training epochs): one value per file, by stem.
        from t2ibench.lora import folder_files

        files = folder_files(spec, f"{where}: key '{key_path}'")
        out = [(p.stem, {axis: str(p)}) for p in files]
    elif axis in gen_schema or axis in FIXED_KEYS:
        if isinstance(spec, dict):
            items = list(spec.items())
        else:
            items = []
            for i, value in enumerate(spec):
                if isinstance(value, (dict, list)):
                    raise InputError(
                        f"{where}: key '{key_path}[{i}]': a mapping or list value needs a "
                        "name; give the values as a mapping of name: value"
                    )
                label = Path(value).stem if axis == "lora" and value else format_label(value)
                items.append((label, value))
        out = []
        for label, value in items:
            sub = f"{key_path}.{label}" if isinstance(spec, dict) else f"{key_path}[{len(out)}]"
            check_value(where, sub, axis, value, gen_schema)
            out.append((str(label), {axis: value}))
    else:
        if not isinstance(spec, dict) or not all(isinstance(v, dict) for v in spec.values()):
            raise InputError(
                f"{where}: key '{key_path}': unknown setting '{axis}'; a compound axis "
                "needs named values, each a mapping of settings"
            )
        out = []
        for label, settings in spec.items():
            if not settings:
                raise InputError(f"{where}: key '{key_path}.{label}': must not be empty")
            for key, value in settings.items():
                check_value(where, f"{key_path}.{label}.{key}", key, value, gen_schema)
            out.append((str(label), dict(settings)))
    seen: dict[str, str] = {}
    for label, settings in out:
        text = canonical(settings)
        if text in seen:
            raise InputError(
                f"{where}: key '{key_path}': duplicate value {label!r} (same as {seen[text]!r})"
            )
        seen[text] = label
    return out


def grid_cells(
    where: str, variables: dict, gen_schema: dict, quick: dict | None = None
) -> list[Cell]:
    """The cells of `variables`; `quick`, an experiment's quick.variables, replaces the
    values of the axes it names (checked under their own keys)."""
    quick = quick or {}
    for axis in quick:
        if axis not in variables:
            raise InputError(
                f"{where}: key 'quick.variables.{axis}': not a variable of the experiment; "
                f"expected one of: {', '.join(variables)}"
            )
    axes = [
        (axis, _axis_values(where, axis, quick[axis], gen_schema, "quick.variables"))
        if axis in quick
        else (axis, _axis_values(where, axis, spec, gen_schema))
        for axis, spec in variables.items()
    ]
    cells = []
    for combo in itertools.product(*(values for _, values in axes)):
        settings: dict = {}
        values = {}
        for (axis, _), (label, part) in zip(axes, combo, strict=True):
            overlap = set(settings) & set(part)
            if overlap:
                raise InputError(
                    f"{where}: key 'variables.{axis}': sets '{sorted(overlap)[0]}', "
                    "which another axis also sets"
                )
            settings.update(part)
            values[axis] = label
        name = "__".join(f"{axis}-{slug(label)}" for axis, label in values.items())
        cells.append(Cell(name, settings, values))
    return cells


def explicit_cells(where: str, items: list[dict], gen_schema: dict) -> list[Cell]:
    cells = []
    for i, item in enumerate(items):
        item = dict(item)
        name = item.pop("name", None)
        if not item:
            raise InputError(f"{where}: key 'cells[{i}]': sets no setting")
        values = {}
        for key, value in item.items():
            if key == PROMPT_SR:
                raise InputError(
                    f"{where}: key 'cells[{i}].{PROMPT_SR}': use it as a variable axis"
                )
            check_value(where, f"cells[{i}].{key}", key, value, gen_schema)
            if isinstance(value, (dict, list)) and name is None:
                raise InputError(
                    f"{where}: key 'cells[{i}]': a mapping or list value needs the cell "
                    "to have a 'name'"
                )
            values[key] = format_label(value) if not isinstance(value, (dict, list)) else name
        if name is not None and (not isinstance(name, str) or slug(name) != name):
            raise InputError(
                f"{where}: key 'cells[{i}].name': {name!r} is not allowed; expected "
                "letters, digits, '.', '_' or '-'"
            )
        cell_name = name or "__".join(f"{k}-{slug(v)}" for k, v in values.items())
        cells.append(Cell(cell_name, item, values))
    return cells


def check_unique_names(where: str, cells: list[Cell]) -> None:
    seen: dict[str, Cell] = {}
    for cell in cells:
        if cell.name in seen:
            raise InputError(
                f"{where}: two cells would share the directory name '{cell.name}' "
                f"({seen[cell.name].values} and {cell.values}); give the values names "
                "that differ"
            )
        seen[cell.name] = cell
    by_settings: dict[str, str] = {}
    for cell in cells:
        key = canonical(cell.settings)
        if key in by_settings:
            raise InputError(
                f"{where}: cells '{by_settings[key]}' and '{cell.name}' have the same settings"
            )
        by_settings[key] = cell.name
