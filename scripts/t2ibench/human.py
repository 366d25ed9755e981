"""People's votes: blind A/B votes from the viewer, read back and tied to the metrics.

The viewer's Vote view exports a vote file (FORMAT, VERSION): the experiment, the
voter, and per vote the two images shown (left, right: path under the results folder and
sha256), the choice (left, right or tie) and when. Vote files put in the config's
``votes`` folder (default ``votes/``) give each experiment they name a ``human.csv``:

- Bradley-Terry strengths per model (from votes between models on the same cell,
  prompt and seed) and per cell (votes between cells of one model), ties counted as
  half a win each, fitted by Hunter's MM algorithm (Hunter 2004, "MM algorithms for
  generalized Bradley-Terry models", Annals of Statistics 32:384-406) on log-strengths
  centred at 0, with a prior of one tie per compared pair (half a win each way, as
  Jeffreys' prior for one pair: an arm that never wins keeps a finite strength); 95%
  intervals that are the union of a percentile bootstrap over prompts (the prompts
  resampled with their votes: votes on one prompt are not independent) and the Wald
  interval of the fit (its information matrix: a bootstrap alone has no width where
  every prompt's votes agree, as a few unanimous votes do), and the ranking with each
  neighbour difference resolved (its interval excludes 0) or not;
- per metric, its agreement with people: the share of non-tie votes where the metric
  prefers the image people chose (a metric tie counts half), with a Wilson 95%
  interval, and the votes behind it;
- when two or more voters rated the same pair: how often they agree.

Votes whose image is gone or no longer has the sha256 voted on are set aside and
counted; a vote given twice (the same file exported twice) counts once.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from t2ibench.errors import InputError

FORMAT = "t2ibench-votes"
VERSION = 1
CHOICES = ("left", "right", "tie")
PRIOR = 1.0  # virtual ties per compared pair
Z95 = 1.959963984540054  # the normal's 97.5% point
SHA = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Vote:
    voter: str
    left: str  # path under the results folder
    left_sha: str
    right: str
    right_sha: str
    choice: str
    time: str
    file: str

    @property
    def pair(self) -> tuple[str, str]:
        return tuple(sorted((self.left, self.right)))

    def winner(self) -> str | None:
        """The chosen image's path (None: a tie)."""
        return {"left": self.left, "right": self.right}.get(self.choice)


def vote_files(folder: str | Path) -> list[Path]:
    root = Path(folder)
    return sorted(root.glob("*.json")) if root.is_dir() else []


