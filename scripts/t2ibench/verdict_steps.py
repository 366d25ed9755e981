"""The steps of the rules that turn scores into verdicts: the findings, the looks of a
sequential experiment (t2ibench.rounds, t2ibench.looks) and people's votes
(t2ibench.human). One function per rule, as in t2ibench.steps."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from t2ibench.console import logged
from t2ibench.generate import TORCH_LOCK
from t2ibench.plan import Plan
from t2ibench.steps import load_libraries, score_cache_path

log = logging.getLogger("t2ibench")


def findings(plan: Plan, experiment: str, inputs: dict, outputs, log_path: str) -> None:
    """findings.md and findings.json from comparisons.csv (t2ibench.report.findings)."""
    import pandas as pd

    from t2ibench.io import write_json, write_text
    from t2ibench.metrics import registry
    from t2ibench.report import findings as words
    from t2ibench.report.html import demo_reasons, experiment_models

    with logged(log_path, outputs.md):
        from t2ibench.errors import InputError
        from t2ibench.report import cost
        from t2ibench.report.same_images import same_image_arms

        comparisons = pd.read_csv(inputs["comparisons"])
        missing = {"sd", "few_prompts"} - set(comparisons.columns)
        if missing:
            raise InputError(
                f"{inputs['comparisons']}: written by an older t2ibench (no "
                f"{', '.join(sorted(missing))} column); remake it with "
                "`snakemake --forcerun results_table`"
            )
        results, summary = pd.read_csv(inputs["results"]), pd.read_csv(inputs["summary"])
        meta = json.loads(Path(inputs["metadata"]).read_text(encoding="utf-8"))
        directions = {k: v["higher_is_better"] for k, v in registry.column_facts().items()}
        reasons = demo_reasons(meta["config"], experiment_models(meta))
        warning = (
            "Demo: random weights (" + "; ".join(reasons) + "). These findings show how "
            "t2ibench reports, not what any model does."
            if reasons
            else ""
        )
        settings = plan.config["findings"]
        spent = cost.section(results, summary, meta, settings, directions)
        voted = inputs.get("human")
        people = json.loads(Path(voted).read_text(encoding="utf-8")) if voted else None
        if not voted:  # no vote files left: no table says what no vote says
            for stale in ("human.csv", "human.json"):
                (Path(outputs.md).parent / stale).unlink(missing_ok=True)
        rounds = inputs.get("rounds")
        sequential = json.loads(Path(rounds).read_text(encoding="utf-8")) if rounds else None
        same = same_image_arms(results, plan, experiment, comparisons)
        found = words.build(
            comparisons, meta, settings, directions, warning, spent, sequential, same,
            unscored_columns(plan, experiment, results),
        )  # fmt: skip
        found["human"] = {"sentences": people["sentences"]} if people else None
        write_json(outputs.json, found)
        write_text(outputs.md, words.markdown(found))
        decided = sum(f["verdict"] in ("better", "worse") for f in found["findings"])
        log.info("%s: %d finding(s) of %d comparisons: %s", experiment, decided,
                 found["method"]["comparisons"], outputs.md)  # fmt: skip


def unscored_columns(plan: Plan, experiment: str, results) -> dict[str, str]:
    """{column: why} for each compared metric column of the run that no image of the
    experiment has a value of (results.csv's)."""
    from t2ibench.config import column_metric, compared_columns
    from t2ibench.metrics import registry

    clean = results[results["image_flag"].fillna("") == ""] if "image_flag" in results else results
    if clean.empty:
        return {}
    seeds = len(plan.experiments[experiment].seeds)
    out = {}
    for column in compared_columns(plan.config):
        if column in clean and clean[column].notna().any():
            continue
        metric = registry.get(column_metric(column))
        if metric.granularity == "prompt" and seeds < 2:
            out[column] = "one image per prompt: it compares a prompt's images"
        else:
            out[column] = metric.summary.rstrip(".")
    return out


def sequential_look(plan: Plan, experiment: str, k: int, previous, output: str, log_path: str):
    """sequential/look<k>.json: look k of a sequential experiment (t2ibench.rounds)."""
    from t2ibench import looks
    from t2ibench.devices import configure_torch
    from t2ibench.io import write_json

    load_libraries()
    configure_torch(plan.config["torch_threads"])
    with logged(log_path, output), TORCH_LOCK:
        content = looks.look(plan, experiment, k, previous, score_cache_path(plan))
        write_json(output, content)
        stopped = [a for a in content["arms"].values() if a.get("stopped_at") == k]
        log.info(
            "%s: look %d of %d (%d prompts): %d arm(s) stopped, %d open%s",
            experiment, k, len(content["design"]["looks"]), content["prompts"],
            len(stopped), len(content["open"]),
            "" if content["open"] else "; no further rounds",
        )  # fmt: skip


def sequential_end(plan: Plan, experiment: str, last: str, output: str, log_path: str) -> None:
    """sequential/rounds.json: the last look, with the images made and saved per arm.
    Looks after the last one (left by an earlier design or run) are removed."""
    from t2ibench import look_chain, looks, rounds
    from t2ibench.freshness import Freshness
    from t2ibench.io import write_json

    with logged(log_path, output):
        exp = plan.experiments[experiment]
        fresh = Freshness(plan, verify=True)
        look = rounds.read(last)
        disk = look_chain.on_disk(plan, experiment, fresh)
        others = look_chain.outside(plan, experiment, fresh, look)
        content = looks.summary(look, exp, len(exp.seeds), disk, others)
        write_json(output, content)
        folder = Path(rounds.folder(rounds.analysis_dir(plan), experiment))
        for stale in folder.glob("look*.json"):
            number = stale.stem.removeprefix("look")
            if not number.isdigit() or int(number) > content["look"]:
                stale.unlink()
                log.debug("removed %s: after the last look", stale)
        from t2ibench.report.stopping import counted

        images = content["images"]
        log.info(
            "%s: %d of the fixed design's %d images made%s, %d (%.0f%%) saved",
            experiment, images["made"], images["fixed"], counted(images, ""),
            images["saved"], 100 * images["share_saved"],
        )  # fmt: skip


def human(plan: Plan, experiment: str, votes: list, results: str, outputs, log_path: str):
    """human.csv and human.json: people's votes (t2ibench.human, t2ibench.report.human)."""
    import pandas as pd

    from t2ibench.io import write_csv, write_json
    from t2ibench.metrics import registry
    from t2ibench.report import human as people

    with logged(log_path, outputs.csv):
        directions = {
            column: facts["higher_is_better"]
            for column, facts in registry.column_facts().items()
            if facts["granularity"] == "image"
        }
        found = people.analyse(plan, experiment, votes, pd.read_csv(results), directions)
        write_csv(people.table(found), outputs.csv)
        write_json(outputs.json, found)
        log.info("%s: %s", experiment, found["sentences"][0])
