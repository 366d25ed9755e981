"""Config validation: the JSON schema in config/schema.yaml plus the checks a schema
cannot express (unique names, files that must exist, known samplers).

Every failure is an :class:`InputError` whose message is one line naming the key and
what was expected, so the Snakefile and the CLI can print it and exit non-zero before
anything is written.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from t2ibench.config_paths import check_folder, check_metric_files
from t2ibench.errors import InputError
from t2ibench.metrics import registry
from t2ibench.samplers import SAMPLERS

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "config" / "schema.yaml"


def load_schema() -> dict:
    """config/schema.yaml with each registered metric's `metrics.<section>` and each model
    family's settings (`generation.<key>`) and name (`models[].family`) in place."""
    from t2ibench.models import families

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    props = schema["properties"]
    props["metrics"]["properties"].update(registry.section_schemas())
    props["generation"]["properties"].update(families.setting_schemas())
    props["models"]["items"]["properties"]["family"]["enum"] = families.names()
    return schema


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last
    one silently, which would drop a value without a word)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml(path: Path, kind: str = "config file") -> dict:
    """Read a YAML file; a parse error becomes one line naming the file."""
    try:
        data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        raise InputError(f"{kind} {path}: not found") from None
    except IsADirectoryError:
        raise InputError(f"{kind} {path}: is a folder; expected a YAML file") from None
    except OSError as err:  # unreadable: permissions, I/O error
        raise InputError(f"{kind} {path}: cannot be read ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise InputError(f"{kind} {path}: not UTF-8 text (byte {err.start})") from None
    except yaml.constructor.ConstructorError as err:
        line = err.problem_mark.line + 1 if err.problem_mark else "?"
        raise InputError(f"{kind} {path}: line {line}: {err.problem}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise InputError(f"{kind} {path}:{where} is not valid YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{kind} {path}: expected a mapping of keys, got {type(data).__name__}")
    return data


def _types(schema: dict) -> set[str]:
    kind = schema.get("type")
    if kind is None and "enum" in schema:
        return {type(v).__name__ for v in schema["enum"]}
    return set(kind) if isinstance(kind, list) else {kind} if kind else set()


def coerce_strings(instance: Any, schema: dict) -> Any:
    """Turn strings into numbers, booleans or null where the schema wants those.

    `snakemake --config key=VALUE` parses a nested VALUE with YAML's BaseLoader, which
    keeps every scalar a string: `--config 'generation={steps: 8}'` gives steps "8".
    """
    if isinstance(instance, str):
        types = _types(schema)
        if not types or "string" in types or "str" in types:
            return instance
        try:
            value = yaml.safe_load(instance)
        except yaml.YAMLError:
            return instance
        wanted = {
            "integer": int,
            "number": (int, float),
            "boolean": bool,
            "null": type(None),
            "int": int,
            "float": float,
            "bool": bool,
            "NoneType": type(None),
        }
        for t in types:
            kind = wanted.get(t)
            if kind and isinstance(value, kind) and not (t != "boolean" and value is True):
                return value
        return instance
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {
            k: coerce_strings(v, props.get(k, extra if isinstance(extra, dict) else {}))
            for k, v in instance.items()
        }
    if isinstance(instance, list):
        items = schema.get("items", {})
        return [coerce_strings(v, items) for v in instance]
    return instance


def load_config(configfiles: list[str] | None = None, overrides: dict | None = None) -> dict:
    """The config a `snakemake [--configfile F...] [--config k=v...]` run would see:
    config/config.yaml, or the given files instead of it, then the --config values."""
    from snakemake.utils import update_config

    config: dict = {}
    for path in configfiles or [REPO_ROOT / "config" / "config.yaml"]:
        update_config(config, load_yaml(Path(path)))
    update_config(config, copy.deepcopy(overrides or {}))
    return config


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = []
    for part in error.absolute_path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts) or "<top level>"


_TYPE_NAMES = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "null",
}


def _describe_type(expected: Any) -> str:
    if isinstance(expected, list):
        return " or ".join(_TYPE_NAMES.get(t, t) for t in expected)
    return _TYPE_NAMES.get(expected, str(expected))


