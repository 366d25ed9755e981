"""A static HTML page per experiment: opens from disk, no server, links are relative."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

from t2ibench.metrics import registry
from t2ibench.plan import Plan

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f3f3f3; }
td.text { text-align: left; max-width: 28em; }
.gallery td { text-align: center; vertical-align: top; }
.gallery img { width: 128px; image-rendering: pixelated; display: block; }
.note { color: #666; font-size: 0.9em; }
.warn { background: #fff3cd; border: 1px solid #e0c36a; padding: 0.6em 1em; }
"""


def _or_default(value) -> str:
    """A config value, or what null means: each model family's own default."""
    return "family default" if value is None else html.escape(str(value))


def _rel(path: str, page_dir: Path) -> str:
    return html.escape(os.path.relpath(Path(path).resolve(), page_dir.resolve()))


def _summary_table(summary) -> str:
    """The table; a value that is not there (a metric with nothing to score, e.g. a
    reference metric without reference images) is a dash, and a column with no values at
    all is named below the table instead."""
    import pandas as pd

    if summary.empty:
        return "<p>No images yet.</p>"
    empty = [c for c in summary.columns if summary[c].isna().all()]
    summary = summary.drop(columns=empty)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in summary.columns)
    body = []
    for _, row in summary.iterrows():
        cells = []
        for value in row:
            if pd.api.types.is_scalar(value) and pd.isna(value):
                text = "\u2013"
            else:
                text = f"{value:.4g}" if isinstance(value, float) else str(value)
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    note = (
        f"<p class=note>No values: {html.escape(', '.join(map(str, empty)))}.</p>" if empty else ""
    )
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{note}"


