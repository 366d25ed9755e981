"""findings.md and findings.json: what an experiment's comparisons say, in words.

Every row of comparisons.csv (a cell against the reference cell per model, a model
against the first model per cell, per metric) becomes a verdict:

- better / worse: its p-value, adjusted for the number of comparisons in the
  experiment (Holm by default, Benjamini-Hochberg on request), is below `alpha`; the
  direction is the metric's (lower is better for distances);
- equivalent: the metric has a `margin` and the two one-sided tests say the difference
  lies within it (their p adjusted the same way);
- no difference detected: neither; the sentence then gives the smallest difference the
  run could have detected (80% power at the adjusted level, t2ibench.stats), says where
  the observed difference is that large but skewed prompts kept the test from declaring
  it, or that every prompt scored the same (no spread: nothing to detect with).

A cell better by one metric and worse by another is said as a disagreement. The
statistics are t2ibench.stats'; this module only decides and words them.
"""

from __future__ import annotations

import math
import re

from t2ibench import stats
from t2ibench.report import stopping

NAMES = {"holm": "Holm", "bh": "Benjamini-Hochberg"}
FEW_NOTE = (
    f"Fewer than {stats.FEW_PROMPTS} prompts: intervals and p-values may be off by a point "
    "or two for skewed scores; add prompts before trusting a close call."
)


def cell_label(metadata: dict, cell: str) -> str:
    """A cell as its variables: "shift=4.0, steps=8" (its name where it has none)."""
    values = metadata.get("cells", {}).get(cell, {}).get("values") or {}
    return ", ".join(f"{k}={v}" for k, v in values.items()) or cell