def format_schema_error(error: jsonschema.ValidationError) -> str:
    """One line for one schema violation: which key, what was expected, what was given."""
    key = _key_path(error)
    got = repr(error.instance)
    if len(got) > 60:
        got = got[:57] + "..."
    kind, value = error.validator, error.validator_value
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where = f" under '{key}'" if error.absolute_path else ""
        return f"unknown config key '{extra[0]}'{where}; expected one of: {', '.join(allowed)}"
    if kind == "required":
        missing = [k for k in value if k not in error.instance]
        return f"config key '{key}': missing required key '{missing[0]}'"
    if kind == "type":
        return f"config key '{key}': expected {_describe_type(value)}, got {got}"
    if kind == "minimum":
        return f"config key '{key}': expected a value >= {value}, got {got}"
    if kind == "maximum":
        return f"config key '{key}': expected a value <= {value}, got {got}"
    if kind == "exclusiveMinimum":
        return f"config key '{key}': expected a value > {value}, got {got}"
    if kind == "propertyNames":
        return f"config key '{key}': {error.message}"
    if kind == "multipleOf":
        return f"config key '{key}': expected a multiple of {value}, got {got}"
    if kind == "enum":
        return f"config key '{key}': expected one of {', '.join(map(str, value))}; got {got}"
    if kind == "pattern" and key.endswith("device"):
        return f"config key '{key}': expected auto, cpu, mps, cuda or cuda:N; got {got}"
    if kind == "pattern" and key.endswith("hidden_layer_blend"):
        return f"config key '{key}': layer {got} is not a hidden-state index (an integer, e.g. -2)"
    if kind in ("pattern", "not"):
        return (
            f"config key '{key}': {got} is not allowed here "
            f"(expected letters, digits, '.', '_' or '-', and no '..' or '/')"
            if key.endswith(".name")
            else f"config key '{key}': {got} does not match {value!r}"
        )
    if kind in ("minItems", "minLength", "minProperties"):
        return f"config key '{key}': must not be empty"
    return f"config key '{key}': {error.message}"


HARDWARE_DIR = REPO_ROOT / "config" / "hardware"
# Seeds are stored as signed 64-bit integers (results.csv, the score cache); torch's
# generator takes any of them.
MAX_SEED = 2**63 - 1


def _merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def apply_hardware_profile(config: dict) -> dict:
    """Put the named config/hardware/ profile under the config: the config's keys win."""
    name = config.get("hardware")
    if not name:
        return config
    profiles = sorted(p.stem for p in HARDWARE_DIR.glob("*.yaml"))
    if name not in profiles:
        raise InputError(
            f"config key 'hardware': unknown profile '{name}'; expected one of: "
            f"{', '.join(profiles)} (files in {HARDWARE_DIR})"
        )
    return _merge(load_yaml(HARDWARE_DIR / f"{name}.yaml"), config)


