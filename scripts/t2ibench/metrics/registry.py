"""The metrics the workflow knows: one entry (`Metric`) each.

An entry says everything the rest of the workflow needs of a metric: its name (its
table is ``results/<experiment>/metrics/<name>.csv``), its granularity (per image, per
(model, cell, prompt), or per set of images), the columns it gives with which way is
better, its config section under ``metrics:`` (the keys and defaults, which the config
schema takes from here), the weight files it reads and where to get them, its built-in
tiny models, and how its table is made. Tables, summaries, comparisons, plots, the
viewer, the config checks and the report's captions all read these entries; nothing
else lists metrics.

The built-in metrics are in t2ibench.metrics.catalogue. A metric of one's own is a
Python file or module named in the config's ``metric_plugins`` list that calls
``register(Metric(...))`` when imported (docs/adding-a-metric.md).

Model values ``builtin:tiny-...`` are tiny models with seeded random weights, written on
first use under ``<resources_dir>/models/metrics/`` in the real on-disk format and then
loaded by the real loading code: they make the demo and the tests run offline, and their
scores mean nothing.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from t2ibench.errors import InputError
from t2ibench.io import staging_dir

log = logging.getLogger(__name__)

GRANULARITIES = ("image", "prompt", "set")
# The keys a table of each granularity is merged on (a set table is not merged).
MERGE_KEYS = {"image": ["image_path"], "prompt": ["model", "cell", "prompt_index"]}
DEVICE_SETTING = {
    "type": "string",
    "pattern": "^(|auto|cpu|mps|cuda(:[0-9]+)?)$",
    "default": "",
}


@dataclass(frozen=True)
class Column:
    """A value column a metric gives: its name and which way is better. A column with
    ``summarised=False`` is a fact about the score (e.g. the prompt was cut to fit the
    model) that results.csv carries but summaries, comparisons and plots leave out."""

    name: str
    higher_is_better: bool = True
    note: str = ""  # beside the axis label: "lower = closer to the reference"
    summarised: bool = True
    verdict: bool = False  # 1 passed, 0 failed: the viewer can show only the failures


@dataclass(frozen=True)
class WeightFile:
    """A config key of the metric's section that names weights.

    ``what`` is what the key must name; ``source`` where to get it (said when the file is
    missing). ``folder`` lists files one of which a folder must hold; a folder key may
    also be a Hub id already in the local Hugging Face cache. Empty values and
    ``builtin:`` values are not checked.
    """

    key: str
    what: str
    source: str = ""
    folder: tuple[str, ...] = ()


@dataclass(frozen=True)
class Metric:
    """One metric. ``table(plan, experiment, jobs, cache_path)`` returns its table over
    the experiment's listed images (``jobs``): for ``image`` metrics one row per image
    with ``image_path`` and the columns; for ``prompt`` metrics one row per (model, cell,
    prompt_index) with the columns; for ``set`` metrics a table of its own."""

    name: str
    granularity: str
    columns: tuple[Column, ...]
    summary: str  # one sentence: what it measures (report page, captions, docs)
    table: Callable
    section: str = ""  # its config section under `metrics:`; empty means `name`
    settings: Mapping = field(default_factory=dict)  # JSON-schema properties besides `enabled`
    files: tuple[WeightFile, ...] = ()
    builtins: Mapping[str, Callable[[Path], None]] = field(default_factory=dict)
    uses: tuple[str, ...] = ()  # other sections whose models it uses
    # Metrics whose tables are made first (this one reads their cached values); a metric
    # may share the config section of one it comes after.
    after: tuple[str, ...] = ()
    enabled_by_default: bool = True
    # Checks of its section the schema cannot say (raise InputError), when it is on.
    check: Callable[[dict], None] | None = None
    # Why its numbers mean nothing (random weights), or "": given the `metrics` config,
    # asked when its section is in use.
    demo: Callable[[dict], str] | None = None
    # For an image metric scored against the prompt: `scorer(plan)` builds its
    # PromptImageScorer (t2ibench.metrics.base), which lets generation jobs score images
    # in memory (metrics.score_in_generation, t2ibench.inline_scores).
    scorer: Callable | None = None

    def __post_init__(self):
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"metric {self.name}: granularity must be one of {GRANULARITIES}")
        if not self.section:
            object.__setattr__(self, "section", self.name)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def section_schema(self) -> dict:
        """The JSON schema of its config section (config.load_schema puts it in place)."""
        return {
            "type": "object",
            "additionalProperties": False,
            "default": {},
            "description": self.summary,
            "properties": {
                "enabled": {"type": "boolean", "default": self.enabled_by_default},
                **self.settings,
            },
        }

    def demo_reason(self, metrics_config: dict) -> str:
        if self.demo is not None:
            return self.demo(metrics_config)
        builtin = [k for k, v in metrics_config[self.section].items() if is_builtin(v)]
        return f"{self.name} uses a tiny random model" if builtin else ""


_REGISTRY: dict[str, Metric] = {}
SHARED_KEYS = ("device", "workers", "score_in_generation")  # `metrics.<key>`: not sections
_LOADED = False


def _entries() -> dict[str, Metric]:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        importlib.import_module("t2ibench.metrics.catalogue")
    return _REGISTRY


def register(metric: Metric) -> Metric:
    """Add a metric (or replace the one of that name: a plugin imported again)."""
    entries = _entries()
    owner = next((m for m in entries.values() if m.section == metric.section), None)
    if owner is not None and owner.name != metric.name and owner.name not in metric.after:
        raise ValueError(
            f"metric {metric.name}: config section '{metric.section}' is {owner.name}'s"
        )
    if metric.section in SHARED_KEYS:
        raise ValueError(f"metric {metric.name}: 'metrics.{metric.section}' is a shared key")
    entries[metric.name] = metric
    return metric


def unregister(name: str) -> None:
    _entries().pop(name, None)


def all_metrics() -> list[Metric]:
    """Every metric, in table order (the catalogue's, then plugins' in import order)."""
    return list(_entries().values())


def get(name: str) -> Metric:
    try:
        return _entries()[name]
    except KeyError:
        raise InputError(f"unknown metric '{name}'; known: {', '.join(_entries())}") from None


def names() -> list[str]:
    return list(_entries())


def sections() -> list[str]:
    return list(dict.fromkeys(m.section for m in _entries().values()))


def section_schemas() -> dict[str, dict]:
    """`metrics.<section>` schemas; a section shared by several metrics is the first's."""
    schemas: dict[str, dict] = {}
    for metric in _entries().values():
        schemas.setdefault(metric.section, metric.section_schema())
    return schemas