def read_file(path: Path) -> tuple[str, list[Vote]]:
    """(experiment, votes) of one vote file; anything else is one line naming it."""
    where = f"vote file {path}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise InputError(f"{where}: does not parse as JSON ({err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f'{where}: not a t2ibench vote file (expected "format": "{FORMAT}")')
    if type(data.get("version")) is not int or data["version"] != VERSION:  # not 1.0, true
        raise InputError(
            f"{where}: vote file version {data.get('version')!r}; this t2ibench reads "
            f"version {VERSION}"
        )
    experiment = data.get("experiment")
    if not isinstance(experiment, str) or not experiment:
        raise InputError(f"{where}: key 'experiment': expected the experiment's name")
    voter = data.get("voter") or data.get("voter_id") or path.stem
    if not isinstance(voter, str):
        raise InputError(f"{where}: key 'voter': expected text")
    votes = data.get("votes")
    if not isinstance(votes, list):
        raise InputError(f"{where}: key 'votes': expected a list")
    out = []
    for i, vote in enumerate(votes):
        out.append(_vote(where, i, vote, experiment, voter, path))
    return experiment, out


def _vote(where: str, i: int, vote, experiment: str, voter: str, path: Path) -> Vote:
    key = f"{where}: key 'votes[{i}]"
    if not isinstance(vote, dict):
        raise InputError(f"{key}': expected a vote (a mapping of left, right and choice)")
    if vote.get("choice") not in CHOICES:
        raise InputError(f"{key}.choice': expected one of {', '.join(CHOICES)}")
    sides = {}
    for side in ("left", "right"):
        image = vote.get(side)
        if not isinstance(image, dict) or not isinstance(image.get("path"), str):
            raise InputError(f"{key}.{side}': expected {{path, sha256}} of an image")
        if not isinstance(image.get("sha256"), str) or not SHA.match(image["sha256"].lower()):
            raise InputError(f"{key}.{side}.sha256': expected 64 hex digits")
        image = {**image, "sha256": image["sha256"].lower()}
        if not image["path"].startswith(f"{experiment}/") or ".." in image["path"].split("/"):
            raise InputError(
                f"{key}.{side}.path': {image['path']} is not an image of experiment "
                f"'{experiment}' (the file's experiment)"
            )
        sides[side] = image
    when = vote.get("time")
    if not isinstance(when, str) or not _is_time(when):
        raise InputError(
            f"{key}.time': {when!r}; expected the vote's date and time in ISO 8601 "
            '(as the Vote view writes it: "2026-12-01T10:00:00.000Z")'
        )
    return Vote(
        voter=voter,
        left=sides["left"]["path"],
        left_sha=sides["left"]["sha256"],
        right=sides["right"]["path"],
        right_sha=sides["right"]["sha256"],
        choice=vote["choice"],
        time=when,
        file=str(path),
    )


def _is_time(text: str) -> bool:
    """An ISO 8601 date and time (a date alone is not a vote's time)."""
    from datetime import datetime

    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return "T" in text or " " in text


def read_folder(folder: str | Path) -> dict[str, list[Path]]:
    """The vote files of each experiment they name (every file read and checked). No
    folder: no votes; a file where the folder goes is an error naming the key."""
    if Path(folder).exists() and not Path(folder).is_dir():
        raise InputError(
            f"config key 'votes': {folder} is not a folder; expected the folder of the "
            "Vote view's exported vote files (*.json)"
        )
    files: dict[str, list[Path]] = {}
    for path in vote_files(folder):
        experiment, _ = read_file(path)
        files.setdefault(experiment, []).append(path)
    return files


def digest(files: list) -> str:
    """What the vote files are (their names and contents): a file added, removed or
    changed, even to an older time, makes the tables from votes again."""
    import hashlib

    out = hashlib.sha256()
    for path in sorted(str(f) for f in files):
        out.update(path.encode() + b"\0" + hashlib.sha256(Path(path).read_bytes()).digest())
    return out.hexdigest() if files else ""


def foreign(files: dict, experiments) -> str:
    """A warning line for vote files that name experiments not in this run ("": none)."""
    other = {e: paths for e, paths in files.items() if e not in experiments}
    if not other:
        return ""
    named = ", ".join(f"'{e}' ({len(p)} file(s), e.g. {p[0]})" for e, p in sorted(other.items()))
    return (
        f"vote files name experiment(s) not in this run, their votes are not counted: "
        f"{named}; this run's experiments: {', '.join(experiments)}"
    )


def unique(votes: list[Vote]) -> list[Vote]:
    """Each vote once (a voter's vote on a pair at one time)."""
    seen, out = set(), []
    for vote in votes:
        key = (vote.voter, vote.pair, vote.time, vote.choice)
        if key not in seen:
            seen.add(key)
            out.append(vote)
    return out


# --- Bradley-Terry --------------------------------------------------------------------


def fit(wins: np.ndarray, prior: float = PRIOR, iterations: int = 2000) -> np.ndarray:
    """Log-strengths (centred at 0) from win counts: `wins[..., i, j]` = wins of i over j
    (ties as half each way), any leading batch axes. Hunter's MM updates."""
    wins = np.asarray(wins, float)
    k = wins.shape[-1]
    games = wins + np.swapaxes(wins, -1, -2)
    compared = games > 0
    wins = wins + prior / 2 * compared
    games = games + prior * compared
    total = wins.sum(-1)
    p = np.ones(wins.shape[:-1])
    for _ in range(iterations):
        denom = (games / (p[..., :, None] + p[..., None, :])).sum(-1)
        new = np.where(denom > 0, total / np.where(denom > 0, denom, 1), p)
        new = new / np.exp(np.log(np.maximum(new, 1e-300)).mean(-1, keepdims=True))
        if np.max(np.abs(new - p)) < 1e-10:
            p = new
            break
        p = new
    del k
    return np.log(np.maximum(p, 1e-300))


def win_tables(votes, arm_of, prompt_of, arms: list[str]):
    """Per prompt, the wins of each arm over each other (ties half): (prompts, tables)."""
    index = {a: i for i, a in enumerate(arms)}
    tables: dict = {}
    for vote in votes:
        a, b = index[arm_of[vote.left]], index[arm_of[vote.right]]
        table = tables.setdefault(prompt_of[vote.left], np.zeros((len(arms), len(arms))))
        if vote.choice == "left":
            table[a, b] += 1
        elif vote.choice == "right":
            table[b, a] += 1
        else:
            table[a, b] += 0.5
            table[b, a] += 0.5
    prompts = sorted(tables)
    return prompts, np.stack([tables[p] for p in prompts]) if prompts else np.zeros((0, 0, 0))


def covariance(wins: np.ndarray, strengths: np.ndarray, prior: float = PRIOR) -> np.ndarray:
    """The covariance of the centred log-strengths fitted to `wins` (with the prior, as
    `fit`): the pseudo-inverse of the log-likelihood's information matrix, the Laplacian
    of the compared pairs weighted by games x p x (1 - p)."""
    wins = np.asarray(wins, float)
    games = wins + wins.T
    games = games + prior * (games > 0)
    p = 1 / (1 + np.exp(strengths[None, :] - strengths[:, None]))  # P(i beats j)
    weight = games * p * (1 - p)
    information = np.diag(weight.sum(1)) - weight
    return np.linalg.pinv(information)


def _union(estimate: float, draws: np.ndarray, se: float) -> tuple[float, float]:
    """The union of the bootstrap percentile interval and the Wald interval."""
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(min(low, estimate - Z95 * se)), float(max(high, estimate + Z95 * se))


def strengths(tables: np.ndarray, arms: list[str], boot: int = 2000, seed: int = 0) -> dict:
    """Bradley-Terry log-strengths, their 95% intervals (bootstrap over prompts, widened
    to the Wald interval where that is wider), the ranking."""
    estimate = fit(tables.sum(0))
    cov = covariance(tables.sum(0), estimate)
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(len(tables), np.full(len(tables), 1 / len(tables)), size=boot)
    draws = fit(np.einsum("bp,pij->bij", weights, tables))
    order = list(np.argsort(-estimate))
    ranking = []
    for rank, i in enumerate(order, start=1):
        low, high = _union(estimate[i], draws[:, i], math.sqrt(max(cov[i, i], 0.0)))
        entry = {
            "arm": arms[i],
            "strength": float(estimate[i]),
            "ci_low": low,
            "ci_high": high,
            "rank": rank,
            "votes": int(round(tables[:, i, :].sum() + tables[:, :, i].sum())),
        }
        if rank < len(order):
            j = order[rank]
            se = math.sqrt(max(cov[i, i] + cov[j, j] - 2 * cov[i, j], 0.0))
            lo, hi = _union(estimate[i] - estimate[j], draws[:, i] - draws[:, j], se)
            entry["above"] = arms[j]
            entry["resolved"] = bool(lo > 0 or hi < 0)
        ranking.append(entry)
    return {"ranking": ranking, "prompts": len(tables)}


# --- metrics and voters ---------------------------------------------------------------


def agreement(votes, values: dict, higher: bool) -> dict:
    """How often a metric prefers the image people chose: non-tie votes with both scores;
    a metric tie counts half. Wilson 95% interval."""
    from statsmodels.stats.proportion import proportion_confint

    hits, n = 0.0, 0
    for vote in votes:
        won = vote.winner()
        if won is None:
            continue
        lost = vote.right if won == vote.left else vote.left
        a, b = values.get(won), values.get(lost)
        if a is None or b is None or math.isnan(a) or math.isnan(b):
            continue
        n += 1
        hits += 0.5 if a == b else float((a > b) == higher)
    if n == 0:
        return {"accuracy": None, "ci_low": None, "ci_high": None, "votes": 0}
    low, high = proportion_confint(hits, n, alpha=0.05, method="wilson")
    return {"accuracy": hits / n, "ci_low": float(low), "ci_high": float(high), "votes": n}


def voter_agreement(votes) -> dict | None:
    """On the pairs two or more voters rated: the share of voter pairs that agree (each
    voter's last vote on a pair), and Cohen's kappa with exactly two voters."""
    from itertools import combinations

    last: dict[tuple, dict[str, str]] = {}
    for vote in sorted(votes, key=lambda v: v.time):
        won = vote.winner()
        canonical = "tie" if won is None else ("first" if won == vote.pair[0] else "second")
        last.setdefault(vote.pair, {})[vote.voter] = canonical
    common = {pair: by for pair, by in last.items() if len(by) >= 2}
    voters = sorted({v for by in last.values() for v in by})
    if not common:
        return None
    same = total = 0
    for by in common.values():
        for a, b in combinations(sorted(by), 2):
            total += 1
            same += by[a] == by[b]
    out = {
        "voters": len(voters),
        "pairs": len(common),
        "comparisons": total,  # pairs of voters on a common pair
        "agreement": same / total,
    }
    if len(voters) == 2:
        from statsmodels.stats.inter_rater import cohens_kappa

        labels = ["first", "second", "tie"]
        table = np.zeros((3, 3))
        for by in common.values():
            table[labels.index(by[voters[0]]), labels.index(by[voters[1]])] += 1
        out["kappa"] = float(cohens_kappa(table, return_results=False))
    return out