def _fill_defaults(instance: Any, schema: dict) -> None:
    """Fill `default:` values from the schema, recursing into objects and array items."""
    if schema.get("type") == "object" and isinstance(instance, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in instance and "default" in sub:
                instance[key] = copy.deepcopy(sub["default"])
            if key in instance:
                _fill_defaults(instance[key], sub)
    elif schema.get("type") == "array" and isinstance(instance, list):
        for item in instance:
            _fill_defaults(item, schema.get("items", {}))


def validate_config(config: dict, schema: dict | None = None) -> dict:
    """Validate `config` and return a copy with every default filled in.

    Raises InputError (one line) on the first problem, in a stable order.
    """
    if not isinstance(config, dict):
        raise InputError("config: expected a mapping of keys")
    registry.load_plugins(config.get("metric_plugins"))  # their metrics' sections join the schema
    schema = schema or load_schema()
    config = apply_hardware_profile(config)
    config = coerce_strings(config, schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(
        validator.iter_errors(config), key=lambda e: (len(e.absolute_path), str(e.absolute_path))
    )
    if errors:
        # The deepest-first best match names the most specific key.
        raise InputError(format_schema_error(jsonschema.exceptions.best_match(errors)))
    config = copy.deepcopy(config)
    if config.get("images_per_job") is None and config.get("default_images_per_job"):
        config["images_per_job"] = config["default_images_per_job"]  # a profile's
    _fill_defaults(config, schema)
    _check_semantics(config)
    return config


def one_spelling(folder: str) -> str:
    """One spelling of a folder: relative to the working folder when it is inside it
    ("results/", "./results" and /abs/work/results are "results"), else absolute. File
    names built from it are the ones Snakemake's outputs and its records of them have,
    and those an image list holds, whichever way a config spells the folder."""
    path = os.path.abspath(folder)
    here = os.path.abspath(os.curdir)
    if os.path.commonpath([path, here]) == here and path != here:
        return os.path.relpath(path, here)
    return path


def check_finite(instance: Any, key: str = "") -> None:
    """No NaN or infinite number anywhere (YAML's .nan and .inf pass a schema's
    "number"): one would run without guidance, or put NaN into every record. No text
    that is not UTF-8 (bytes from a command line in another encoding)."""
    if isinstance(instance, float) and not math.isfinite(instance):
        raise InputError(
            f"config key '{key or '<top level>'}': expected a finite number, got {instance}"
        )
    if isinstance(instance, str):
        try:
            instance.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(
                f"config key '{key or '<top level>'}': not UTF-8 text ({instance!r})"
            ) from None
    if isinstance(instance, dict):
        for k, v in instance.items():
            check_finite(v, f"{key}.{k}" if key else str(k))
    elif isinstance(instance, list):
        for i, v in enumerate(instance):
            check_finite(v, f"{key}[{i}]")


def compared_columns(config: dict) -> list[str]:
    """The metric columns of this run that have comparisons (per image or per prompt)."""
    from t2ibench.metrics import registry

    return [
        c.name
        for name in registry.enabled(config["metrics"])
        for c in registry.get(name).columns
        if c.summarised and registry.get(name).granularity in ("image", "prompt")
    ]


def column_metric(column: str) -> str:
    """The metric (registry name) whose table has `column`."""
    from t2ibench.metrics import registry

    return next(n for n in registry.names() if column in registry.get(n).column_names)


def check_margins(config: dict) -> None:
    """findings.margins names metric columns that have comparisons in this run."""
    compared = compared_columns(config)
    for key in config["findings"]["margins"]:
        if key not in compared:
            raise InputError(
                f"config key 'findings.margins.{key}': {key} is not a compared metric "
                f"column of this run; expected one of: {', '.join(sorted(compared)) or 'none'}"
            )


def _check_semantics(config: dict) -> None:
    check_finite(config)
    seen: dict[str, int] = {}
    for i, model in enumerate(config["models"]):
        name = model["name"]
        if name in seen:
            raise InputError(
                f"config key 'models[{i}].name': duplicate model name '{name}' "
                f"(already used by models[{seen[name]}]); names must be unique"
            )
        seen[name] = i
    check_metric_files(config["metrics"])
    if config["generation"].get("attention") is None:  # memory.attention: the older spelling
        config["generation"]["attention"] = config["memory"].get("attention")
    check_margins(config)
    check_generation(config["generation"], "config key 'generation.", config["max_pixels"])
    seeds = config["generation"]["seeds"] or []
    if len(set(seeds)) != len(seeds):
        dup = next(s for s in seeds if seeds.count(s) > 1)
        raise InputError(f"config key 'generation.seeds': seed {dup} is listed twice")
    last = config["generation"]["seed"] + config["generation"]["images_per_prompt"] - 1
    if not seeds and last > MAX_SEED:
        raise InputError(
            f"config key 'generation.seed': the last image's seed (seed + images_per_prompt "
            f"- 1 = {last}) is above {MAX_SEED}, the largest seed; use a smaller seed"
        )
    for key in ("results_dir", "resources_dir"):
        check_folder(config[key], f"config key '{key}'")
        config[key] = one_spelling(config[key])
    results, resources = (os.path.abspath(config[k]) for k in ("results_dir", "resources_dir"))
    if results == os.path.abspath(os.curdir):
        raise InputError(
            "config key 'results_dir': the working folder itself; expected a folder of its "
            "own (the results folder's report/, quick/ and experiments go in it)"
        )
    if results == resources:
        raise InputError(
            f"config key 'results_dir': {config['results_dir']} is also resources_dir; "
            "expected two folders (models and caches are not results)"
        )


def check_generation(settings: dict, where: str, max_pixels: int | None = None) -> None:
    """Checks across generation keys that the schema cannot express. `where` starts the
    message ("config key 'generation."); the key and a closing quote follow."""
    width, height = settings.get("width"), settings.get("height")
    if max_pixels and isinstance(width, int) and isinstance(height, int):
        if width * height > max_pixels:
            raise InputError(
                f"{where}width': {width}x{height} is {width * height} pixels, above "
                f"max_pixels = {max_pixels}; make the image smaller, or raise max_pixels on "
                "purpose if the model and the GPU are made for it"
            )
    sampler = settings.get("sampler")
    if sampler is not None and sampler not in SAMPLERS:
        raise InputError(
            f"{where}sampler': unknown sampler '{sampler}'; expected one of: {', '.join(SAMPLERS)}"
        )
    from t2ibench.models import families

    # Each family checks the settings that are its own (zero terminal SNR and the sampler).
    for family in families.all_families():
        if any(settings.get(key) is not None for key in family.setting_keys - {"sampler"}):
            family.check_settings(settings, where)
