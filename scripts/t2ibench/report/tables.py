"""results.csv, summary.csv and metadata.json of an experiment."""

from __future__ import annotations

import datetime as dt
import platform
from pathlib import Path

from t2ibench.errors import InputError
from t2ibench.metrics import registry
from t2ibench.models import families
from t2ibench.plan import Plan
from t2ibench.stats import FEW_PROMPTS

# The tables' format: raised when their columns change, so older tables are remade.
FORMAT = 2

SETTING_COLUMNS = [
    "family",
    "sampler",
    "steps",
    "guidance_scale",
    "width",
    "height",
    "negative_prompt",
    "dtype",
    "prediction_type",
]


def variable_columns(plan: Plan, experiment: str, cell: str) -> dict:
    """One column per variable with the cell's value (its name, for named values); for a
    single-axis experiment also variable_name / variable_value, as the seed tool wrote."""
    axes = plan.experiments[experiment].experiment.axes
    values = plan.cell(experiment, cell).values
    columns = {axis: values.get(axis, "") for axis in axes}
    if len(axes) == 1:
        columns["variable_name"] = axes[0]
        columns["variable_value"] = values.get(axes[0], "")
    return columns


def results_frame(plan: Plan, experiment: str, jobs, metric_tables: dict[str, str]):
    """One row per listed image of the experiment (`jobs`, from its image list), with its
    settings and metrics."""
    import pandas as pd

    from t2ibench.scoring import image_record

    rows = []
    for job in jobs:
        path = plan.path(job)
        prompt = plan.prompt(job)
        settings = plan.settings(job)
        record = image_record(path)
        row = {
            "experiment": job.experiment,
            "model": job.model,
            "cell": job.cell,
            **variable_columns(plan, experiment, job.cell),
            "prompt_id": prompt.id,
            "prompt_index": job.prompt_index,
            "prompt_text": settings["prompt"],
            "prompt_category": prompt.category,
            "image_index": job.image_index,
            "seed": job.seed,
            **{key: settings[key] for key in SETTING_COLUMNS},
            # The family's own settings (SDXL: clip skip; Z-Image: shift, ...), as applied.
            **{key: settings[key] for key in families.settings() if key in settings},
            "generation_seconds": record.get("generation_seconds"),
            "prompt_tokens": record.get("prompt_tokens"),
            "prompt_truncated": record.get("prompt_truncated"),
            "device": record.get("device"),
            "image_flag": record.get("image_flag", ""),
            "image_path": path,
        }
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:  # no image yet (e.g. `analyze` before any exists): a header only
        axes = plan.experiments[experiment].experiment.axes
        names = ["experiment", "model", "cell", *axes, "prompt_id", "prompt_index", "seed"]
        return pd.DataFrame(columns=names + ["image_path"])
    for name, path in metric_tables.items():
        metric = registry.get(name)
        keys = registry.MERGE_KEYS.get(metric.granularity)
        if keys:  # a set metric's table stands alone
            table = read_metric_table(path, [*keys, *metric.column_names])
            frame = frame.merge(table[[*keys, *metric.column_names]], on=keys, how="left")
    # Paths last, metrics just before them: the columns people read first come first.
    columns = [c for c in frame.columns if c != "image_path"] + ["image_path"]
    return frame[columns]


def read_metric_table(path: str, columns: list[str]):
    """A metric's table (metrics/<metric>.csv), with `columns`; a damaged one is one line
    naming it (remove it: the next run scores again, from the score cache)."""
    import pandas as pd

    try:
        table = pd.read_csv(path)
    except (ValueError, OSError, UnicodeDecodeError) as err:  # pandas' ParserError too
        reason = " ".join(str(err).split())[:160]
        raise InputError(
            f"{path}: not a readable metric table ({reason}); remove it and run again"
        ) from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(
            f"{path}: not a metric table of this run (no column {missing[0]!r}); remove it "
            "and run again"
        )
    return table


