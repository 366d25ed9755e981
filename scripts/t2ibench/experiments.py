"""Experiments: declared grids of cells, each cell a set of generation settings.

An experiment is a YAML file (the catalogue is config/experiments/*.yaml):

    name: shift_sweep
    description: FlowMatch shift
    families: [zimage]          # or models: [name, ...]; default: every model
    variables:                  # axes; the cells are their cartesian product
      shift: [1.0, 2.0, 3.0]
    quick: {num_prompts: 2, images_per_prompt: 1}

An axis is a generation setting with a list of values or a mapping of named values
(`system_prompt: {none: null, painter: "You are ..."}`); an axis with another name is a
compound axis whose named values each set several settings
(`think: {none: {think_block: false}, ...}`); `prompt_sr` is A1111's prompt
search/replace (the first value is searched for, each value replaces it). Instead of
`variables`, `cells` lists the cells explicitly. `settings` fixes settings for every
cell and `prompts` replaces the config's prompt selection. Everything else comes from
the config's `generation` settings.

Light on purpose (no torch): the Snakefile uses it while it is parsed.
"""

from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import yaml

from t2ibench.cells import (
    Cell,
    check_unique_names,
    check_value,
    explicit_cells,
    grid_cells,
)
from t2ibench.config import (
    REPO_ROOT,
    _fill_defaults,
    check_finite,
    check_generation,
    format_schema_error,
    load_schema,
    load_yaml,
)
from t2ibench.errors import InputError
from t2ibench.models import families

CATALOGUE_DIR = REPO_ROOT / "config" / "experiments"
BASELINE = "baseline"
DEFAULT_CELL = "default"
# Folders a results folder holds besides its experiments: names no experiment may take.
RESULTS_FOLDERS = {"quick", "report"}
EXPERIMENT_SCHEMA_PATH = REPO_ROOT / "config" / "experiment-schema.yaml"


def workflow_rule_names() -> set[str]:
    """The names of the workflow's rules (Snakefile and rules/*.smk)."""
    files = [REPO_ROOT / "Snakefile", *sorted((REPO_ROOT / "rules").glob("*.smk"))]
    return {name for path in files for name in re.findall(r"^rule (\w+):", path.read_text(), re.M)}


@functools.cache
def reserved_names() -> frozenset[str]:
    """Names an experiment cannot take: each experiment is also a target rule, and its
    results are a folder beside the results folder's own."""
    return frozenset(workflow_rule_names() | RESULTS_FOLDERS)


@functools.cache
def experiment_schema() -> dict:
    schema = yaml.safe_load(EXPERIMENT_SCHEMA_PATH.read_text(encoding="utf-8"))
    schema["properties"]["families"]["items"] = {"enum": families.names()}
    return schema


QUICK_DEFAULTS = {"num_prompts": 2, "images_per_prompt": 1}


@dataclass
class Experiment:
    name: str
    description: str
    cells: list[Cell]
    axes: list[str]  # variable names, in declared order ([] for the baseline)
    settings: dict = field(default_factory=dict)  # fixed for every cell
    families: list[str] | None = None
    models: list[str] | None = None
    prompts: dict | None = None  # a prompts config replacing the config's
    quick: dict = field(default_factory=dict)
    reference: str = DEFAULT_CELL
    sequential: dict | None = None  # early stopping (t2ibench.rounds), as written
    source: str = "built in"

    @property
    def cell_names(self) -> list[str]:
        return [c.name for c in self.cells]


def baseline() -> Experiment:
    return Experiment(
        BASELINE,
        "Baseline: every model with the config's generation settings.",
        [Cell(DEFAULT_CELL, {})],
        [],
    )


def catalogue() -> list[Path]:
    return sorted(CATALOGUE_DIR.glob("*.yaml"))


def _find(name: str) -> Path:
    if name.endswith((".yaml", ".yml")) or "/" in name:
        path = Path(name)
        if path.is_dir():
            raise InputError(
                f"config key 'experiments': {name} is a folder; expected an experiment "
                ".yaml file (list each one)"
            )
        if not path.is_file():
            raise InputError(f"config key 'experiments': experiment file {name} does not exist")
        return path
    path = CATALOGUE_DIR / f"{name}.yaml"
    if not path.is_file():
        known = [BASELINE] + [p.stem for p in catalogue()]
        raise InputError(
            f"config key 'experiments': unknown experiment '{name}'; expected one of: "
            f"{', '.join(known)} (or a path to an experiment .yaml file)"
        )
    return path


