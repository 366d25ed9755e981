"""People's votes (t2ibench.human): vote files read and refused in one line, Bradley-Terry
strengths that find the true order with intervals that cover, metric agreement as a
direct count, voter agreement."""

from __future__ import annotations

import json

import numpy as np
import pytest

from t2ibench import human
from t2ibench.errors import InputError

SHA = "a" * 64


def vote(left, right, choice, voter="ann", time="t1", sha=SHA):
    return human.Vote(voter, left, sha, right, sha, choice, time, "f.json")


ONE = {"left": {"path": "exp/m1/default/p000_i00_s1.png", "sha256": SHA},
       "right": {"path": "exp/m2/default/p000_i00_s1.png", "sha256": SHA},
       "choice": "left", "time": "2026-12-02T07:00:00.000Z"}  # fmt: skip


def vote_file(path, experiment="exp", votes=None, **changes):
    data = {"format": human.FORMAT, "version": human.VERSION, "experiment": experiment,
            "voter": "ann", "votes": votes if votes is not None else [ONE]}  # fmt: skip
    data.update(changes)
    path.write_text(json.dumps(data))
    return path


def test_a_vote_file_is_read(tmp_path):
    upper = dict(ONE, left={**ONE["left"], "sha256": "A" * 64})
    assert human.read_file(vote_file(tmp_path / "u.json", votes=[upper]))[1][0].left_sha == SHA
    (tmp_path / "u.json").unlink()
    experiment, votes = human.read_file(vote_file(tmp_path / "v.json"))
    assert experiment == "exp" and votes[0].choice == "left" and votes[0].voter == "ann"
    assert votes[0].winner() == "exp/m1/default/p000_i00_s1.png"
    assert human.read_folder(tmp_path) == {"exp": [tmp_path / "v.json"]}
    assert human.read_folder(tmp_path / "none") == {}