def summary_frame(results, plan: Plan | None = None, experiment: str | None = None):
    """Per model and cell: mean, std, n and 95% CI (t over prompts, t2ibench.stats) of each
    metric; `few_prompts` where the prompts are too few for the CI to hold its level.

    Per-image metrics are summarised over images; per-prompt metrics (LPIPS diversity)
    over prompts, since each prompt contributes one value.
    """
    import pandas as pd

    rows = []
    if results.empty:
        return pd.DataFrame(columns=["model", "cell", "images", "prompts", "flagged_images"])
    for (model, cell), group in results.groupby(["model", "cell"], sort=False):
        row = {
            "model": model,
            "cell": cell,
            **(variable_columns(plan, experiment, cell) if plan else {}),
            "images": len(group),
            "prompts": group["prompt_index"].nunique(),
            # Black / NaN images: kept, flagged, and left out of every metric.
            "flagged_images": int((group["image_flag"].fillna("") != "").sum()),
            "few_prompts": bool(group["prompt_index"].nunique() < FEW_PROMPTS),
        }
        for metric in registry.columns("image"):
            if metric in group:
                _describe(row, metric, group[metric], group["prompt_index"])
        if "generation_seconds" in group:
            _describe(row, "generation_seconds", group["generation_seconds"])
            # GPU time in all: the cost of the cell (the records' generation times).
            row["generation_seconds_total"] = float(group["generation_seconds"].sum())
        for metric in registry.columns("prompt"):
            if metric in group:
                once = group.drop_duplicates("prompt_index")
                _describe(row, metric, once[metric], once["prompt_index"])
        rows.append(row)
    return pd.DataFrame(rows)


def _describe(row: dict, metric: str, values, prompts=None) -> None:
    """mean, std, n and (with `prompts`) the 95% CI of a column. With prompts the mean
    is that of the per-prompt means, as the CI's (the images' mean where every prompt
    has as many images); std and n are over the images."""
    from t2ibench.stats import mean_ci, prompt_means

    present = values.notna()
    values = values[present].astype(float)
    if not len(values):
        row[f"{metric}_mean"] = float("nan")
    elif prompts is None:
        row[f"{metric}_mean"] = values.mean()
    else:
        row[f"{metric}_mean"] = float(prompt_means(values, prompts[present]).mean())
    row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else float("nan")
    row[f"{metric}_n"] = len(values)
    if prompts is not None:
        low, high = mean_ci(values.to_numpy(), prompts[present].to_numpy())
        row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = low, high


COMPARISON_COLUMNS = [
    "metric",
    "comparison",
    "model",
    "cell",
    "reference",
    "pairs",
    "prompts",
    "mean",
    "reference_mean",
    "difference",
    "ci_low",
    "ci_high",
    "p_value",
    "sd",
    "skewness",
    "few_prompts",
    "method",
]


def comparison_pairs(results, plan: Plan, experiment: str):
    """Each comparison of an experiment's results: (metric, keys, this, reference, kind,
    model, cell, reference name), the rows of the compared and the reference images of
    the metric, to be matched on `keys`: each cell against the reference cell (per
    model), each model against the first model (per cell; same_images.compared_arms)."""
    from t2ibench.report.same_images import compared_arms

    if results.empty:
        return
    clean = results[results["image_flag"].fillna("") == ""]
    image_columns = registry.columns("image")
    for metric in image_columns + registry.columns("prompt"):
        if metric not in clean:
            continue
        keys = ["prompt_index", "seed"] if metric in image_columns else ["prompt_index"]
        data = clean.dropna(subset=[metric]).drop_duplicates(["model", "cell", *keys])
        if data.empty:  # e.g. LPIPS diversity with one image per prompt
            continue
        for kind, model, cell, ref_model, ref_cell, reference in compared_arms(plan, experiment):
            this = data[(data.model == model) & (data.cell == cell)]
            ref = data[(data.model == ref_model) & (data.cell == ref_cell)]
            yield metric, keys, this, ref, kind, model, cell, reference


def comparisons_frame(results, plan: Plan, experiment: str):
    """Each cell against the reference cell (per model), and each model against the
    experiment's first model (per cell): paired differences with CI and p-value."""
    import pandas as pd

    rows = [
        _compare(metric, keys, this, ref, kind, model, cell) | {"reference": reference}
        for metric, keys, this, ref, kind, model, cell, reference in comparison_pairs(
            results, plan, experiment
        )
    ]
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def paired(metric: str, keys: list[str], a, b):
    """The rows of `a` and `b` matched on `keys`: the metric and `<metric>_r`."""
    return a[[*keys, metric]].merge(b[[*keys, metric]], on=keys, suffixes=("", "_r"))