def section_in_use(metrics_config: dict, section: str) -> bool:
    """True when the section's metric, or a metric that uses its model, is enabled."""
    users = [m.section for m in _entries().values() if section in m.uses]
    return any(metrics_config.get(s, {}).get("enabled") for s in [section, *users])


def enabled(metrics_config: dict) -> list[str]:
    """The enabled metrics, in table order."""
    return [m.name for m in _entries().values() if metrics_config[m.section]["enabled"]]


def metric_params(metrics_config: dict, metric: str) -> dict:
    """The config a metric's table depends on: its section and the sections it uses."""
    entry = get(metric)
    params = {
        s: {k: v for k, v in metrics_config[s].items() if k != "enabled"}
        for s in [entry.section, *entry.uses]
    }
    params["device"] = metrics_config["device"]
    return params


def device_of(section: dict, metrics_config: dict, default_device: str) -> str:
    """A metric's device: its own, else `metrics.device`, else the top-level `device`."""
    from t2ibench.devices import resolve_device

    return resolve_device(section.get("device") or metrics_config["device"] or default_device)


# --- columns --------------------------------------------------------------------------


def columns(granularity: str) -> list[str]:
    """The summarised results.csv columns of every metric of a granularity (image or
    prompt): the values summaries, comparisons, plots and the viewer show."""
    return [
        c.name
        for m in _entries().values()
        if m.granularity == granularity
        for c in m.columns
        if c.summarised
    ]


def column_facts(wanted=None) -> dict[str, dict]:
    """Per summarised value column: its metric, granularity, direction, note, summary and
    whether it is a verdict (the facts metadata.json records, read back)."""
    facts = facts_of(describe(names())) if _entries() else {}
    return {k: v for k, v in facts.items() if wanted is None or k in wanted}


