"""human.csv and human.json of an experiment: people's votes (t2ibench.human) against
the images on disk and the metrics of results.csv."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from t2ibench import human

LEVELS = {"models": "model", "cells": "cell"}
CSV_COLUMNS = ["section", "level", "name", "value", "ci_low", "ci_high", "votes", "rank", "note"]


def classify(plan, experiment: str, votes: list, sha_of) -> tuple[dict, Counter]:
    """{level: [vote, ...]} of the votes that can be used, and the reasons of the rest.
    `sha_of(path)` is the sha256 of a planned image's file (None: not there)."""
    jobs = {j.relpath: j for j in plan.jobs if j.experiment == experiment}
    used: dict[str, list] = {"models": [], "cells": []}
    aside: Counter = Counter()
    for vote in votes:
        a, b = jobs.get(vote.left), jobs.get(vote.right)
        if a is None or b is None:
            aside["an image is not in the experiment's plan"] += 1
        elif (a.prompt_index, a.seed) != (b.prompt_index, b.seed):
            aside["the images are of different prompts or seeds"] += 1
        elif (a.model != b.model) == (a.cell != b.cell):
            aside["the images differ in both model and cell, or are one image"] += 1
        elif sha_of(vote.left) != vote.left_sha or sha_of(vote.right) != vote.right_sha:
            aside["an image is gone or changed since the vote (sha256)"] += 1
        else:
            used["models" if a.model != b.model else "cells"].append(vote)
    return used, aside


def _in_results_dir(plan, experiment: str, vote):
    """The vote with its image paths relative to the plan's results folder (they start
    with the experiment's vote name: `prompt-<hash>/baseline/...` in a custom prompt's
    run, whose results folder is that `prompt-<hash>`)."""
    import dataclasses

    below = plan.vote_name(experiment)[: -len(experiment)]
    if not below:
        return vote
    return dataclasses.replace(
        vote,
        left=vote.left.removeprefix(below),
        right=vote.right.removeprefix(below),
    )


def analyse(plan, experiment: str, files: list[str], results, directions: dict) -> dict:
    """human.json's content. `results`: results.csv as a frame; `directions`: which way
    each image metric column is better."""
    from t2ibench.freshness import file_sha256

    read = [vote for path in files for vote in human.read_file(Path(path))[1]]
    votes = [_in_results_dir(plan, experiment, vote) for vote in human.unique(read)]
    shas: dict[str, str | None] = {}

    def sha_of(relpath: str):
        if relpath not in shas:
            path = Path(plan.results_dir) / relpath
            shas[relpath] = file_sha256(path) if path.is_file() else None
        return shas[relpath]

    used, aside = classify(plan, experiment, votes, sha_of)
    jobs = {j.relpath: j for j in plan.jobs if j.experiment == experiment}
    prompt_of = {path: job.prompt_index for path, job in jobs.items()}
    found = {
        "experiment": experiment,
        "votes": {
            "files": len(files),
            "read": len(read),
            "unique": len(votes),
            "used": sum(len(v) for v in used.values()),
            "set_aside": dict(aside),
        },
    }
    for level, key in LEVELS.items():
        chosen = used[level]
        arm_of = {path: getattr(job, key) for path, job in jobs.items()}
        arms = list(dict.fromkeys(arm_of[p] for v in chosen for p in (v.left, v.right)))
        order = (
            plan.experiments[experiment].models
            if key == "model"
            else [c.name for c in plan.experiments[experiment].cells]
        )
        arms = [a for a in order if a in arms]
        if len(arms) < 2:
            found[level] = None
            continue
        _, tables = human.win_tables(chosen, arm_of, prompt_of, arms)
        found[level] = {**human.strengths(tables, arms), "votes": len(chosen)}
    paths = {plan.path(j): rel for rel, j in jobs.items()}
    everything = used["models"] + used["cells"]
    found["metrics"] = []
    for column, higher in directions.items():
        if column not in results.columns:
            continue
        values = {
            paths[str(p)]: float(v)
            for p, v in zip(results["image_path"], results[column], strict=True)
            if str(p) in paths
        }
        found["metrics"].append(
            {
                "metric": column,
                "higher_is_better": higher,
                **human.agreement(everything, values, higher),
            }
        )
    found["voters"] = human.voter_agreement(everything)
    found["sentences"] = sentences(found)
    return found