def _compare(metric: str, keys: list[str], a, b, kind: str, model: str, cell: str) -> dict:
    """One comparisons.csv row: `a` against `b`, matched on `keys`."""
    from t2ibench.stats import METHOD, paired_difference, prompt_means

    merged = paired(metric, keys, a, b)
    stats = paired_difference(merged[metric], merged[f"{metric}_r"], merged.prompt_index)
    both = merged[merged[metric].notna() & merged[f"{metric}_r"].notna()]
    # The means of the pairs' per-prompt means: their difference is `difference`.
    means = [
        float(prompt_means(both[c], both.prompt_index).mean()) if len(both) else float("nan")
        for c in (metric, f"{metric}_r")
    ]
    return {
        "metric": metric,
        "comparison": kind,
        "model": model,
        "cell": cell,
        "pairs": stats["pairs"],
        "prompts": stats["prompts"],
        "mean": means[0],
        "reference_mean": means[1],
        "difference": stats["difference"],
        "ci_low": stats["ci_low"],
        "ci_high": stats["ci_high"],
        "p_value": stats["p_value"],
        "sd": stats["sd"],  # of the per-prompt differences (findings and planning)
        "skewness": stats["skewness"],
        "few_prompts": stats["few_prompts"],
        "method": METHOD,
    }


def system_info(device: str) -> dict:
    import diffusers
    import torch
    import transformers

    from t2ibench import __version__
    from t2ibench.devices import resolve_device

    resolved = resolve_device(device)
    if resolved.startswith("cuda"):
        device_name = torch.cuda.get_device_name(torch.device(resolved))
    else:
        device_name = platform.processor() or platform.machine()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "t2ibench": __version__,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "device": resolved,
        "device_name": device_name,
    }


def _cell_loras(plan: Plan, experiment: str, cell: str, models: list[str]) -> dict:
    """A cell's LoRA as applied (name, file, sha256, weight), when it sets one."""
    gen = plan.cell_settings(experiment, cell)
    if not gen.get("lora"):
        return {}
    return {"lora": plan.loras(plan.models[models[0]], gen)[-1]}  # the cell's comes last


def metadata(plan: Plan, experiment: str, sha_cache: Path) -> dict:
    from t2ibench.models.checks import sha256_file

    exp_plan = plan.experiments[experiment]
    exp = exp_plan.experiment
    models = []
    for spec in (plan.models[name] for name in exp_plan.models):
        checkpoint = Path(spec.checkpoint)
        models.append(
            {
                "name": spec.name,
                "source": spec.source,
                "kind": spec.kind,
                "path": str(checkpoint.resolve()),
                "sha256": sha256_file(checkpoint, sha_cache) if checkpoint.is_file() else None,
                "family": spec.family,
                "prediction_type": spec.prediction_type,
                "prediction_type_reason": spec.prediction_reason,
                "vae": spec.vae,
                "vae_sha256": sha256_file(Path(spec.vae), sha_cache)
                if spec.vae and Path(spec.vae).is_file()
                else None,
                # Its own LoRAs (name, file, sha256, weight); a cell's are in "cells".
                "loras": plan.loras(spec, {}),
            }
        )
    return {
        "experiment": experiment,
        "description": exp.description,
        "source": exp.source,
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config": plan.config,
        "quick": plan.config["quick"],
        "models": models,
        "variables": {
            axis: list(dict.fromkeys(c.values[axis] for c in exp.cells if axis in c.values))
            for axis in exp.axes
        },
        # The experiment's order of its axes and cells (the mappings are written with
        # sorted keys).
        "axes": list(exp.axes),
        "vote_name": plan.vote_name(experiment),  # what vote files call it
        "cell_order": [cell.name for cell in exp.cells],
        "cells": {
            cell.name: {
                "values": cell.values,
                "settings": cell.settings,
                "reference": cell.name == exp.reference,
                **_cell_loras(plan, experiment, cell.name, exp_plan.models),
            }
            for cell in exp.cells
        },
        "reference_cell": exp.reference,
        "fixed_settings": exp.settings,
        "generation": plan.config["generation"],
        "seeds": exp_plan.seeds,
        "prompts": [
            {
                "index": p.index,
                "id": p.id,
                "text": p.text,
                "category": p.category,
                "reference_image": p.reference_image,
            }
            for p in exp_plan.prompts
        ],
        "reference_images": plan.reference_images,
        "metrics": registry.describe(registry.enabled(plan.config["metrics"])),
        "images_planned": sum(1 for j in plan.jobs if j.experiment == experiment),
        "system": system_info(plan.config["device"]),
    }