def describe(metric_names) -> dict[str, dict]:
    """What metadata.json records of the metrics of a run: per metric its granularity,
    summary and columns with their direction, so readers of the results folder (the
    viewer, a colleague's tools) need no registry."""
    return {
        name: {
            "granularity": get(name).granularity,
            "summary": get(name).summary,
            "columns": {
                c.name: {
                    "higher_is_better": c.higher_is_better,
                    "note": c.note,
                    "verdict": c.verdict,
                }
                for c in get(name).columns
                if c.summarised
            },
            "notes": [c.name for c in get(name).columns if not c.summarised],
        }
        for name in metric_names
    }


def note_columns(described: dict | None) -> list[str]:
    """The text columns about scores (a verdict's reason, a prompt cut to fit) that the
    viewer shows with an image: from metadata.json's `metrics`, else the registry."""
    if isinstance(described, dict) and described:
        return [n for m in described.values() if isinstance(m, dict) for n in m.get("notes", [])]
    return [c.name for m in _entries().values() for c in m.columns if not c.summarised]


def facts_of(described: dict | None) -> dict[str, dict]:
    """Per value column, as column_facts gives, from metadata.json's `metrics` (a run's
    own record) or, for results written without one, from the registry."""
    if not isinstance(described, dict) or not described:
        return column_facts()
    facts = {}
    for name, metric in described.items():
        if not isinstance(metric, dict):
            continue
        for column, about in (metric.get("columns") or {}).items():
            about = about if isinstance(about, dict) else {}
            facts[column] = {
                "metric": name,
                "granularity": metric.get("granularity", "image"),
                "higher_is_better": bool(about.get("higher_is_better", True)),
                "note": str(about.get("note") or ""),
                "summary": str(metric.get("summary") or ""),
                "verdict": bool(about.get("verdict", False)),
            }
    return facts


def demo_reasons(metrics_config: dict) -> list[str]:
    """Why the enabled metrics' numbers mean nothing (random weights), one line each."""
    reasons = []
    for metric in _entries().values():
        if metric.section in metrics_config and section_in_use(metrics_config, metric.section):
            reason = metric.demo_reason(metrics_config)
            if reason and reason not in reasons:
                reasons.append(reason)
    return reasons


# --- plugins ----------------------------------------------------------------------------


def load_plugins(plugins) -> None:
    """Import the config's `metric_plugins` (module names or .py files), which register
    their metrics. A plugin that cannot be imported is an InputError naming it."""
    if plugins is None:
        return
    if not isinstance(plugins, list) or not all(isinstance(p, str) and p for p in plugins):
        raise InputError(
            "config key 'metric_plugins': expected a list of Python files or module names"
        )
    for i, plugin in enumerate(plugins):
        key = f"config key 'metric_plugins[{i}]'"
        try:
            if plugin.endswith(".py"):
                path = Path(plugin).resolve()
                if not path.is_file():
                    raise InputError(f"{key}: file {plugin} does not exist")
                name = f"t2ibench_plugin_{path.stem}"
                if name in sys.modules and getattr(sys.modules[name], "__file__", "") == str(path):
                    continue
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                spec.loader.exec_module(module)
            else:
                importlib.import_module(plugin)
        except InputError:
            raise
        except Exception as err:  # a plugin's own error, in one line
            raise InputError(
                f"{key}: cannot import {plugin}: {type(err).__name__}: {err}"
            ) from None


# --- built-in tiny models -------------------------------------------------------------


def builtin_ids() -> list[str]:
    return [i for m in _entries().values() for i in m.builtins]


def builtin_folder(value: str, resources_dir: str | Path, key: str) -> Path:
    """The folder of built-in tiny model `value` ("builtin:<id>"), written on first use.

    Written to a temporary folder then renamed, so a crash leaves nothing half-written and
    two jobs writing at once both end with the same complete folder.
    """
    model_id = value.removeprefix("builtin:")
    writers = {i: w for m in _entries().values() for i, w in m.builtins.items()}
    if model_id not in writers:
        raise InputError(
            f"config key '{key}': unknown built-in model '{value}'; expected one of: "
            + ", ".join(f"builtin:{name}" for name in writers)
        )
    folder = Path(resources_dir) / "models" / "metrics" / model_id
    if folder.is_dir():
        return folder
    tmp = staging_dir(folder)
    try:
        writers[model_id](tmp)
        try:
            os.rename(tmp, folder)
            log.debug("wrote built-in metric model %s to %s", value, folder)
        except OSError:
            if not folder.is_dir():  # not another job's complete copy: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def is_builtin(value) -> bool:
    return isinstance(value, str) and value.startswith("builtin:")