def _number(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def _p(value: float) -> str:
    return "< 0.001" if value < 0.001 else f"= {value:.3f}".rstrip("0").rstrip(".")


def classify(comparisons, directions: dict, margins: dict, alpha: float, method: str):
    """comparisons.csv with verdict, adjusted p-values and the detectable difference."""
    frame = comparisons.copy()
    if frame.empty:
        for column in ("p_adjusted", "p_equivalence", "p_equivalence_adjusted", "detectable"):
            frame[column] = []
        frame["verdict"] = []
        return frame
    frame["p_adjusted"] = stats.adjust(frame["p_value"].to_numpy(float), method)
    equivalence = []
    for _, row in frame.iterrows():
        margin = margins.get(row["metric"])
        skew = row["skewness"] if "skewness" in row and not math.isnan(row["skewness"]) else 0.0
        equivalence.append(
            stats.tost_p(row["difference"], row["sd"], int(row["prompts"]), margin, skew)
            if margin
            else float("nan")
        )
    frame["p_equivalence"] = equivalence
    frame["p_equivalence_adjusted"] = stats.adjust(equivalence, method)
    tests = int(frame["p_value"].notna().sum())
    level = alpha / max(tests, 1)  # what the first rejection needs (Holm, BH alike)
    frame["detectable"] = [
        stats.detectable_difference(sd, int(n), level) if n >= 2 else float("nan")
        for sd, n in zip(frame["sd"], frame["prompts"], strict=True)
    ]
    verdicts = []
    for _, row in frame.iterrows():
        if math.isnan(row["p_value"]):
            verdicts.append("not tested")
        elif row["p_adjusted"] < alpha:
            up = row["difference"] > 0
            verdicts.append("better" if up == directions.get(row["metric"], True) else "worse")
        elif row["p_equivalence_adjusted"] < alpha:
            verdicts.append("equivalent")
        else:
            verdicts.append("no difference detected")
    frame["verdict"] = verdicts
    return frame


def _subject(row, metadata: dict) -> tuple[str, str, str]:
    """(what is compared, against what, where) in words."""
    if row["comparison"] == "cell vs reference cell":
        return (
            cell_label(metadata, row["cell"]),
            cell_label(metadata, row["reference"]),
            (f" on {row['model']}"),
        )
    place = f" at {cell_label(metadata, row['cell'])}" if len(metadata.get("cells", {})) > 1 else ""
    return row["model"], row["reference"], place


def sentence(row, metadata: dict, method: str, seeds: int, sequential=None) -> str:
    this, other, place = _subject(row, metadata)
    prompts, pairs = int(row["prompts"]), int(row.get("pairs", 0) or 0)
    some = f"{prompts} prompt{'s' if prompts != 1 else ''}"
    sample = f"{some} x {seeds} seed{'s' if seeds != 1 else ''}"
    if prompts < pairs < prompts * seeds:  # images missing or flagged on some prompts
        sample = f"{pairs} pairs over {some}"
    metric, name = row["metric"], NAMES[method]
    interval = f"[{_number(row['ci_low'])}, {_number(row['ci_high'])}]"
    record = row.get("sequential") if sequential else None
    looks = stopping.words(record, sequential) if record else ""
    if row["verdict"] in ("better", "worse"):
        verb = "raises" if row["difference"] > 0 else "lowers"
        how = looks or f"{name} p {_p(row['p_adjusted'])}"
        return (
            f"{this} {verb} {metric} by {_number(abs(row['difference']))} {interval} over "
            f"{other}{place} ({row['verdict']}; {how}; {sample})."
        )
    if row["verdict"] == "equivalent":
        margin = record and sequential["design"]["margins"].get(metric) or row["margin"]
        how = looks or f"{name} TOST p {_p(row['p_equivalence_adjusted'])}"
        return (
            f"{this} and {other} are equivalent in {metric}{place} within "
            f"+-{_number(margin)}: difference {_number(row['difference'])} {interval} "
            f"({how}; {sample})."
        )
    if looks:
        return (
            f"No difference in {metric} detected between {this} and {other}{place}: "
            f"{_number(row['difference'])} {interval}; {looks} ({sample})."
        )
    if row["verdict"] == "not tested":
        return (
            f"{metric} of {this} and {other}{place} not tested: fewer than 2 prompts with "
            f"paired scores ({sample})."
        )
    return _undetected(row, f"{metric} detected between {this} and {other}{place}", sample)


def _undetected(row, what: str, sample: str) -> str:
    """The sentence of "no difference detected": with the difference the run could have
    detected where the prompts' differences have a spread."""
    difference, detectable = row["difference"], row["detectable"]
    if row["sd"] == 0:  # every prompt the same difference: the sign test decides
        if difference == 0:
            return f"No difference in {what}: the same score on every prompt ({sample})."
        return (
            f"No difference in {what}: every prompt differs by {_number(difference)}, too "
            f"few prompts for the sign test, the test for a difference with no spread "
            f"({sample})."
        )
    said = f"No difference in {what}: {_number(difference)} [{_number(row['ci_low'])}, " + (
        f"{_number(row['ci_high'])}]"
    )
    if math.isnan(detectable) or abs(difference) < detectable:
        return f"{said}; the run could have detected {_number(detectable)} ({sample})."
    skew = row.get("skewness", float("nan"))
    why = (
        f"the prompts' differences are skewed (skewness {skew:.2g}), which the "
        "skewness-corrected test allows for"
        if not math.isnan(skew) and abs(skew) >= 0.5
        else f"its adjusted p {_p(row['p_adjusted'])} is not below the level"
    )
    return (
        f"{said}; as large as the {_number(detectable)} a t-test over these prompts "
        f"detects, but {why}: more prompts would decide ({sample})."
    )


def same_sentence(item: dict, metadata: dict) -> str:
    """A comparison whose images all have the same pixels, in words."""
    this, other, place = _subject(item, metadata)
    what = (
        "the setting changes nothing here"
        if item["comparison"] == "cell vs reference cell"
        else "the two models give the same images here"
    )
    return (
        f"{this} and {other}{place} made the same images: all {item['pairs']} pairs "
        f"(prompt, seed) have the same pixels, so every metric scores them the same; {what}."
    )


def build(
    comparisons,
    metadata: dict,
    settings: dict,
    directions: dict,
    warning: str,
    cost=None,
    sequential=None,
    same=None,
    unscored=None,
) -> dict:
    """The findings of one experiment (findings.json's content); `sequential` is a
    sequential experiment's rounds.json (t2ibench.report.stopping); `same`, the
    comparisons whose images have the same pixels (t2ibench.report.same_images);
    `unscored`, {metric column: why} for the run's metrics that no image has a score of
    (listed under "Not tested": no comparison of them is made)."""
    method, alpha = settings["adjust"], settings["alpha"]
    margins = settings.get("margins") or {}
    frame = stopping.apply(classify(comparisons, directions, margins, alpha, method), sequential)
    frame["margin"] = [margins.get(m, float("nan")) for m in frame["metric"]]
    seeds = len(metadata.get("seeds") or []) or 1
    decided = int(frame["verdict"].isin(["better", "worse"]).sum()) if len(frame) else 0
    tests = int(frame["p_value"].notna().sum()) if len(frame) else 0
    few = bool(frame["few_prompts"].any()) if len(frame) else False
    rows = []
    for _, row in frame.iterrows():
        rows.append(
            {
                **{k: _plain(row[k]) for k in frame.columns if k != "method"},
                "seeds": seeds,
                "sentence": sentence(row, metadata, method, seeds, sequential),
            }
        )
    return {
        "experiment": metadata.get("experiment", ""),
        "warning": warning,
        "method": {
            "adjustment": NAMES[method],
            "alpha": alpha,
            "comparisons": tests,
            "tests": stats.METHOD,
            "margins": margins,
        },
        # What every rendering (findings.md, the page, the viewer) opens with.
        "headline": f"{decided} of {tests} comparisons show a difference "
        f"({NAMES[method]}-adjusted p < {alpha}"
        + (", the deciding metrics' by the sequential looks)" if sequential else ")"),
        "few_prompts": few,
        "note": FEW_NOTE if few else "",
        "same_images": [{**item, "sentence": same_sentence(item, metadata)} for item in same or []],
        "findings": rows,
        "unscored": [
            {"metric": column, "sentence": f"{column}: no image has a score ({why}); not compared."}
            for column, why in (unscored or {}).items()
        ],
        "cells": metadata.get("cells") or {},  # their values label them in findings.md
        "disagreements": disagreements(rows, metadata),
        "cost": _cost_words(cost, metadata, method) if cost else None,
        "sequential": (
            stopping.section(sequential, lambda cell: cell_label(metadata, cell))
            if sequential
            else None
        ),
    }


def _cost_words(cost: dict, metadata: dict, method: str) -> dict:
    """The cost section with a sentence per cheapest-not-worse finding."""
    for item in cost["cheapest"]:
        best, cheapest = cell_label(metadata, item["best"]), cell_label(metadata, item["cheapest"])
        spend = f"{_number(item['cheapest_seconds'])} s per image"
        if item["cheapest"] == item["best"]:
            item["sentence"] = (
                f"On {item['model']}, no cell cheaper than the best by {item['metric']}, "
                f"{best} ({spend}), is shown to be within {_number(item['margin'])} of it."
            )
        else:
            item["sentence"] = (
                f"On {item['model']}, {cheapest} ({spend}) is the cheapest cell not worse "
                f"than the best by {item['metric']}, {best} "
                f"({_number(item['best_seconds'])} s per image), by more than "
                f"{_number(item['margin'])} ({NAMES[method]} p {_p(item['p_adjusted'])})."
            )
    return cost


def disagreements(rows: list[dict], metadata: dict) -> list[dict]:
    """Comparisons better by one metric and worse by another."""
    groups: dict[tuple, dict] = {}
    for row in rows:
        if row["verdict"] in ("better", "worse"):
            key = (row["comparison"], row["model"], row["cell"], row["reference"])
            groups.setdefault(key, {"better": [], "worse": []})[row["verdict"]].append(
                row["metric"]
            )
    out = []
    for (kind, model, cell, reference), verdicts in groups.items():
        if verdicts["better"] and verdicts["worse"]:
            fake = {"comparison": kind, "model": model, "cell": cell, "reference": reference}
            this, other, place = _subject(fake, metadata)
            out.append(
                {
                    "comparison": kind,
                    "model": model,
                    "cell": cell,
                    "reference": reference,
                    **verdicts,
                    "sentence": f"{this} against {other}{place}: better by "
                    f"{', '.join(verdicts['better'])} but worse by "
                    f"{', '.join(verdicts['worse'])}.",
                }
            )
    return out


def _cell_text(text: str) -> str:
    """Text for a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _plain(value):
    """A JSON value: NaN as null, numpy scalars as Python's."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


BOLD = "\x00bold\x00"  # findings.md's own emphasis, kept apart from escaped text


def markdown(found: dict) -> str:
    """findings.md: the warning, the verdicts in sentences, then what was not detected."""
    method = found["method"]
    lines = [f"# Findings: {found['experiment']}", ""]
    if found["warning"]:
        lines += [f"> {BOLD}{found['warning']}{BOLD}", ""]
    rows = found["findings"]
    lines += [f"{found['headline']}; {method['tests']}.", ""]
    if found["note"]:
        lines += [found["note"], ""]
    if found.get("same_images"):
        lines += ["## Same images", "", *[f"- {i['sentence']}" for i in found["same_images"]], ""]
    for title, verdicts in [
        ("Differences", ("better", "worse")),
        ("Equivalent within the margin", ("equivalent",)),
    ]:
        chosen = [r for r in rows if r["verdict"] in verdicts]
        if chosen:
            lines += [f"## {title}", "", *[f"- {r['sentence']}" for r in chosen], ""]
    if found.get("sequential"):
        lines += stopping.markdown(found["sequential"])
    if found.get("human"):
        lines += ["## People's votes", "", *[f"- {s}" for s in found["human"]["sentences"]], ""]
    if found["disagreements"]:
        lines += ["## Metrics that disagree", ""]
        lines += [f"- {d['sentence']}" for d in found["disagreements"]] + [""]
    cost = found.get("cost")
    if cost and cost["per_cell"]:
        lines += ["## Cost", "", *[f"- {c['sentence']}" for c in cost["cheapest"]]]
        lines += ["", "| model | cell | images | s per image | s in all |", "|---|---|---|---|---|"]
        cells = {"cells": found["cells"]}
        lines += [
            f"| {_cell_text(c['model'])} | {_cell_text(cell_label(cells, c['cell']))} | "
            f"{c['images']} | {_number(c['seconds_per_image'])} | {_number(c['seconds'])} |"
            for c in cost["per_cell"]
        ] + [""]
    for title, verdict in [
        ("No difference detected", "no difference detected"),
        ("Not tested", "not tested"),
    ]:
        rest = [r for r in rows if r["verdict"] == verdict]
        if verdict == "not tested":
            rest += found.get("unscored") or []
        if rest:
            lines += [f"## {title}", "", *[f"- {r['sentence']}" for r in rest], ""]
    if not rows:
        lines += ["No comparisons: the experiment has one cell and one model, or no scores.", ""]
    # Names and values from configs (a cell's prompt_sr text, a model's name) are text:
    # no renderer of the Markdown may take them for HTML ("p < 0.05" stays as it is),
    # nor their * and ` for emphasis and code.
    text = re.sub(r"<(?=[A-Za-z/!?])", "&lt;", "\n".join(lines))
    return re.sub(r"([*`])", r"\\\1", text).replace(BOLD, "**")