def _n(value: float) -> str:
    return f"{value:+.2f}"


def sentences(found: dict) -> list[str]:
    out = []
    votes = found["votes"]
    head = f"{votes['used']} vote(s) used of {votes['unique']}"
    if votes["set_aside"]:
        head += (
            " (set aside: " + "; ".join(f"{n} {why}" for why, n in votes["set_aside"].items()) + ")"
        )
    out.append(head + ".")
    for level, key in LEVELS.items():
        part = found.get(level)
        if not part:
            continue
        words = []
        for entry in part["ranking"]:
            interval = f"[{_n(entry['ci_low'])}, {_n(entry['ci_high'])}]"
            text = f"{entry['arm']} {_n(entry['strength'])} {interval}"
            if "above" in entry:
                text += " >" if entry["resolved"] else " ~"
            words.append(text)
        out.append(
            f"People's ranking of the {key}s (Bradley-Terry log-strength, 95% CI over "
            f"{part['prompts']} prompts; > resolved, ~ not resolved; {part['votes']} votes): "
            + " ".join(words)
            + "."
        )
    for entry in found["metrics"]:
        if entry["votes"]:
            out.append(
                f"{entry['metric']} agrees with people on {entry['accuracy']:.0%} "
                f"[{entry['ci_low']:.0%}, {entry['ci_high']:.0%}] of {entry['votes']} votes."
            )
    voters = found.get("voters")
    if voters:
        text = f"{voters['voters']} voters rated {voters['pairs']} pair(s) in common"
        comparisons = voters.get("comparisons", voters["pairs"])
        if comparisons == voters["pairs"]:  # one comparison a pair (two voters on each)
            text += f" and agree on {voters['agreement']:.0%} of them"
        else:  # several voters on a pair: each two of them are a comparison
            text += (
                f"; two voters on the same pair agree in {voters['agreement']:.0%} of "
                f"{comparisons} such comparisons"
            )
        if "kappa" in voters:
            text += f" (Cohen's kappa {voters['kappa']:.2f})"
        out.append(text + ".")
    return out


def table(found: dict):
    """human.csv: one row per strength, metric agreement, voter agreement, set-aside reason."""
    import pandas as pd

    rows = []
    for level, key in LEVELS.items():
        for entry in (found.get(level) or {}).get("ranking", []):
            note = ""
            if "above" in entry:
                note = (
                    f"{'resolved' if entry['resolved'] else 'not resolved'} above {entry['above']}"
                )
            rows.append(["strength", key, entry["arm"], entry["strength"], entry["ci_low"],
                         entry["ci_high"], entry["votes"], entry["rank"], note])  # fmt: skip
    for entry in found["metrics"]:
        rows.append(["metric agreement", "image", entry["metric"], entry["accuracy"],
                     entry["ci_low"], entry["ci_high"], entry["votes"], None, ""])  # fmt: skip
    voters = found.get("voters")
    if voters:
        note = f"Cohen's kappa {voters['kappa']:.3f}" if "kappa" in voters else ""
        compared = voters.get("comparisons", voters["pairs"])
        if compared != voters["pairs"]:
            note = f"over {compared} comparisons of two voters on {voters['pairs']} pairs"
        rows.append(["voter agreement", "pair", f"{voters['voters']} voters", voters["agreement"],
                     None, None, compared, None, note])  # fmt: skip
    for why, count in found["votes"]["set_aside"].items():
        rows.append(["set aside", "vote", why, None, None, None, count, None, ""])
    return pd.DataFrame(rows, columns=CSV_COLUMNS)