def load_experiment(name: str, quick: bool = False) -> Experiment:
    """The experiment `name` (catalogue name or YAML path), its cells built and checked
    for shape; checks that need the models come in check_experiment."""
    if name == BASELINE:
        exp = baseline()
        exp.quick = dict(QUICK_DEFAULTS)
        return exp
    path = _find(name)
    data = load_yaml(path, kind="experiment file")
    where = f"experiment file {path}"
    errors = sorted(
        jsonschema.Draft202012Validator(experiment_schema()).iter_errors(data),
        key=lambda e: (len(e.absolute_path), str(e.absolute_path)),
    )
    if errors:
        message = format_schema_error(jsonschema.exceptions.best_match(errors))
        raise InputError(f"{where}: {message.replace('config key', 'key')}")
    try:
        check_finite(data)
    except InputError as err:
        raise InputError(f"{where}: {str(err).replace('config key', 'key')}") from None
    if ("variables" in data) == ("cells" in data):
        raise InputError(f"{where}: give either 'variables' (a grid) or 'cells' (a list)")
    if path.parent.resolve() == CATALOGUE_DIR.resolve() and data["name"] != path.stem:
        raise InputError(f"{where}: key 'name' is '{data['name']}'; expected '{path.stem}'")
    if data["name"] in reserved_names():
        raise InputError(
            f"{where}: key 'name': '{data['name']}' is taken by the workflow (a rule or a "
            f"results folder); choose another name (taken: {', '.join(sorted(reserved_names()))})"
        )
    schema = load_schema()
    gen_schema = schema["properties"]["generation"]["properties"]
    settings = data.get("settings", {})
    for key, value in settings.items():
        check_value(where, f"settings.{key}", key, value, gen_schema)
    quick_data = data.get("quick", {})
    variables = data.get("variables")
    if quick_data.get("variables") and variables is None:
        raise InputError(
            f"{where}: key 'quick.variables': the experiment has cells, not variables; "
            "give its quick run fewer cells with variables, or leave quick.variables out"
        )
    if variables is not None:
        cells = grid_cells(where, variables, gen_schema)
        if quick_data.get("variables"):  # checked in every run, used in quick ones
            quick_cells = grid_cells(where, variables, gen_schema, quick_data["variables"])
            cells = quick_cells if quick else cells
        axes = list(variables)
    else:
        cells = explicit_cells(where, data["cells"], gen_schema)
        axes = list(dict.fromkeys(a for c in cells for a in c.values))
    check_unique_names(where, cells)
    both = sorted({k for cell in cells for k in cell.settings} & set(settings))
    if both:
        raise InputError(
            f"{where}: key 'settings.{both[0]}': also set by the cells (a variable or a "
            "cell sets it); set it in one place"
        )
    prompts = None
    if "prompts" in data:
        prompts = copy.deepcopy(data["prompts"])
        prompt_schema = schema["properties"]["prompts"]
        try:
            jsonschema.validate(prompts, prompt_schema)
        except jsonschema.ValidationError as err:
            message = format_schema_error(err).replace("config key '", "key 'prompts.")
            raise InputError(f"{where}: {message}") from None
        _fill_defaults(prompts, prompt_schema)
    exp = Experiment(
        name=data["name"],
        description=data["description"].strip(),
        cells=cells,
        axes=axes,
        settings=settings,
        families=data.get("families"),
        models=data.get("models"),
        prompts=prompts,
        quick={k: v for k, v in quick_data.items() if k != "variables"},
        source=str(path),
        sequential=copy.deepcopy(data.get("sequential")),
    )
    exp.reference = _reference_cell(where, exp, data.get("reference"))
    return exp


def _reference_cell(where: str, exp: Experiment, reference: str | None) -> str:
    """The cell others are compared with: `reference:` if given, else the cell whose
    values are all the defaults (the family's or the config's), else the first."""
    if reference is not None:
        if reference not in exp.cell_names:
            raise InputError(
                f"{where}: key 'reference': no cell named '{reference}'; cells: "
                f"{', '.join(exp.cell_names)}"
            )
        return reference
    defaults: dict[str, list] = {}
    for family in families.all_families():
        for key, value in family.defaults().items():
            defaults.setdefault(key, []).append(value)
    for cell in exp.cells:
        if cell.settings and all(v in defaults.get(k, []) for k, v in cell.settings.items()):
            return cell.name
    return exp.cells[0].name


def model_family_problem(exp: Experiment, family: str) -> str | None:
    """The first setting of the experiment that models of `family` do not support."""
    keys = set(exp.settings)
    for cell in exp.cells:
        keys |= set(cell.settings)
    bad = sorted(k for k in keys if family not in families.families_of(k))
    return bad[0] if bad else None


def _varied(exp: Experiment, key: str) -> bool:
    return any(key in cell.settings for cell in exp.cells)


def select_models(exp: Experiment, model_families: dict[str, str]) -> list[str]:
    """The configured models the experiment applies to, in config order; an error when a
    named model is unknown, none is left, or one cannot take the experiment's settings."""
    where = f"experiment '{exp.name}' ({exp.source})"
    if exp.models:
        unknown = [m for m in exp.models if m not in model_families]
        if unknown:
            raise InputError(
                f"{where}: key 'models': no configured model '{unknown[0]}'; configured: "
                f"{', '.join(model_families)}"
            )
    chosen = [
        name
        for name, family in model_families.items()
        if (not exp.models or name in exp.models) and (not exp.families or family in exp.families)
    ]
    if not chosen:
        wanted = exp.families or exp.models
        raise InputError(
            f"{where}: applies to {', '.join(wanted)} models, and none is configured "
            f"(models: {', '.join(f'{n} ({f})' for n, f in model_families.items())})"
        )
    for name in chosen:
        bad = model_family_problem(exp, model_families[name])
        if bad:
            raise InputError(
                f"{where}: {'varies' if _varied(exp, bad) else 'sets'} '{bad}', which "
                f"{model_families[name]} models do not support "
                f"(model '{name}'); limit the experiment with 'families' or 'models'"
            )
    return chosen


def check_cell_settings(exp: Experiment, generation: dict, max_pixels: int | None = None) -> None:
    for cell in exp.cells:
        merged = {**generation, **exp.settings, **cell.settings}
        where = f"experiment '{exp.name}', cell '{cell.name}': key '"
        check_generation(merged, where, max_pixels)


def load_experiments(names: list[str], quick: bool) -> dict[str, Experiment]:
    experiments: dict[str, Experiment] = {}
    for name in names:
        exp = load_experiment(name, quick)
        if exp.name in experiments:
            raise InputError(f"config key 'experiments': '{exp.name}' is listed twice")
        experiments[exp.name] = exp
    return experiments
