"""Results that stay true: what is on disk, what the tables say and what a run redoes.

One finished run (two families, the baseline and a sweep) is made once; each test works
on its own copy of the working folder, Snakemake's metadata included.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from t2ibench.io import made_mark
from t2ibench.models.registry import builtin_paths

from workflow_helpers import (
    made_images,
    make_workdir,
    metrics_only,
    nothing_to_do,
    output,
    snakemake,
    write_config,
)

pytestmark = pytest.mark.slow

PROMPTS = {
    "t_001": {"text": "a red cube on a table"},
    "t_002": {"text": "a small dog in the snow"},
    "t_003": {"text": "a lighthouse at night"},
}
ARGS = ("--configfile", "test-config.yaml")


def small_config(work: Path) -> dict:
    (work / "prompts" / "test.json").write_text(json.dumps(PROMPTS))
    return {
        "models": [
            {"name": "tiny-sdxl", "source": "builtin:tiny-sdxl"},
            {"name": "tiny-zimage", "source": "builtin:tiny-zimage"},
        ],
        "experiments": ["baseline", "shift_sweep"],
        "prompts": {"sources": ["prompts/test.json"]},
        "generation": {"steps": 2, "width": 64, "height": 64, "images_per_prompt": 2},
        # One metric of each kind (per image, per prompt, per set): enough tables to lose.
        "metrics": metrics_only("clip", "lpips", "reference", "fid"),
        "report": {"grid_cell_size": 64, "thumb_size": 32},
        "torch_threads": 1,
    }


FINISHED = {}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    work = make_workdir(tmp_path_factory.mktemp("finished"))
    write_config(work, small_config(work))
    FINISHED["proc"] = snakemake(work, *ARGS)
    return work


def test_the_console_is_a_summary_and_the_log_is_whole(finished):
    """About 40 lines for a run of 48 images in two experiments (the demo: about 45): the
    plan, progress, model loads, warnings and where to look; every job is in Snakemake's
    log file."""
    proc = FINISHED["proc"]
    lines = output(proc).splitlines()
    assert len(lines) <= 60, output(proc)
    text = output(proc)
    assert "t2ibench: plan: 48 images" in text and "t2ibench: done: 48 image(s) made" in text
    assert "Loading model tiny-zimage" in text and "generated 48/48 images" in text
    assert "rule generate_image" not in text and "Loading pipeline components" not in text
    assert len(made_images(proc)) == 48  # from the full log


@pytest.fixture
def work(finished, tmp_path) -> Path:
    """A copy of the finished run (files, times and Snakemake's metadata)."""
    return Path(shutil.copytree(finished, tmp_path / "copy", symlinks=True))


def results(work: Path, experiment: str = "baseline", root: str = "results") -> Path:
    return work / root / experiment


def image(work: Path, model="tiny-sdxl", name="p000_i00_s218.png") -> Path:
    return results(work) / model / "default" / name


def digests(folder: Path, *skip: str) -> dict[str, str]:
    """sha256 of every file below `folder`, but in the top-level folders `skip`."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).parts[0] not in skip
    }


def metric_tables(work: Path) -> list[Path]:
    return sorted(results(work).glob("metrics/*.csv"))


def errors(proc) -> list[str]:
    return [line for line in output(proc).splitlines() if "t2ibench: error:" in line]


# --- nothing to do after a finished run, whatever comes next -------------------------


def test_every_command_after_every_other_has_nothing_to_do(work):
    """snakemake, generate, analyze and an experiment's target, each run after each of
    the others (a sequence with every ordered pair), then the SLURM profile and generation
    in chunks as dry runs: none has anything to do."""
    commands = {"all": (), "generate": ("generate",), "analyze": ("analyze",)}
    commands["target"] = ("shift_sweep",)
    order = ["all", "generate", "analyze", "target", "all", "analyze", "generate"]
    order += ["target", "generate", "all", "target", "analyze", "all"]
    pairs = set(zip(order, order[1:], strict=False))
    assert len(pairs) == 12  # every ordered pair of the four
    for name in order:
        proc = snakemake(work, *commands[name], *ARGS)
        assert nothing_to_do(proc), f"{name}: {output(proc)[-2000:]}"
    for extra in (("--profile", "profiles/slurm"), ("--config", "images_per_job=4")):
        proc = snakemake(work, "-n", *ARGS, *extra)
        assert nothing_to_do(proc), f"{extra}: {output(proc)[-2000:]}"


# --- images that are not the ones recorded ---------------------------------------------


def replace_keeping_time(path: Path, data: bytes) -> None:
    times = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))


def test_a_replaced_and_a_cut_png_are_found_left_out_and_remade(work):
    """Found at start-up: another PNG under the name and a cut one (their time kept: by
    size), and one written over with other bytes of the same size (by its mtime, which
    is later than its record's, then its sha256); a PNG only touched is read and kept."""
    replaced, cut = image(work), image(work, "tiny-zimage", "p001_i01_s219.png")
    overwritten = image(work, name="p001_i01_s219.png")
    originals = {p: p.read_bytes() for p in (replaced, cut, overwritten)}
    table = pd.read_csv(results(work) / "results.csv")
    tables = metric_tables(work)
    replace_keeping_time(replaced, image(work, name="p002_i01_s219.png").read_bytes())
    replace_keeping_time(cut, originals[cut][: len(originals[cut]) // 2])
    overwritten.write_bytes(os.urandom(len(originals[overwritten])))
    os.utime(image(work, name="p002_i00_s218.png"))

    dry = snakemake(work, "-n", *ARGS)
    assert "3 outdated (3 content not the one recorded)" in output(dry)
    plan = subprocess.run(
        [str(Path(os.sys.executable)), "scripts/cli.py", "plan", *ARGS],
        cwd=work,
        capture_output=True,
        text=True,
    )
    assert f"{replaced.relative_to(work)}: content not the one recorded" in plan.stdout
    assert f"{cut.relative_to(work)}: content not the one recorded" in plan.stdout

    # analyze scores what is there and makes nothing: both are left out, each named in
    # one line, and no metric table is lost.
    analyzed = snakemake(work, "analyze", *ARGS)
    assert "Traceback" not in output(analyzed) and made_images(analyzed) == []
    for path in (replaced, cut, overwritten):
        assert f"{path.relative_to(work)}: left out of the tables" in output(analyzed)
    shown = pd.read_csv(results(work) / "results.csv")
    assert len(shown) == len(table) - 3
    assert str(replaced.relative_to(work)) not in set(shown["image_path"])
    assert metric_tables(work) == tables

    # The next run remakes exactly those three, bit for bit, and the tables are whole again.
    proc = snakemake(work, *ARGS)
    assert sorted(made_images(proc)) == sorted(str(p.relative_to(work)) for p in originals)
    assert all(p.read_bytes() == data for p, data in originals.items())
    again = pd.read_csv(results(work) / "results.csv")
    assert again["clip_score"].tolist() == table["clip_score"].tolist()
    assert nothing_to_do(snakemake(work, "-n", *ARGS))


def test_same_size_corruption_is_found_when_verifying(work):
    """A PNG of the right size with other bytes passes the size check at start-up; the
    sha256 check (verify_images, and always in analyze) finds it."""
    path = image(work, name="p001_i00_s218.png")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    replace_keeping_time(path, bytes(data))
    assert nothing_to_do(snakemake(work, "-n", *ARGS))
    verified = snakemake(work, "-n", *ARGS, "--config", "verify_images=true")
    assert "1 outdated (1 content not the one recorded)" in output(verified)
    analyzed = snakemake(work, "analyze", *ARGS)
    assert f"{path.relative_to(work)}: left out of the tables" in output(analyzed)
    assert "Traceback" not in output(analyzed)
    # A full run remakes it: an image left out of its list is verified at start-up.
    proc = snakemake(work, *ARGS)
    assert made_images(proc) == [str(path.relative_to(work))]
    assert str(path.relative_to(work)) in (results(work) / "images.txt").read_text()
    assert nothing_to_do(snakemake(work, "-n", *ARGS))


def test_a_full_run_leaves_out_what_it_cannot_trust_and_remakes_it_next(work):
    """The image list verifies every image before anything scores it: a PNG that changed
    (same size) while another image was being remade is left out of the tables, named,
    and made again by the next run."""
    changed = image(work, name="p001_i00_s218.png")
    data = bytearray(changed.read_bytes())
    data[len(data) // 2] ^= 0xFF
    replace_keeping_time(changed, bytes(data))
    image(work, name="p002_i00_s218.png").unlink()  # something to do: the list is remade
    first = snakemake(work, *ARGS)
    assert f"{changed.relative_to(work)}: left out of the tables" in output(first)
    assert str(changed.relative_to(work)) not in (results(work) / "images.txt").read_text()
    second = snakemake(work, *ARGS)
    assert made_images(second) == [str(changed.relative_to(work))]
    table = pd.read_csv(results(work) / "results.csv")
    assert str(changed.relative_to(work)) in set(table["image_path"])
    assert nothing_to_do(snakemake(work, "-n", *ARGS))


# --- quick runs, experiment targets, the viewer -----------------------------------------


def test_a_quick_run_after_a_full_run_changes_none_of_its_outputs(work):
    before = digests(work / "results", "quick")
    proc = snakemake(work, *ARGS, "--config", "quick=true")
    assert made_images(proc) == []  # quick images are a subset of the full run's
    assert digests(work / "results", "quick") == before
    quick = pd.read_csv(results(work, "shift_sweep", "results/quick") / "results.csv")
    full = pd.read_csv(results(work, "shift_sweep") / "results.csv")
    assert 0 < len(quick) < len(full)
    assert (work / "results" / "quick" / "report" / "index.html").is_file()
    assert nothing_to_do(snakemake(work, "-n", *ARGS))
    assert nothing_to_do(snakemake(work, "-n", *ARGS, "--config", "quick=true"))


def test_an_experiment_target_refreshes_the_viewer(work):
    viewer = work / "results" / "report" / "data.js"
    before = viewer.stat().st_mtime_ns
    baseline = digests(results(work))
    victim = results(work, "shift_sweep") / "tiny-zimage" / "shift-2.0" / "p000_i00_s218.png"
    victim.unlink()
    proc = snakemake(work, "shift_sweep", *ARGS)
    assert made_images(proc) == [str(victim.relative_to(work))]
    assert viewer.stat().st_mtime_ns > before
    assert digests(results(work)) == baseline  # the other experiment is left alone
    assert nothing_to_do(snakemake(work, "-n", *ARGS))


def test_a_backup_left_by_an_interrupted_job_does_not_stop_the_next_run(work):
    """Ctrl-C in a job with update() outputs (plots/, grids/) leaves Snakemake's copy of
    them in .snakemake/backups, and Snakemake then refuses that job for good; the next
    run removes the copy (under the run lock) and makes the job again."""
    plots = results(work, "shift_sweep") / "plots"
    backup = work / ".snakemake" / "backups" / "results" / "shift_sweep" / "plots"
    shutil.copytree(plots, backup)  # what an interrupted `plots` job leaves
    victim = results(work, "shift_sweep") / "tiny-zimage" / "shift-2.0" / "p000_i00_s218.png"
    victim.unlink()
    proc = snakemake(work, *ARGS)
    assert made_images(proc) == [str(victim.relative_to(work))]
    assert not backup.exists() and sorted(plots.iterdir())
    assert nothing_to_do(snakemake(work, *ARGS))


def test_a_changed_prompt_category_reaches_the_tables_and_no_image(work):
    """A prompt's text is in its images' settings; its category is only in the tables and
    metadata, which are remade (no image is)."""
    prompts = json.loads((work / "prompts" / "test.json").read_text())
    prompts["t_002"]["category"] = "animals"
    (work / "prompts" / "test.json").write_text(json.dumps(prompts))
    proc = snakemake(work, *ARGS)
    assert made_images(proc) == []
    table = pd.read_csv(results(work) / "results.csv")
    assert set(table[table["prompt_index"] == 1]["prompt_category"]) == {"animals"}
    meta = json.loads((results(work, "shift_sweep") / "metadata.json").read_text())
    assert [p["category"] for p in meta["prompts"]][1] == "animals"
    assert nothing_to_do(snakemake(work, "-n", *ARGS))


def test_a_changed_reference_cell_and_description_reach_every_table(work):
    experiment = work / "config" / "experiments" / "shift_sweep.yaml"
    text = experiment.read_text().replace("DiffSynth's default is 3.0.", "Now against 4.0.")
    experiment.write_text(text + "reference: shift-4.0\n")
    before = digests(work / "results", "report")
    proc = snakemake(work, *ARGS)
    assert made_images(proc) == []
    sweep = results(work, "shift_sweep")
    meta = json.loads((sweep / "metadata.json").read_text())
    assert meta["reference_cell"] == "shift-4.0" and "Now against 4.0." in meta["description"]
    rows = list(csv.DictReader((sweep / "comparisons.csv").open()))
    cells = {r["reference"] for r in rows if r["comparison"] == "cell vs reference cell"}
    assert cells == {"shift-4.0"}
    against = {r["against"] for r in csv.DictReader((sweep / "metrics" / "fid.csv").open())}
    assert "cell shift-4.0" in against and "cell shift-3.0" not in against
    assert "Now against 4.0." in (sweep / "index.html").read_text()
    after = digests(work / "results", "report")
    assert {k for k in after if after[k] != before.get(k)} <= {
        k for k in after if k.startswith("shift_sweep/") and "/p0" not in k
    }  # no image, and nothing of baseline, changed
    assert nothing_to_do(snakemake(work, *ARGS))


def test_the_viewer_follows_experiments_another_config_made(work):
    """The viewer shows every experiment of the results folder: one a custom-prompt run
    made (prompt-<hash>/<name>) appears on the next run, and goes when deleted."""
    other = work / "results" / "prompt-0123abcd" / "baseline"
    shutil.copytree(results(work), other)

    def viewed() -> list[str]:
        text = (work / "results" / "report" / "data.js").read_text(encoding="utf-8")
        data = json.loads(re.search(r"^window\.T2I\.data = (.*);$", text, re.M).group(1))
        return [e["name"] for e in data["experiments"]]

    assert "prompt-0123abcd/baseline" not in viewed()
    snakemake(work, *ARGS)
    assert "prompt-0123abcd/baseline" in viewed()
    assert nothing_to_do(snakemake(work, "analyze", *ARGS))
    shutil.rmtree(other.parent)
    snakemake(work, *ARGS)
    assert "prompt-0123abcd/baseline" not in viewed()
    assert nothing_to_do(snakemake(work, *ARGS))


# --- file modes ---------------------------------------------------------------------------


def modes(folder: Path) -> tuple[set[int], set[int]]:
    files = {stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*") if p.is_file()}
    dirs = {stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*") if p.is_dir()}
    return files, dirs


def test_files_get_the_modes_of_the_umask(finished, tmp_path):
    """Under the usual umask (022: the finished run) everything is 0644 / 0755; a run
    under 002 (a group's shared folder) makes everything group-writable, the caches of
    resources/ (SQLite scores, timings) too."""
    umask = os.umask(0)
    os.umask(umask)
    assert modes(finished / "results") == ({0o666 & ~umask}, {0o777 & ~umask})
    work = make_workdir(tmp_path)
    config = small_config(work)
    config.update(experiments=["baseline"], models=config["models"][:1])
    config["generation"]["images_per_prompt"] = 1
    write_config(work, config)
    old = os.umask(0o002)
    try:
        snakemake(work, *ARGS)
    finally:
        os.umask(old)
    assert modes(work / "results") == ({0o664}, {0o775})
    cache = work / "resources" / "cache"
    assert {"scores.sqlite", "timings.jsonl"} <= {p.name for p in cache.iterdir()}
    assert modes(cache) == ({0o664}, set())


# --- one run at a time per results folder --------------------------------------------------


def write_lock(work: Path, pid: int, host: str | None = None) -> Path:
    lock = work / "results" / ".t2ibench.lock"
    holder = {"host": host or socket.gethostname(), "pid": pid, "workdir": "/elsewhere/wf"}
    lock.write_text(json.dumps({**holder, "started": "2026-01-01T00:00:00", "token": "x"}))
    return lock


def test_a_second_run_on_the_same_results_folder_is_refused(work, tmp_path):
    victim = image(work)
    victim.unlink()
    other = make_workdir(tmp_path / "other")
    config = small_config(other)
    config.update(results_dir=str(work / "results"), resources_dir=str(work / "resources"))
    write_config(other, config)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        write_lock(work, sleeper.pid)
        before = digests(work / "results")
        proc = snakemake(other, *ARGS, check=False)
        assert proc.returncode != 0
        [line] = errors(proc)
        assert f"another run is writing into {work / 'results'}/ (pid {sleeper.pid}" in line
        assert "working folder /elsewhere/wf" in line
        assert digests(work / "results") == before and not victim.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_killed_runs_lock_is_named_and_cleared_by_unlock(work):
    victim = image(work)
    victim.unlink()
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = write_lock(work, dead.pid)
    proc = snakemake(work, *ARGS, check=False)
    [line] = errors(proc)
    assert "is locked by a run that was killed" in line
    assert "clear it with `snakemake --unlock`" in line and not victim.exists()
    remote = write_lock(work, 1, host="node-17")
    [line] = errors(snakemake(work, *ARGS, check=False))
    assert "locked by a run on another machine (pid 1 on host node-17" in line
    unlocked = snakemake(work, "--unlock", *ARGS)
    assert "removed the run lock" in output(unlocked) and not remote.exists() and not lock.exists()
    assert made_images(snakemake(work, *ARGS)) == [str(victim.relative_to(work))]
    assert not lock.exists()  # released at the end of the run


def test_sigkill_leaves_locks_that_unlock_clears(work):
    """A run killed with SIGKILL leaves Snakemake's lock and the results folder's; the
    next run says so, and `snakemake --unlock` clears both."""
    for path in list(results(work, "shift_sweep").glob("tiny-zimage/*/p00*.png")):
        path.unlink()
    proc = subprocess.Popen(
        [str(Path(os.sys.executable).parent / "snakemake"), "--cores", "2", *ARGS],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    lock = work / "results" / ".t2ibench.lock"
    import time

    deadline = time.monotonic() + 120
    while not lock.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lock.exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    blocked = snakemake(work, *ARGS, check=False)
    assert blocked.returncode != 0 and "--unlock" in output(blocked)
    snakemake(work, "--unlock", *ARGS)
    assert not lock.exists()
    snakemake(work, *ARGS)
    assert nothing_to_do(snakemake(work, "-n", *ARGS))


# --- a full disk inside a job ------------------------------------------------------------


def test_no_space_left_inside_a_job_is_one_line_and_loses_nothing(work):
    """The results folder on a tmpfs that is full: the job writing an image fails with one
    line naming the file and the cause; every finished table stays; no part file is left;
    with space again, the next run finishes."""
    folder = work / "results"
    shutil.move(folder, work / "results.full")
    folder.mkdir()
    used = subprocess.run(["du", "-sk", str(work / "results.full")], capture_output=True)
    size_kb = int(used.stdout.split()[0]) * 2 + 1024  # the files, and room to fill
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        subprocess.run(["cp", "-a", f"{work / 'results.full'}/.", str(folder)], check=True)
        victim = image(work)
        victim.unlink()
        tables = digests(results(work), "tiny-sdxl", "logs")
        filler = folder / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k"], capture_output=True)
        # Room for the run's lock, the job's log and the image's record, not its PNG.
        os.truncate(filler, filler.stat().st_size - 3 * 4096)
        proc = snakemake(work, *ARGS, check=False)
        assert proc.returncode != 0
        [line] = errors(proc)
        assert f"{victim.relative_to(work).with_suffix('')}." in line
        assert ": no space left on the device (ENOSPC)" in line
        assert "Traceback" not in output(proc)
        assert digests(results(work), "tiny-sdxl", "logs") == tables
        assert not list(folder.rglob("*.part")) and not victim.exists()
        filler.unlink()
        assert made_images(snakemake(work, *ARGS)) == [str(victim.relative_to(work))]
        with Image.open(victim) as png:
            png.load()
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


# --- a table job that failed: Snakemake puts the old table back, with a new time --------


def test_a_failed_table_job_is_made_again_by_the_next_run(work):
    """Images remade (another steps value), then every metric job fails on a damaged
    score cache (one line naming it): the old tables are put back by Snakemake with a
    newer time, yet the next run, the cache removed, remakes them from the new images;
    a damaged metric table is one line naming it too. Then nothing is left to do."""
    config = work / "test-config.yaml"
    config.write_text(config.read_text().replace("steps: 2", "steps: 3"))
    cache = work / "resources" / "cache" / "scores.sqlite"
    cache.write_text("not a database")
    proc = snakemake(work, *ARGS, check=False)
    assert proc.returncode != 0 and len(made_images(proc)) == 48
    assert f"{cache.relative_to(work)}: not a readable score cache" in errors(proc)[0]
    stale = pd.read_csv(results(work) / "results.csv")
    assert set(stale["steps"]) == {2}  # the old table, put back
    cache.unlink()
    assert "Nothing to be done" not in output(snakemake(work, "-n", *ARGS))
    snakemake(work, *ARGS)
    fresh = pd.read_csv(results(work) / "results.csv")
    assert set(fresh["steps"]) == {3} and len(fresh) == 12
    records = {
        p: json.loads(Path(work, p).with_suffix(".json").read_text())["settings"]["steps"]
        for p in fresh["image_path"]
    }
    assert set(records.values()) == {3}
    assert not list(results(work).rglob(".*.unfinished"))
    assert nothing_to_do(snakemake(work, "-n", *ARGS))
    table = results(work) / "metrics" / "clip_score.csv"
    good = table.read_bytes()
    table.write_text('garbage,,,"\n')  # its job's made mark says it is not what it made
    snakemake(work, *ARGS)
    assert table.read_bytes() == good
    made_mark(table).unlink()  # a table no job of t2ibench made: read, and refused
    table.write_text('garbage,,,"\n')
    proc = snakemake(work, *ARGS, check=False)
    [line] = errors(proc)
    assert line.endswith(
        f"{table.relative_to(work)}: not a readable metric table (Error tokenizing data. C "
        "error: EOF inside string starting at row 0); remove it and run again"
    ), line
    table.unlink()
    snakemake(work, *ARGS)
    assert nothing_to_do(snakemake(work, "-n", *ARGS))


def test_a_table_removed_cut_or_edited_by_hand_is_made_again(work):
    """Each table, list and page leaves a made mark: a results.csv cut short, an image
    list with lines removed, a metric table removed or with rows removed are each made
    again by the next run (and what reads them after them), the rest left alone; so is
    a viewer whose thumbnail was removed. A damaged built-in model file is built again."""

    def tables():  # not the marks (made anew with each file), nor what holds a timestamp
        found = digests(results(work), "logs", "benchmarks")
        stamped = {"metadata.json", "index.html"}
        return {k: v for k, v in found.items() if k not in stamped and Path(k).name[0] != "."}

    before = tables()
    table, listed = results(work) / "results.csv", results(work) / "images.txt"
    metrics = results(work) / "metrics"
    damages = {
        "results.csv": lambda: table.write_bytes(table.read_bytes()[:300]),
        "images.txt": lambda: listed.write_text("".join(listed.read_text().splitlines(True)[:2])),
        "metric table removed": lambda: (metrics / "clip_score.csv").unlink(),
        "metric rows removed": lambda: (metrics / "fid.csv").write_text(
            (metrics / "fid.csv").read_text().splitlines(True)[0]
        ),
        "viewer thumbnail removed": lambda: next(
            (work / "results/report/thumbs").iterdir()
        ).unlink(),
    }
    thumbs = sorted(p.name for p in (work / "results/report/thumbs").iterdir())
    for what, damage in damages.items():
        damage()
        assert not nothing_to_do(snakemake(work, "-n", *ARGS)), what
        snakemake(work, *ARGS)
        assert tables() == before, what
        assert sorted(p.name for p in (work / "results/report/thumbs").iterdir()) == thumbs
        assert nothing_to_do(snakemake(work, "-n", *ARGS)), what
    checkpoint = Path(builtin_paths(str(work / "resources"), "tiny-sdxl")[0])
    data = checkpoint.read_bytes()
    checkpoint.unlink()  # the tests' built-ins are shared links: damage a copy
    checkpoint.write_bytes(data[:100_000])
    pngs = {k: v for k, v in before.items() if k.endswith(".png")}
    snakemake(work, *ARGS)
    assert checkpoint.read_bytes() == data
    assert {k: v for k, v in tables().items() if k.endswith(".png")} == pngs
    assert nothing_to_do(snakemake(work, "-n", *ARGS))


def test_a_changed_metric_setting_remakes_its_table_without_snakemakes_records(work):
    """Results moved without .snakemake/ (Snakemake keeps each job's params there): a
    metric setting changed since still remakes that metric's table, by its made mark,
    and only it."""
    import yaml

    shutil.rmtree(work / ".snakemake" / "metadata")
    metrics = results(work) / "metrics"
    before = {p.name: p.read_bytes() for p in metrics.glob("*.csv")}
    config = yaml.safe_load((work / "test-config.yaml").read_text())
    config["metrics"]["lpips"] = {"net": "squeeze"}  # enabled: on by default
    write_config(work, config)
    assert not nothing_to_do(snakemake(work, "-n", *ARGS))
    snakemake(work, *ARGS)
    after = {p.name: p.read_bytes() for p in metrics.glob("*.csv")}
    assert after["lpips_diversity.csv"] != before["lpips_diversity.csv"]
    assert {k: v for k, v in after.items() if k != "lpips_diversity.csv"} == {
        k: v for k, v in before.items() if k != "lpips_diversity.csv"
    }
    assert nothing_to_do(snakemake(work, "-n", *ARGS))