def _gallery(results, page_dir: Path) -> str:
    if results.empty:
        return ""
    columns = list(dict.fromkeys(zip(results["model"], results["cell"], strict=True)))
    # Under each image: the first per-image metric results.csv has (CLIP score in the demo).
    shown = next((c for c in registry.columns("image") if c in results), None)
    head = "<th>prompt</th>" + "".join(
        f"<th>{html.escape(m)}<br><span class=note>{html.escape(c)}</span></th>" for m, c in columns
    )
    rows = []
    for _, group in results.groupby("prompt_index", sort=True):
        text = group["prompt_text"].iloc[0]
        cells = [
            f"<td class=text><b>{html.escape(str(group['prompt_id'].iloc[0]))}</b><br>"
            f"{html.escape(text)}</td>"
        ]
        for model, cell in columns:
            images = group[(group["model"] == model) & (group["cell"] == cell)]
            figures = []
            for _, row in images.sort_values("image_index").iterrows():
                caption = f"seed {row['seed']}"
                if shown and row[shown] == row[shown]:
                    caption += f" · {shown} {row[shown]:.4g}"
                figures.append(
                    f"<a href='{_rel(row['image_path'], page_dir)}'>"
                    f"<img src='{_rel(row['image_path'], page_dir)}' "
                    f"alt='{html.escape(caption)}'></a>"
                    f"<span class=note>{html.escape(caption)}</span>"
                )
            cells.append("<td>" + "<br>".join(figures) + "</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class=gallery><tr>{head}</tr>{''.join(rows)}</table>"


def _identity(model: dict) -> str:
    if model["sha256"]:
        return f"sha256 {model['sha256']}"
    return f"diffusers folder {model['path']}"


DEMO_BANNER = "Demo numbers: images and scores here mean nothing."


def demo_reasons(config: dict, models: list[str] | None = None) -> list[str]:
    """Why the numbers of a run mean nothing: what came from random weights (the demo);
    with `models`, the models of one experiment only."""
    reasons = [
        f"model {m['name']} is a built-in tiny model"
        for m in config["models"]
        if m["source"].startswith("builtin:") and (models is None or m["name"] in models)
    ]
    return reasons + registry.demo_reasons(config["metrics"])


def experiment_models(meta: dict) -> list[str] | None:
    """The names of an experiment's models from its metadata.json (None: not recorded)."""
    models = meta.get("models")
    return [m["name"] for m in models] if isinstance(models, list) else None


def demo_warning(config: dict, models: list[str] | None = None) -> str:
    """A banner when anything on the page comes from random weights (the demo)."""
    reasons = demo_reasons(config, models)
    if not reasons:
        return ""
    return f"<p class=warn><b>{DEMO_BANNER}</b> " + html.escape("; ".join(reasons)) + ".</p>"


def _grid_pages(folder: str, page_dir: Path) -> str:
    pages = sorted(Path(folder).glob("*.png"), key=lambda p: (len(p.name), p.name))
    if not pages:
        return "<p>No grid yet.</p>"
    return "".join(
        f"<p><a href='{_rel(str(p), page_dir)}'><img src='{_rel(str(p), page_dir)}' "
        f"style='max-width:100%' alt='{html.escape(p.name)}'></a></p>"
        for p in pages
    )


def _set_sections(inputs: dict, described: dict) -> str:
    """A section per per-set metric table (FID/KID): inputs `set_<metric>`."""
    import pandas as pd

    parts = []
    for key, path in inputs.items():
        if not key.startswith("set_"):
            continue
        name = key.removeprefix("set_")
        table = pd.read_csv(path)
        about = (described.get(name) or {}).get("summary", "")
        parts.append(
            f"<h2>{html.escape(name)}</h2><p class=note>{html.escape(about)}</p>"
            + (_summary_table(table) if not table.empty else "<p>No two sets to compare.</p>")
        )
    return "".join(parts)


def _metric_notes(described: dict) -> str:
    """The summary's note: each metric's one-line summary (from metadata.json)."""
    items = "".join(
        f"<li><b>{html.escape(name)}</b> ({html.escape(m.get('granularity', ''))}): "
        f"{html.escape(m.get('summary', ''))}</li>"
        for name, m in described.items()
        if isinstance(m, dict)
    )
    return (
        f"<ul class=note>{items}</ul><p class=note>Intervals are 95% CIs over prompts "
        "(t2ibench.stats).</p>"
    )


def findings_section(found: dict) -> str:
    """The findings (findings.json) as the page's first section: the verdicts in
    sentences; what was not detected folded."""
    rows = found.get("findings") or []
    decided = [r for r in rows if r["verdict"] in ("better", "worse")]

    def items(chosen) -> str:
        return "".join(f"<li>{html.escape(r['sentence'])}</li>" for r in chosen)

    parts = [f"<h2>Findings</h2><p>{html.escape(found.get('headline', ''))}.</p>"]
    if found.get("note"):
        parts.append(f"<p class=note>{html.escape(found['note'])}</p>")
    if found.get("same_images"):
        parts.append(f"<h3>Same images</h3><ul>{items(found['same_images'])}</ul>")
    if decided:
        parts.append(f"<ul>{items(decided)}</ul>")
    equivalent = [r for r in rows if r["verdict"] == "equivalent"]
    if equivalent:
        parts.append(f"<h3>Equivalent within the margin</h3><ul>{items(equivalent)}</ul>")
    voted = found.get("human")
    if voted:
        parts.append(
            "<h3>People's votes</h3><ul>"
            + "".join(f"<li>{html.escape(s)}</li>" for s in voted["sentences"])
            + "</ul>"
        )
    stopping = found.get("sequential")
    if stopping:
        parts.append(
            f"<h3>Early stopping</h3><p>{html.escape(stopping['sentence'])}</p><ul>"
            + "".join(f"<li>{html.escape(a['sentence'])}</li>" for a in stopping["arms"])
            + "</ul>"
        )
    if found.get("disagreements"):
        parts.append(
            "<h3>Metrics that disagree</h3><ul>"
            + "".join(f"<li>{html.escape(d['sentence'])}</li>" for d in found["disagreements"])
            + "</ul>"
        )
    rest = [r for r in rows if r["verdict"] == "no difference detected"]
    if rest:
        parts.append(
            f"<details><summary>No difference detected ({len(rest)})</summary>"
            f"<ul>{items(rest)}</ul></details>"
        )
    untested = [r for r in rows if r["verdict"] == "not tested"] + (found.get("unscored") or [])
    if untested:
        parts.append(
            f"<details><summary>Not tested ({len(untested)})</summary>"
            f"<ul>{items(untested)}</ul></details>"
        )
    return "".join(parts)


def write_experiment_page(plan: Plan, experiment: str, inputs: dict, output: str) -> None:
    import pandas as pd

    from t2ibench.io import write_text

    page_dir = Path(output).parent
    results = pd.read_csv(inputs["results"])
    summary = pd.read_csv(inputs["summary"])
    meta = json.loads(Path(inputs["metadata"]).read_text(encoding="utf-8"))
    found = json.loads(Path(inputs["findings"]).read_text(encoding="utf-8"))
    links = " · ".join(
        f"<a href='{_rel(inputs[key], page_dir)}'>{name}</a>"
        for key, name in [
            ("results", "results.csv"),
            ("summary", "summary.csv"),
            ("metadata", "metadata.json"),
            ("findings", "findings.json"),
        ]
    )
    system = meta["system"]
    models = "".join(
        f"<li><b>{html.escape(m['name'])}</b>: {html.escape(m['source'])} "
        f"({html.escape(m['prediction_type'])}, {html.escape(m['prediction_type_reason'])})"
        f"<br><span class=note>{html.escape(_identity(m))}</span></li>"
        for m in meta["models"]
    )
    gen = meta["generation"]
    described = meta.get("metrics") or registry.describe(
        registry.enabled(meta["config"]["metrics"])
    )
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>t2ibench: {html.escape(experiment)}</title><style>{STYLE}</style></head>
<body>
<h1>t2ibench: {html.escape(experiment)}</h1>
{demo_warning(meta["config"], experiment_models(meta))}
<p>{html.escape(meta.get("description", ""))}</p>
{findings_section(found)}
<p>{links}</p>
<p class=note>Generated {html.escape(meta["timestamp"])} on {html.escape(system["device_name"])}
({html.escape(system["device"])}), torch {html.escape(system["torch"])},
diffusers {html.escape(system["diffusers"])}. Sampler {_or_default(gen["sampler"])},
{_or_default(gen["steps"])} steps, CFG {_or_default(gen["guidance_scale"])},
size {_or_default(gen["width"])}x{_or_default(gen["height"])},
base seed {gen["seed"]} (image i uses seed + i).</p>
<h2>Models</h2><ul>{models}</ul>
<h2>Summary</h2>
{_metric_notes(described)}
{_summary_table(summary)}
{_set_sections(inputs, described)}
<h2>Grid</h2>
{_grid_pages(inputs["grids"], page_dir)}
<h2>Images</h2>
{_gallery(results, page_dir)}
</body></html>
"""
    write_text(output, body)