@pytest.mark.parametrize(
    "change, message",
    [
        ("{not json", "does not parse as JSON"),
        ({"format": "other"}, 'not a t2ibench vote file (expected "format": "t2ibench-votes")'),
        ({"version": 2}, "vote file version 2; this t2ibench reads version 1"),
        ({"experiment": "other"}, "is not an image of experiment 'other'"),
        ({"votes": "x"}, "key 'votes': expected a list"),
        ({"votes": [{"choice": "maybe"}]}, "key 'votes[0].choice': expected one of left"),
        ({"votes": [["left"]]}, "key 'votes[0]': expected a vote (a mapping of left, right"),
        ({"version": True}, "vote file version True; this t2ibench reads version 1"),
        ({"version": 1.0}, "vote file version 1.0; this t2ibench reads version 1"),
        ({"votes": [dict(ONE, time=5)]}, "key 'votes[0].time': 5; expected the vote's date"),
        ({"votes": [dict(ONE, time="yesterday")]}, "key 'votes[0].time': 'yesterday'"),
        ({"votes": [dict(ONE, time="2026-12-02")]}, "key 'votes[0].time': '2026-12-02'"),
        ({"votes": [{k: v for k, v in ONE.items() if k != "time"}]}, "'votes[0].time': None"),
    ],
)
def test_a_bad_vote_file_is_one_line_naming_it(tmp_path, change, message):
    path = tmp_path / "v.json"
    if isinstance(change, str):
        path.write_text(change)
    else:
        vote_file(path, **change)
    with pytest.raises(InputError) as err:
        human.read_folder(tmp_path)
    assert str(err.value).startswith(f"vote file {path}: ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_the_votes_folder_and_what_its_files_name(tmp_path):
    """A file where the folder goes is an error naming the key; files naming another
    experiment are said; the digest follows every file's name and content."""
    (tmp_path / "votes").write_text("")
    with pytest.raises(InputError, match="config key 'votes': .*votes is not a folder"):
        human.read_folder(tmp_path / "votes")
    folder = tmp_path / "v"
    folder.mkdir()
    first = vote_file(folder / "a.json")
    files = human.read_folder(folder)
    assert human.foreign(files, ["exp"]) == ""
    line = human.foreign(files, ["other", "more"])
    assert "experiment(s) not in this run, their votes are not counted: 'exp' (1 file(s)" in line
    assert line.endswith("this run's experiments: other, more")
    before = human.digest([first])
    assert human.digest([]) == "" and human.digest([first]) == before
    vote_file(first, votes=[dict(ONE, choice="right")])
    assert human.digest([first]) != before
    second = vote_file(folder / "b.json")
    assert human.digest([first, second]) != human.digest([first])


def test_votes_are_set_aside_for_their_first_reason():
    """A pair of different prompts is said to be that, whatever its images' sha256."""
    from types import SimpleNamespace

    from t2ibench.report.human import classify

    def job(model, prompt):
        return SimpleNamespace(
            experiment="exp", relpath=f"exp/{model}/default/p{prompt:03d}_i00_s1.png",
            prompt_index=prompt, seed=1, model=model, cell="default",
        )  # fmt: skip

    jobs = [job("m1", 0), job("m2", 0), job("m2", 1)]
    plan = SimpleNamespace(jobs=jobs)
    gone = lambda path: None  # noqa: E731 - every image gone since the vote
    used, aside = classify(plan, "exp", [vote(jobs[0].relpath, jobs[2].relpath, "left")], gone)
    assert aside == {"the images are of different prompts or seeds": 1}
    used, aside = classify(plan, "exp", [vote(jobs[0].relpath, jobs[1].relpath, "left")], gone)
    assert aside == {"an image is gone or changed since the vote (sha256)": 1}
    here = lambda path: SHA  # noqa: E731
    used, aside = classify(plan, "exp", [vote(jobs[0].relpath, jobs[1].relpath, "left")], here)
    assert not aside and len(used["models"]) == 1


def test_duplicated_votes_count_once():
    a = vote("e/x.png", "e/y.png", "left")
    again = vote("e/y.png", "e/x.png", "left", time="t1")  # the same pair at the same time
    other = vote("e/x.png", "e/y.png", "left", time="t2")
    assert human.unique([a, a, again, other]) == [a, other]


def test_metric_agreement_is_a_direct_count():
    values = {"x": 3.0, "y": 1.0, "z": 2.0, "w": 2.0, "n": float("nan")}
    votes = [
        vote("x", "y", "left"),  # people x, metric x: agrees
        vote("x", "y", "right"),  # people y, metric x: disagrees
        vote("z", "x", "right"),  # people x, metric x: agrees
        vote("z", "w", "left"),  # metric tie: half
        vote("x", "y", "tie"),  # people tie: not counted
        vote("x", "n", "left"),  # no score: not counted
    ]
    found = human.agreement(votes, values, higher=True)
    assert found["votes"] == 4 and found["accuracy"] == pytest.approx(2.5 / 4)
    assert found["ci_low"] < 2.5 / 4 < found["ci_high"]
    lower = human.agreement(votes, values, higher=False)
    assert lower["accuracy"] == pytest.approx(1.5 / 4)


def test_voter_agreement_on_common_pairs():
    votes = [
        vote("a", "b", "left", voter="ann"),
        vote("b", "a", "right", voter="bob"),  # bob also chose a: agree
        vote("c", "d", "left", voter="ann"),
        vote("c", "d", "right", voter="bob"),  # disagree
        vote("e", "f", "tie", voter="ann"),
        vote("e", "f", "tie", voter="bob"),  # agree
        vote("g", "h", "left", voter="ann"),  # only ann: not common
    ]
    found = human.voter_agreement(votes)
    assert found["voters"] == 2 and found["pairs"] == 3
    assert found["agreement"] == pytest.approx(2 / 3) and "kappa" in found
    assert human.voter_agreement(votes[:1]) is None
    # Three voters on a pair: three comparisons of two voters, said as such.
    three = [*votes, vote("a", "b", "right", voter="cy")]  # cy chose b: agrees with nobody
    found = human.voter_agreement(three)
    assert (found["voters"], found["pairs"], found["comparisons"]) == (3, 3, 5)
    assert found["agreement"] == pytest.approx(2 / 5)
    from t2ibench.report.human import sentences

    votes = {"used": 7, "unique": 7, "set_aside": {}}
    said = sentences({"votes": votes, "voters": found, "metrics": []})
    [text] = [s for s in said if "voters rated" in s]
    assert "agree in 40% of 5 such comparisons" in text


def test_bradley_terry_fits_known_wins():
    # a beats b 3:1, b beats c 3:1: log-strength gaps log 3 each (no prior).
    wins = np.array([[0, 3, 0], [1, 0, 3], [0, 1, 0]], float)
    fitted = human.fit(wins, prior=0.0)
    assert fitted.sum() == pytest.approx(0, abs=1e-9)
    assert fitted[0] - fitted[1] == pytest.approx(np.log(3), abs=1e-6)
    assert fitted[1] - fitted[2] == pytest.approx(np.log(3), abs=1e-6)
    # A tie is half a win each way: two ties and a win are 2:1.
    ties = human.fit(np.array([[0, 2], [1, 0]], float), prior=0.0)
    tied = human.fit(
        np.array([[0, 1.5], [0.5, 0]], float) + np.array([[0, 0.5], [0.5, 0]]), prior=0.0
    )
    assert ties == pytest.approx(tied)
    # An arm that never wins keeps a finite strength (the prior), below the others.
    never = human.fit(np.array([[0, 5], [0, 0]], float))
    assert np.isfinite(never).all() and never[1] < never[0]


def simulate(rng, true, votes=300, prompts=50, ties=0.1):
    tables = np.zeros((prompts, len(true), len(true)))
    for _ in range(votes):
        i, j = rng.choice(len(true), 2, replace=False)
        p = rng.integers(prompts)
        if rng.random() < ties:
            tables[p, i, j] += 0.5
            tables[p, j, i] += 0.5
        elif rng.random() < 1 / (1 + np.exp(-(true[i] - true[j]))):
            tables[p, i, j] += 1
        else:
            tables[p, j, i] += 1
    return tables[tables.sum((1, 2)) > 0]


@pytest.mark.slow
def test_strengths_find_the_order_and_cover_in_simulation():
    """200 simulated studies, 300 votes drawn from known Bradley-Terry strengths of 4 arms
    (50 prompts): the estimated order is the true one, and each 95% interval covers its
    true strength in 90-99% of them."""
    rng = np.random.default_rng(5)
    true = np.array([0.9, 0.3, -0.3, -0.9])
    arms = ["a", "b", "c", "d"]
    covered = ordered = 0
    for s in range(200):
        found = human.strengths(simulate(rng, true, ties=0.0), arms, boot=1000, seed=s)
        by = {e["arm"]: e for e in found["ranking"]}
        covered += sum(
            by[a]["ci_low"] <= t <= by[a]["ci_high"] for a, t in zip(arms, true, strict=True)
        )
        ordered += [e["arm"] for e in found["ranking"]] == arms
    print(f"order right in {ordered / 200:.1%}, interval coverage {covered / 800:.1%}")
    assert ordered / 200 >= 0.9
    assert 0.90 <= covered / 800 <= 0.99


def unanimous(votes: int) -> np.ndarray:
    """`votes` prompts, one vote each, every one for arm 0."""
    tables = np.zeros((votes, 2, 2))
    tables[:, 0, 1] = 1
    return tables


def test_a_few_unanimous_votes_are_not_resolved_and_their_interval_has_width():
    """A bootstrap over prompts whose votes all agree resamples the same wins every time:
    its interval has no width. The Wald interval of the fit widens it: 2 of 2 votes is
    not resolved (a sign test's p is 0.5), 12 of 12 is (p 0.0005, Wilson [0.76, 1])."""
    for votes, resolved in ((2, False), (4, False), (12, True)):
        top, low = human.strengths(unanimous(votes), ["a", "b"])["ranking"]
        assert top["arm"] == "a" and top["resolved"] is resolved, votes
        assert top["ci_high"] - top["ci_low"] > 1.0
        assert low["ci_low"] < low["strength"] < low["ci_high"]
    # The Wald part is the fit's information: for two arms, 1 / (games p (1 - p)) for
    # the gap, a quarter of it for each centred strength.
    wins = np.array([[3.0, 1.0], [0.0, 0.0]]) + 0.5  # with the prior's half win each way
    gap = np.log(wins[0, 1] / wins[1, 0])
    p = 1 / (1 + np.exp(-gap))
    cov = human.covariance(np.array([[0.0, 3.0], [1.0, 0.0]]), np.array([gap / 2, -gap / 2]))
    assert cov[0, 0] == pytest.approx(1 / (5 * p * (1 - p)) / 4)
    assert cov[0, 0] + cov[1, 1] - 2 * cov[0, 1] == pytest.approx(1 / (5 * p * (1 - p)))


@pytest.mark.slow
def test_equal_arms_are_rarely_resolved_in_simulation():
    """300 simulated studies of two equal arms (10 to 60 votes over 5 to 20 prompts, 10%
    ties): "resolved" in at most 5% of them."""
    rng = np.random.default_rng(3)
    for votes, prompts in ((10, 5), (20, 10), (60, 20)):
        resolved = sum(
            human.strengths(simulate(rng, np.zeros(2), votes, prompts), ["a", "b"], 500, s)[
                "ranking"
            ][0]["resolved"]
            for s in range(300)
        )
        assert resolved / 300 <= 0.05, (votes, prompts, resolved)


def test_a_custom_prompts_votes_are_its_own(base_config):
    """A custom prompt's run keeps its experiments in results/prompt-<hash>/: its vote
    files name `prompt-<hash>/baseline`, so they never count for the full run's baseline
    (or the other way round), and their paths find its images."""
    from t2ibench.config import validate_config
    from t2ibench.plan import build_plan
    from t2ibench.report.human import _in_results_dir

    full = build_plan(validate_config(base_config))
    custom = build_plan(validate_config(dict(base_config, prompt="a fox in snow")))
    assert full.vote_name("baseline") == "baseline"
    name = custom.vote_name("baseline")
    assert name.startswith("prompt-") and name.endswith("/baseline") and name != "baseline"
    job = custom.jobs[0]
    given = vote(f"{name}/{job.relpath.split('/', 1)[1]}", f"{name}/x.png", "left")
    assert _in_results_dir(custom, "baseline", given).left == job.relpath
    assert _in_results_dir(full, "baseline", given) == given
