"""A static, interactive viewer of every experiment in a results folder.

`build_viewer(results_dir, out_dir)` writes `out_dir/index.html` (normally
`results/report/index.html`): an experiment picker (every experiment of the results
folder as `t2ibench.report.results` reads it: `<name>` and `prompt-<hash>/<name>`),
each experiment's description, metadata, plots and FID table, a grid of thumbnails
with row/column axes, filters and a metric overlay, an A/B comparison pane (slider,
toggle, pixel diff) and sortable summary/comparison tables. It is plain HTML, CSS and
JavaScript (`viewer_assets/`), with no server and no fetch: the page's data is a
script, `data.js`, that sets `window.T2I.data`, so the page works opened from disk
(`file://`) as well as served (`python -m http.server` from the results folder).

Written under `out_dir` (paths in the page are relative to it):

- `index.html`, `viewer.js`, `viewer.css`: the page (copied from `viewer_assets/`);
- `data.js`: every experiment's metadata, images, metrics and tables as JSON;
- `thumbs/<key>.webp`: one thumbnail per image, longest side at most `thumb_size`
  (smaller images are kept at their size, and the page shows them pixelated; up to
  128 x 128 px they are lossless, else WebP quality 80);
- `px/<key>.js`: one script per image, `T2I.pixels["<key>"] = "data:image/webp;..."`,
  at most `compare_size` px: the pixels the comparison pane diffs. On `file://` every
  file is its own origin, so an image loaded from a file taints a canvas and its pixels
  cannot be read; a data: URL registered by a script does not. Copies of up to
  128 x 128 px are lossless (diffs are exact); larger ones are WebP at quality 90
  (about 15-60 KB for 512 px), to keep the folder small for thousands of images. Served
  over http the page diffs the original files instead, at full resolution;
- `cache.json`: the size of each image, so that a re-run skips images whose file is
  unchanged.

`<key>` is a hash of the image's path, modification time and size and of the
thumbnail/copy sizes: an unchanged image keeps its files (not rewritten), a changed one
gets new ones, and files no image refers to any more are removed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
from pathlib import Path
from urllib.parse import quote

from t2ibench.errors import InputError
from t2ibench.io import write_if_changed
from t2ibench.report.results import (
    find_experiments,
    find_image,
    metric_names,
    number,
    read_metadata,
    read_rows,
    read_table,
)
from t2ibench.report.thumbnails import (
    LOSSLESS_MAX_PIXELS,
    Build,
    ThumbnailJob,
    attach_sizes,
    image_key,
    make_images,
)

ASSETS = Path(__file__).with_name("viewer_assets")
ASSET_FILES = ("viewer.js", "vote.js", "viewer.css")
FORMAT_VERSION = 1
PLOT_SUFFIXES = {".png", ".svg", ".jpg", ".jpeg", ".webp"}


def build_viewer(
    results_dir: Path,
    out_dir: Path,
    thumb_size: int = 256,
    *,
    compare_size: int = 512,
    workers: int | None = None,
) -> Path:
    """Write the viewer of every experiment under `results_dir` to `out_dir`.

    The experiments are those `t2ibench.report.results.find_experiments` finds: each
    `<name>/` and `prompt-<hash>/<name>/` holding a `metadata.json` (a quick run's,
    in `quick/`, are shown by the viewer built over `quick/`). Their `results.csv`,
    `summary.csv`, `comparisons.csv`, per-set metric tables (`metrics/fid.csv`), `plots/`
    and `grids/` are read
    when present. Raises InputError when there is no experiment.
    Returns the path of `index.html`.
    """
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    if thumb_size < 16 or compare_size < 16:
        raise InputError(
            f"viewer: thumb_size and compare_size must be >= 16 px, got "
            f"{thumb_size} and {compare_size}"
        )
    experiments = discover_experiments(results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    build = Build(out_dir, thumb_size, compare_size)
    payload = [experiment_payload(name, results_dir, build) for name in experiments]
    sizes = make_images(build, workers)
    for experiment in payload:
        attach_sizes(experiment, sizes)
    data = {
        "version": FORMAT_VERSION,
        "generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "thumb_size": thumb_size,
        "compare_size": compare_size,
        "lossless_max_pixels": LOSSLESS_MAX_PIXELS,
        "warnings": build.warnings,
        "experiments": payload,
    }
    write_if_changed(out_dir / "data.js", data_script(data))
    return write_page(out_dir, data)


# ---------------------------------------------------------------------------- discovery


def discover_experiments(results_dir: Path) -> list[str]:
    """The experiments of `results_dir` (`results.find_experiments`: `<name>` and
    `prompt-<hash>/<name>`, never `report/` or `quick/`); InputError when none."""
    if not results_dir.is_dir():
        raise InputError(f"{results_dir}: results folder not found; run the workflow first")
    found = find_experiments(results_dir)
    if not found:
        raise InputError(
            f"{results_dir}: no experiments to show (no experiment folder holds a "
            "metadata.json); run the workflow first"
        )
    return found


# ---------------------------------------------------------------------------- images


def url(path: Path, out_dir: Path) -> str:
    """A page-relative URL of `path` (percent-encoded, forward slashes)."""
    try:
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(out_dir))
    except ValueError:  # another drive on Windows
        return Path(os.path.abspath(path)).as_uri()
    return quote(Path(rel).as_posix(), safe="/")


def image_entry(
    row: dict, metrics: list[str], source: Path | None, key, out_dir: Path, notes=()
) -> dict:
    """One image for the page: where it is, its grid coordinates, its metric values and
    the notes about them (`notes`: text columns such as GenEval's reason)."""
    return {
        "model": row.get("model", ""),
        "cell": row.get("cell", ""),
        "prompt": number(row.get("prompt_index", "")),
        "seed": number(row.get("seed", "")),
        "image_index": number(row.get("image_index", "")),
        "flag": row.get("image_flag") or None,
        "file": Path(row.get("image_path", "")).name,
        "path": url(source, out_dir) if source else None,
        "key": key,
        "metrics": {name: finite(number(row.get(name, ""))) for name in metrics},
        "notes": {name: str(row[name]) for name in notes if row.get(name) not in (None, "")},
    }


def record_sha256(source: Path | None) -> str | None:
    """The PNG's sha256 as its record (the .json beside it) gives it, else of the file
    (an image made elsewhere, without a record); what vote files name (t2ibench.human)."""
    if source is None:
        return None
    try:
        value = json.loads(source.with_suffix(".json").read_text(encoding="utf-8"))["png_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        value = None
    if isinstance(value, str):
        return value
    from t2ibench.freshness import file_sha256

    return file_sha256(source)


def finite(value):
    """A metric value as a number, or None (text and infinities are not plotted)."""
    return value if isinstance(value, int | float) else None


# ---------------------------------------------------------------------------- experiments


def demo_banner(meta: dict) -> list[str]:
    """The per-experiment pages' "demo numbers mean nothing" banner, as a message."""
    from t2ibench.report.html import DEMO_BANNER, demo_reasons, experiment_models

    try:
        reasons = demo_reasons(meta["config"], experiment_models(meta))
    except (KeyError, TypeError, AttributeError):  # metadata of another tool or version
        return []
    return [f"{DEMO_BANNER} {'; '.join(reasons)}."] if reasons else []


def metric_facts(meta: dict) -> dict:
    """Per metric column: which way is better, its note and its metric's summary, from
    the run's metadata.json (its own record), else the registry; the generation time is
    lower-is-better too."""
    from t2ibench.metrics.registry import facts_of

    facts = facts_of(meta.get("metrics"))
    facts["generation_seconds"] = {
        "metric": "generation_seconds",
        "granularity": "image",
        "higher_is_better": False,
        "note": "seconds per image",
        "summary": "Seconds the image took to generate.",
    }
    return facts


def set_tables(exp_dir: Path, meta: dict) -> list[dict]:
    """The tables of the per-set metrics (FID/KID) the experiment has, with summaries."""
    from t2ibench.metrics.registry import facts_of

    sets = {}
    for about in facts_of(meta.get("metrics")).values():
        if about["granularity"] == "set":
            sets.setdefault(about["metric"], about["summary"])
    found = []
    for name, summary in sets.items():
        table = read_table(exp_dir / "metrics" / f"{name}.csv")
        if table is not None:
            found.append({"name": name, "summary": summary, "table": table})
    return found


def experiment_payload(name: str, results_dir: Path, build: Build) -> dict:
    """Everything the page shows of one experiment (`name`: `sweep`, or
    `prompt-<hash>/<name>`); queues its images in `build.jobs`."""
    exp_dir = results_dir / name
    meta = read_metadata(exp_dir / "metadata.json")
    rows = read_rows(exp_dir / "results.csv")
    summary = read_table(exp_dir / "summary.csv")
    columns = list(rows[0]) if rows else []
    metrics = metric_names(summary, columns)
    facts = metric_facts(meta)
    from t2ibench.metrics.registry import note_columns

    notes = [n for n in note_columns(meta.get("metrics")) if n in columns]
    images, missing = [], 0
    for row in rows:
        source = find_image(row.get("image_path"), results_dir, name, row)
        key = image_key(source, results_dir, build) if source else None
        if key:
            build.jobs.setdefault(key, ThumbnailJob(source, key))
        missing += source is None
        entry = image_entry(row, metrics, source, key, build.out_dir, notes)
        entry["sha256"] = record_sha256(source)
        images.append(entry)
    warnings = demo_banner(meta)
    if missing:
        warnings.append(f"{missing} of {len(rows)} images in results.csv were not found")
    if not (exp_dir / "results.csv").is_file():
        warnings.append("no results.csv yet: run the workflow's analysis")
    return {
        "name": name,
        # What vote files name: the experiment and its images' paths under the folder
        # that holds it (t2ibench.human).
        "vote_name": str(meta.get("vote_name") or meta.get("experiment") or Path(name).name),
        "description": str(meta.get("description") or ""),
        "reference_cell": meta.get("reference_cell"),
        "variables": in_order(meta.get("variables") or {}, meta.get("axes")),
        "models": ordered(
            [m.get("name") for m in meta.get("models", []) if isinstance(m, dict)],
            [i["model"] for i in images],
        ),
        "cells": ordered(
            list(in_order(meta.get("cells") or {}, meta.get("cell_order"))),
            [i["cell"] for i in images],
        ),
        "cell_values": {
            name: cell.get("values", {})
            for name, cell in (meta.get("cells") or {}).items()
            if isinstance(cell, dict)
        },
        "prompts": prompt_list(rows, meta),
        "seeds": ordered(meta.get("seeds") or [], [i["seed"] for i in images]),
        "metrics": metrics,
        "images": images,
        "summary": summary,
        "comparisons": read_table(exp_dir / "comparisons.csv"),
        "findings": findings_payload(exp_dir / "findings.json"),
        "facts": {name: facts[name] for name in metrics if name in facts},
        "sets": set_tables(exp_dir, meta),
        "plots": plot_list(exp_dir, build.out_dir),
        "files": {
            file: url(exp_dir / file, build.out_dir)
            for file in (
                "findings.md",
                "results.csv",
                "summary.csv",
                "comparisons.csv",
                "metadata.json",
            )
            if (exp_dir / file).is_file()
        },
        "warnings": warnings,
        "metadata": json_safe(meta),
    }


def findings_payload(path: Path) -> dict | None:
    """The findings' sentences by verdict (findings.json; None when there is none, e.g.
    an experiment made before findings existed)."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
        rows = found["findings"]
        headline = str(found["headline"])
    except (OSError, ValueError, KeyError, TypeError):
        return None

    def said(*verdicts):
        return [str(r.get("sentence", "")) for r in rows if r.get("verdict") in verdicts]

    return {
        "headline": headline,
        "warning": str(found.get("warning") or ""),
        "note": str(found.get("note") or ""),
        "decided": said("better", "worse"),
        "equivalent": said("equivalent"),
        "disagreements": [str(d.get("sentence", "")) for d in found.get("disagreements", [])],
        "undetected": said("no difference detected"),
        "untested": said("not tested")
        + [str(u.get("sentence", "")) for u in found.get("unscored") or [] if isinstance(u, dict)],
        "stopping": _stopping(found.get("sequential")),
        "human": [str(s) for s in (found.get("human") or {}).get("sentences", [])],
    }


def _stopping(part) -> list[str]:
    """A sequential experiment's early stopping: the total, then each arm."""
    if not isinstance(part, dict):
        return []
    arms = part.get("arms") if isinstance(part.get("arms"), list) else []
    return [str(part.get("sentence", ""))] + [str(a.get("sentence", "")) for a in arms]


def json_safe(value):
    """`value` with NaN and infinities (which JSON lacks) replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def in_order(mapping: dict, order) -> dict:
    """`mapping` with the keys `order` lists first, in that order (metadata.json's
    mappings are written with sorted keys; its lists keep the experiment's order)."""
    if not isinstance(mapping, dict):
        return {}
    order = [k for k in order or [] if isinstance(k, str) and k in mapping]
    return {k: mapping[k] for k in dict.fromkeys([*order, *mapping])}


def ordered(first: list, then: list) -> list:
    """The values of `first` that occur in `then` (all of them if `then` is empty),
    followed by the other values of `then`, each once, in order."""
    seen = set(then)
    values = [v for v in first if v is not None and (not seen or v in seen)]
    return list(dict.fromkeys(values + [v for v in then if v is not None]))


def prompt_list(rows: list[dict], meta: dict) -> list[dict]:
    """The experiment's prompts, by index: {index, id, text}."""
    prompts = {}
    for row in rows:
        index = number(row.get("prompt_index", ""))
        if index is not None and index not in prompts:
            prompts[index] = {
                "index": index,
                "id": row.get("prompt_id", ""),
                "text": row.get("prompt_text", ""),
            }
    if not rows:
        for p in meta.get("prompts") or []:
            if isinstance(p, dict) and "index" in p:
                prompts[p["index"]] = {
                    "index": p["index"],
                    "id": str(p.get("id", "")),
                    "text": str(p.get("text", "")),
                }
    order = sorted(
        prompts, key=lambda i: (isinstance(i, str), 0 if isinstance(i, str) else i, str(i))
    )
    return [prompts[i] for i in order]


def plot_list(exp_dir: Path, out_dir: Path) -> list[dict]:
    """Plots and grids of an experiment: grid.png, plots/*, grids/*; each plot once (its
    PNG, where an SVG of the same name is there too)."""
    files = [exp_dir / "grid.png"]
    for folder in ("plots", "grids"):
        if (exp_dir / folder).is_dir():
            found = sorted((exp_dir / folder).iterdir(), key=lambda p: p.name)
            stems = {p.stem for p in found if p.suffix.lower() != ".svg"}
            files += [p for p in found if p.suffix.lower() != ".svg" or p.stem not in stems]
    return [
        {"name": path.relative_to(exp_dir).as_posix(), "src": url(path, out_dir)}
        for path in files
        if path.is_file() and path.suffix.lower() in PLOT_SUFFIXES
    ]


# ---------------------------------------------------------------------------- page


def data_script(data: dict) -> str:
    """`data.js`: the JSON in one assignment, with <, > and & escaped as \\u00XX so that
    no text (a prompt holding `</script>`) can end a script element."""
    text = json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f"window.T2I = window.T2I || {{}};\nwindow.T2I.data = {text};\n"


def write_page(out_dir: Path, data: dict) -> Path:
    """Copy the assets and write index.html, with a version tag on each script and style
    sheet so that a browser does not keep an old copy after a rebuild."""
    tags = {}
    for name in ASSET_FILES:
        text = (ASSETS / name).read_text(encoding="utf-8")
        write_if_changed(out_dir / name, text)
        tags[name] = digest(text)
    tags["data.js"] = digest((out_dir / "data.js").read_text(encoding="utf-8"))
    page = (ASSETS / "index.html").read_text(encoding="utf-8")
    for name, tag in tags.items():
        page = page.replace(f'"{name}"', f'"{name}?v={tag}"')
    index = out_dir / "index.html"
    write_if_changed(index, page)
    return index


def digest(text: str) -> str:
    """A short content hash."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    """A Chromium to open the viewer with (tests, bench): $T2IBENCH_CHROMIUM, else the
    first of chromium, chromium-browser, google-chrome on the PATH; None when none."""
    import os
    import shutil

    env = os.environ.get("T2IBENCH_CHROMIUM")
    if env:
        return env if Path(env).is_file() else shutil.which(env)
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)
