"""Sequential experiments (t2ibench.rounds): rounds of prompts, looks that stop what is
decided, the images a prefix of the fixed design's, bad designs refused in one line, and
the workflow running every round in one `snakemake`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from t2ibench import looks, rounds, sequential
from t2ibench.config import validate_config
from t2ibench.errors import InputError
from t2ibench.plan import build_plan

from conftest import with_changes

SEQ = {"metrics": ["clip_score"], "margin": 0.5, "round": 2}


def plan_with(base_config, tmp_path, design=SEQ, variables=None, **changes):
    path = tmp_path / "seq.yaml"
    data = {
        "name": "seq",
        "description": "x",
        "variables": variables or {"steps": [2, 3, 4]},
        "sequential": design,
    }
    path.write_text(yaml.safe_dump(data))
    prompts = {f"p_{i:03d}": {"text": f"prompt {i}"} for i in range(7)}
    (tmp_path / "many.json").write_text(json.dumps(prompts))
    config = with_changes(
        base_config, experiments=[str(path)], prompts={"sources": [str(tmp_path / "many.json")]}
    )
    for key, value in changes.items():
        config[key] = value
    return build_plan(validate_config(config))


def test_rounds_are_a_prefix_of_the_fixed_design(base_config, tmp_path):
    plan = plan_with(base_config, tmp_path)
    design = plan.sequential("seq")
    exp = plan.experiments["seq"]
    assert design.looks == (2, 4, 6, 7) and design.round == 2
    assert sum(design.levels) == pytest.approx(0.05)
    every = rounds.arms(exp)
    made = [j for k in range(1, 5) for j in rounds.round_jobs(plan, "seq", design, k, every)]
    fixed = [j for j in plan.jobs if j.experiment == "seq"]
    assert sorted(made, key=lambda j: j.key) == sorted(fixed, key=lambda j: j.key)
    first = rounds.round_jobs(plan, "seq", design, 1, [("tiny", "steps-3")])
    order = [p.index for p in exp.prompts]
    assert {j.prompt_index for j in first} == set(order[:2])
    assert {(j.model, j.cell) for j in first} == {("tiny", "steps-3")}
    assert len(first) == 2 * 2  # 2 prompts x 2 seeds
    # The fixed design of the same experiment: no design, the same images.
    fixed_plan = plan_with(base_config, tmp_path, sequential=False)
    assert fixed_plan.sequential("seq") is None
    assert [fixed_plan.path(j) for j in fixed_plan.jobs] == [plan.path(j) for j in plan.jobs]


def test_max_prompts_caps_the_design(base_config, tmp_path):
    plan = plan_with(base_config, tmp_path, design={**SEQ, "max_prompts": 5})
    assert plan.sequential("seq").looks == (2, 4, 5)
    assert len(plan.experiments["seq"].prompts) == 5
    with pytest.raises(InputError, match="key 'sequential.round': 4 prompts, more than key "):
        plan_with(base_config, tmp_path, design={**SEQ, "round": 4, "max_prompts": 3})


def test_a_quick_run_says_its_round_is_cut(base_config, tmp_path):
    """A quick run's fewer prompts than a round: one look, said in the design's note."""
    path = tmp_path / "seq.yaml"
    plan = plan_with(base_config, tmp_path, design={**SEQ, "round": 6}, quick=True)
    data = yaml.safe_load(path.read_text())
    data["quick"] = {"num_prompts": 3}
    path.write_text(yaml.safe_dump(data))
    config = {**plan.config, "experiments": [str(path)]}
    design = build_plan(validate_config(config)).sequential("seq")
    assert design.looks == (3,) and design.round == 3
    assert design.note == "quick run: round of 6 prompts cut to its 3, one look"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"metrics": ["clip_scor"]}, "key 'sequential.metrics': clip_scor is not a compared"),
        ({"metrics": ["fid"]}, "key 'sequential.metrics': fid is not a compared"),
        ({"margin": -1}, "key 'sequential.margin'"),
        ({"margin": 0}, "key 'sequential.margin'"),
        ({"margin": "big"}, "key 'sequential.margin'"),
        ({"margin": {"pickscore": 0.1}}, "key 'sequential.margin.pickscore'"),
        ({"margin": {"clip_score": -0.1}}, "key 'sequential.margin.clip_score'"),
        ({"round": 8}, "key 'sequential.round': 8 prompts, more than the experiment's 7"),
        ({"round": 0}, "key 'sequential.round'"),
        ({"max_prompts": 9}, "key 'sequential.max_prompts': 9 prompts"),
        ({"round": None}, "key 'sequential'"),
    ],
)
def test_bad_designs_are_one_line_naming_the_key(base_config, tmp_path, change, message):
    design = {k: v for k, v in {**SEQ, **change}.items() if v is not None}
    with pytest.raises(InputError) as err:
        plan_with(base_config, tmp_path, design=design)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_disabled_metric_one_arm_and_chunks_are_refused(base_config, tmp_path):
    off = {"clip": {"enabled": False}}
    with pytest.raises(InputError, match="clip_score is not a compared metric column"):
        plan_with(base_config, tmp_path, metrics=off)
    with pytest.raises(InputError, match="one model and one cell, nothing to compare"):
        plan_with(base_config, tmp_path, variables={"steps": [2]})
    with pytest.raises(InputError, match="config key 'images_per_job': 4, but experiment 'seq'"):
        plan_with(base_config, tmp_path, images_per_job=4)
    # The fixed design of the same experiment runs in chunks.
    plan_with(base_config, tmp_path, images_per_job=4, sequential=False)


def toy(cells=3, models=("a",)):
    from types import SimpleNamespace

    return SimpleNamespace(
        models=list(models),
        cells=[SimpleNamespace(name=str(c)) for c in range(cells)],
        experiment=SimpleNamespace(reference="0"),
        prompts=[SimpleNamespace(index=i) for i in range(40)],
    )


def design_of(looks=(10, 20, 40), margin=0.3):
    return rounds.Design(
        ("s",), {"s": margin}, 10, looks, tuple(sequential.look_levels(list(looks), 40, 0.05)), 0.05
    )


def scores(effects, n, rng, models=("a",)):
    labels = np.arange(n)
    base = rng.normal(0, 1, n)
    return {
        (m, str(c)): (base + effect + rng.normal(0, 0.05, n), labels)
        for m in models
        for c, effect in enumerate(effects)
    }


def test_a_look_stops_a_decided_cell_and_keeps_the_reference_open():
    rng = np.random.default_rng(1)
    exp, design = toy(), design_of(margin=0.0)
    # cell 1 far below the reference, cell 2 like it: cell 1 stops, 0 and 2 go on.
    look = looks.evaluate(design, exp, 1, None, {"s": scores([0, -3, 0], 10, rng)}, {"s": True})
    assert look["open"] == [["a", "0"], ["a", "2"]] and not look["finished"]
    stopped = look["arms"]["a/1"]
    assert stopped["stopped_at"] == 1 and stopped["prompts"] == 10
    assert stopped["verdicts"]["s"]["model a"]["verdict"] == "worse"
    assert "s: worse than a/0 (look 1)" in stopped["reason"]
    # Look 2 on the open arms only; cell 2 is not decided; the last look ends it.
    values = {"s": {a: v for a, v in scores([0, 0, 0], 20, rng).items() if a != ("a", "1")}}
    look2 = looks.evaluate(design, exp, 2, look, values, {"s": True})
    assert look2["arms"]["a/1"]["stopped_at"] == 1  # stays where it stopped
    if look2["finished"]:
        assert look2["arms"]["a/2"]["verdicts"]
    else:
        look3 = looks.evaluate(design, exp, 3, look2, values, {"s": True})
        assert look3["finished"] and look3["open"] == []
        assert {a["stopped_at"] for a in look3["arms"].values() if a["cell"] != "1"} == {3}


def test_lower_is_better_and_models_compared_per_cell():
    rng = np.random.default_rng(2)
    exp, design = toy(cells=1, models=("a", "b", "c")), design_of(margin=0.0)
    base, labels = rng.normal(0, 1, 10), np.arange(10)
    values = {"s": {}}
    for m, effect in zip("abc", [0, 3, 0], strict=True):
        values["s"][(m, "0")] = (base + effect + rng.normal(0, 1, 10) * 0.05, labels)
    look = looks.evaluate(design, exp, 1, None, values, {"s": False})
    record = look["arms"]["b/0"]["verdicts"]["s"]["cell 0"]
    assert record["verdict"] == "worse" and record["against"] == "a/0"  # higher is worse
    assert ["a", "0"] in look["open"]  # the first model: c is still compared with it


def test_rounds_json_counts_the_images_saved():
    exp, design = toy(cells=2), design_of()
    rng = np.random.default_rng(3)
    look = looks.evaluate(design, exp, 1, None, {"s": scores([0, -3], 10, rng)}, {"s": True})
    assert look["finished"]
    disk = {"a/0": 20, "a/1": 20}
    summary = looks.summary(look, exp, seeds=2, disk=disk)
    assert summary["images"] == {
        "made": 40, "rounds": 40, "outside": 0, "missing": 0, "fixed": 160, "saved": 120,
        "share_saved": 0.75, "on_disk": disk,
    }  # fmt: skip
    assert summary["arms"]["a/1"]["images_saved"] == 60
    # A fixed run made the rest of a/1: made counts what is on disk, the rounds stay.
    more = looks.summary(look, exp, 2, {"a/0": 20, "a/1": 80}, {"a/1": 60})
    assert more["images"]["made"] == 100 and more["images"]["rounds"] == 40
    assert more["arms"]["a/1"]["images_saved"] == 0 and more["arms"]["a/1"]["images_rounds"] == 20
    # An image of the rounds removed: missing, not saved.
    gone = looks.summary(look, exp, 2, {"a/0": 19, "a/1": 20})
    assert gone["images"]["missing"] == 1 and gone["images"]["saved"] == 120
    assert gone["images"]["made"] + gone["images"]["saved"] + 1 == 160


class FakeFresh:
    """What look_chain asks of t2ibench.freshness: images to make, and PNG times."""

    def __init__(self, todo=(), sha=None):
        self._todo, self.sha = set(todo), dict(sha or {})

    def todo(self, jobs):
        return [j for j in jobs if j in self._todo]


def write_look(plan, k, previous=None, results=None):
    """Look k of experiment 'seq' as the workflow writes it, on random scores."""
    design, exp = plan.sequential("seq"), plan.experiments["seq"]
    rng = np.random.default_rng(k)
    values = {"clip_score": {a: (rng.normal(0, 1, 4), np.arange(4)) for a in rounds.arms(exp)}}
    from t2ibench import look_chain

    look = looks.evaluate(design, exp, k, previous, values, {"clip_score": True})
    jobs = rounds.jobs_until(plan, "seq", design, k, rounds.open_arms(previous, exp))
    path = Path(rounds.look_path(rounds.analysis_dir(plan), "seq", k))
    before = path.with_name(f"look{k - 1}.json")
    look["scored"] = look_chain.scored(plan, jobs, FakeFresh())
    look["previous"] = look_chain.digest(before.read_bytes()) if previous else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(look))
    return look, path


def test_the_looks_that_hold_and_the_first_to_make_again(base_config, tmp_path):
    """look_chain: a look holds while readable, of the run's design and arms, after the
    look before it and older than every image it scored, all of them there."""
    from t2ibench import look_chain

    results = {"results_dir": str(tmp_path / "results")}
    plan = plan_with(base_config, tmp_path, **results)
    assert look_chain.chain(plan, "seq", FakeFresh()).done == 0
    one, first = write_look(plan, 1)
    two, second = write_look(plan, 2, one)
    state = look_chain.chain(plan, "seq", FakeFresh())
    assert state.done == 2 and state.redo is None and state.last["look"] == 2
    # An image of round 1 to make again: look 1 is made again.
    every = rounds.arms(plan.experiments["seq"])
    jobs = rounds.jobs_until(plan, "seq", plan.sequential("seq"), 1, every)
    state = look_chain.chain(plan, "seq", FakeFresh(todo=[jobs[0]]))
    assert state.redo == 1 and "1 image(s) it scored must be made again" in state.why
    assert state.done == 0
    # `analyze` does not look at the images.
    assert look_chain.chain(plan, "seq", FakeFresh(todo=[jobs[0]]), images=False).done == 2
    # An image made again unlike the one the look scored (another sha256).
    other = look_chain.chain(plan, "seq", FakeFresh(sha={jobs[1]: "0" * 64}))
    assert other.redo == 1 and "not those on disk" in other.why
    # Look 1 taken again with another content: look 2, which followed it, does not hold;
    # the same content again (a look taken again on the same images) and it does.
    kept = first.read_text()
    first.write_text(kept.replace('"look": 1', '"look":  1'))
    state = look_chain.chain(plan, "seq", FakeFresh())
    assert state.redo == 2 and "look 1 changed since it was taken" in state.why
    first.write_text(kept)
    assert look_chain.chain(plan, "seq", FakeFresh()).done == 2
    # A look of the right format whose content is not a look's.
    for broken in ({"finished": None}, {"open": 5}, {"open": [["tiny", "nope"]]}):
        second.write_text(json.dumps({**two, **broken}))
        assert look_chain.chain(plan, "seq", FakeFresh()).redo == 2
    # A damaged look 1, then a missing one while a later look is there.
    first.write_text("{not json")
    state = look_chain.chain(plan, "seq", FakeFresh())
    assert state.redo == 1 and "not a readable look" in state.why
    first.unlink()
    state = look_chain.chain(plan, "seq", FakeFresh())
    assert state.redo == 1 and state.why.endswith("look1.json is missing")
    # With none after it, a missing look is just the next one to make.
    second.unlink()
    assert look_chain.chain(plan, "seq", FakeFresh()).redo is None
    # Another design (round 3): the looks on disk do not hold; the start-up line says so.
    write_look(plan, 1)
    other = plan_with(base_config, tmp_path, design={**SEQ, "round": 3}, **results)
    state = look_chain.chain(other, "seq", FakeFresh())
    assert state.redo == 1 and "another sequential design" in state.why
    line = look_chain.announce(other, "seq", FakeFresh())
    assert "round 1 makes" in line and "look 1 is made again" in line


def test_a_damaged_look_is_an_error_naming_it(tmp_path):
    path = tmp_path / "look1.json"
    path.write_text("{not json")
    with pytest.raises(InputError, match=f"{path}: not a readable look"):
        rounds.read(path)
    path.write_text(json.dumps({"format": 99}))
    with pytest.raises(InputError, match="format 99, expected 1"):
        rounds.read(path)


@pytest.mark.slow
def test_one_snakemake_runs_the_rounds_and_a_fixed_run_makes_only_the_rest(tmp_path):
    """A steps sweep that decides at the first of two looks: the dry run shows round 1,
    the run stops both cells after it (half the images), a rerun has nothing to do, and
    the fixed design (`sequential=false`) makes exactly the missing half."""
    from workflow_helpers import (
        job_counts,
        made_images,
        make_workdir,
        metrics_only,
        nothing_to_do,
        output,
        snakemake,
        write_config,
    )

    work = make_workdir(tmp_path)
    (work / "seq.yaml").write_text(
        "name: seq\ndescription: steps, early stopping\nvariables:\n  steps: [1, 8]\n"
        "sequential:\n  metrics: [clip_score]\n  margin: 0.5\n  round: 18\n"
    )
    write_config(
        work,
        {
            "models": [{"name": "m", "source": "builtin:tiny-sdxl"}],
            "experiments": ["seq.yaml"],
            "generation": {"width": 64, "height": 64, "images_per_prompt": 1},
            "prompts": {
                "sources": ["prompts/simple.json", "prompts/animals.json", "prompts/styles.json"]
            },
            "metrics": metrics_only("clip"),
            "torch_threads": 1,
        },
    )
    args = ("--configfile", "test-config.yaml")
    dry = snakemake(work, *args, "-n")
    assert "round 1 makes 36 image(s); what later rounds make depends on each look" in output(dry)
    assert job_counts(output(dry))["generate_image"] == 36
    assert not (work / "results").exists()

    plan = subprocess.run(
        [sys.executable, "scripts/cli.py", "plan", *args], cwd=work, capture_output=True, text=True
    )
    assert "seq: sequential on clip_score (margins clip_score +-0.5)" in plan.stdout
    assert "looks after 18, 36 prompts: round 1 makes 36 image(s)" in plan.stdout

    run = snakemake(work, *args)
    made = made_images(run)
    assert len(made) == 36
    out = work / "results" / "seq"
    summary = json.loads((out / "sequential" / "rounds.json").read_text())
    assert summary["images"]["saved"] == 36 and summary["finished"]
    assert {a["stopped_at"] for a in summary["arms"].values()} == {1}
    findings = (out / "findings.md").read_text()
    assert "## Early stopping" in findings and "36 (50%) saved" in findings
    assert "decided at look 1 of 2 on 18 prompts" in findings
    assert "Early stopping" in (out / "index.html").read_text()
    viewer = (work / "results" / "report" / "data.js").read_text()
    assert "Early stopping on clip_score: 36 of the fixed design" in viewer
    assert len((out / "images.txt").read_text().splitlines()) == 36
    first = {p: Path(work, p).stat().st_mtime_ns for p in made}

    assert nothing_to_do(snakemake(work, *args))
    assert nothing_to_do(snakemake(work, "analyze", *args))
    again = subprocess.run(
        [sys.executable, "scripts/cli.py", "plan", *args], cwd=work, capture_output=True, text=True
    )
    assert "finished at look 1" in again.stdout

    # The files on disk are what a run goes by: a removed image of a finished round is
    # made again and its look taken again; a removed or damaged look is made again.
    look1 = out / "sequential" / "look1.json"
    gone = made[0]
    Path(work, gone).unlink()
    again = snakemake(work, *args)
    assert made_images(again) == [gone] and "look 1 is made again" in output(again)
    assert look1.stat().st_mtime_ns > Path(work, gone).stat().st_mtime_ns
    first[gone] = Path(work, gone).stat().st_mtime_ns
    for damage in (look1.unlink, lambda: look1.write_text("{not json")):
        damage()
        again = snakemake(work, *args)
        assert not made_images(again) and rounds.read(look1)["finished"], output(again)
        assert "Traceback" not in output(again)
    # Another margin: the looks are taken again, and a look left after the last one (an
    # earlier design's) is removed.
    design = (work / "seq.yaml").read_text()
    (work / "seq.yaml").write_text(design.replace("margin: 0.5", "margin: 0.6"))
    (out / "sequential" / "look2.json").write_text(look1.read_text())
    again = snakemake(work, *args)
    assert "another sequential design" in output(again) and not made_images(again)
    assert rounds.read(look1)["design"]["margins"] == {"clip_score": 0.6}
    assert sorted(p.name for p in (out / "sequential").glob("*.json")) == [
        "look1.json", "rounds.json"
    ]  # fmt: skip
    assert nothing_to_do(snakemake(work, *args))

    fixed = snakemake(work, *args, "--config", "sequential=false")
    rest = made_images(fixed)
    assert len(rest) == 36 and not set(rest) & set(first)
    assert {p: Path(work, p).stat().st_mtime_ns for p in first} == first
    assert len((out / "images.txt").read_text().splitlines()) == 72
    assert "## Early stopping" not in (out / "findings.md").read_text()
    assert nothing_to_do(snakemake(work, *args, "--config", "sequential=false"))
    # Sequential again: rounds.json counts what is on disk, as the image list does.
    snakemake(work, *args)
    summary = json.loads((out / "sequential" / "rounds.json").read_text())
    assert summary["images"]["made"] == 72 and summary["images"]["rounds"] == 36
    assert len((out / "images.txt").read_text().splitlines()) == 72
    assert "(36 by its rounds, 36 by other runs)" in (out / "findings.md").read_text()
    assert nothing_to_do(snakemake(work, *args))
    # The fixed design again, every image made: the findings follow the design in use.
    fixed = snakemake(work, *args, "--config", "sequential=false")
    assert not made_images(fixed)
    assert "## Early stopping" not in (out / "findings.md").read_text()
    assert "Early stopping" not in (out / "index.html").read_text()
    assert nothing_to_do(snakemake(work, *args, "--config", "sequential=false"))


@pytest.mark.slow
def test_an_interrupted_round_is_finished_by_the_next_run(tmp_path):
    """Ctrl-C in the second round of three: the next `snakemake` makes the rest of the
    round, looks again and stops; the images listed are those the looks say were made,
    and then neither `snakemake` nor `analyze` has anything to do."""
    from workflow_helpers import (
        interrupt_run,
        make_workdir,
        metrics_only,
        nothing_to_do,
        snakemake,
        write_config,
    )

    work = make_workdir(tmp_path)
    (work / "seq.yaml").write_text(
        "name: seq\ndescription: steps\nvariables:\n  steps: [1, 2, 8]\n"
        "sequential:\n  metrics: [clip_score]\n  margin: 0.05\n  round: 12\n"
    )
    sources = ["prompts/simple.json", "prompts/animals.json", "prompts/styles.json"]
    write_config(
        work,
        {
            "models": [{"name": "m", "source": "builtin:tiny-sdxl"}],
            "experiments": ["seq.yaml"],
            "generation": {"width": 64, "height": 64, "images_per_prompt": 1},
            "prompts": {"sources": sources},
            "metrics": metrics_only("clip"),
            "torch_threads": 1,
        },
    )
    out = work / "results" / "seq"
    interrupt_run(work, lambda w: list((w / "results" / "seq" / "m").glob("*/*.png")), 40)
    assert (out / "sequential" / "look1.json").is_file()
    assert not (out / "sequential" / "rounds.json").exists()
    args = ("--configfile", "test-config.yaml")
    snakemake(work, *args)
    summary = json.loads((out / "sequential" / "rounds.json").read_text())
    assert summary["finished"]
    listed = (out / "images.txt").read_text().splitlines()
    assert len(listed) == summary["images"]["made"] > 36
    assert len(list((out / "m").glob("*/*.png"))) == len(listed)
    assert nothing_to_do(snakemake(work, *args))
    assert nothing_to_do(snakemake(work, "analyze", *args))
