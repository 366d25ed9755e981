"""Checks before the first job: devices, the results folder's run lock, OS errors."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess

import pytest

from t2ibench import runlock
from t2ibench.config import check_finite, validate_config
from t2ibench.config_paths import check_folder
from t2ibench.errors import InputError, JobError, os_error_line
from t2ibench.io import final_name
from t2ibench.preflight import check_devices, device_settings

from conftest import with_changes


def test_device_settings_name_each_key(base_config):
    config = validate_config(
        with_changes(
            base_config,
            metrics={"device": "cuda:1", "clip": {"device": "cpu"}, "hps": {"enabled": False}},
        )
    )
    settings = dict(device_settings(config))
    assert settings["device"] == "auto"
    assert settings["metrics.device"] == "cuda:1" and settings["metrics.clip.device"] == "cpu"
    assert "metrics.hps.device" not in settings


def test_a_device_that_is_not_here_is_named_by_its_key(base_config):
    import torch

    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 CUDA devices")
    config = validate_config(with_changes(base_config, metrics={"siglip": {"device": "cuda:7"}}))
    with pytest.raises(InputError, match=r"^config key 'metrics.siglip.device': cuda:7 requested"):
        check_devices(config)
    check_devices(validate_config(base_config))  # auto and cpu need no check


def test_the_run_lock(tmp_path):
    lock = runlock.acquire(tmp_path, tmp_path)
    holder = json.loads(lock.path.read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    assert runlock.acquire(tmp_path, tmp_path).token == lock.token  # the same process
    runlock.release(lock)
    assert not lock.path.exists()
    runlock.release(lock)  # twice: nothing to do


def test_a_live_lock_of_another_process_is_refused(tmp_path):
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        lock = runlock.lock_path(tmp_path)
        info = {"host": socket.gethostname(), "pid": sleeper.pid, "workdir": "/w", "token": "t"}
        lock.write_text(json.dumps(info))
        with pytest.raises(InputError, match=rf"another run is writing into .*pid {sleeper.pid}"):
            runlock.acquire(tmp_path, tmp_path)
        assert "still running" in runlock.unlock(tmp_path) and lock.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    # The same pid, now dead: a killed run's lock, which --unlock removes.
    with pytest.raises(InputError, match=r"locked by a run that was killed .*snakemake --unlock"):
        runlock.acquire(tmp_path, tmp_path)
    assert runlock.unlock(tmp_path).startswith("removed the run lock")
    assert runlock.unlock(tmp_path) is None


def test_a_reused_pid_does_not_pass_for_the_run(tmp_path):
    """The lock records when its process started: another process that got the same
    pid later is not the run."""
    lock = runlock.lock_path(tmp_path)
    mine = {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": "1", "token": "t"}
    lock.write_text(json.dumps({**mine, "pid": os.getppid()}))
    if runlock._process_start(os.getppid()) is None:
        pytest.skip("no /proc here")
    with pytest.raises(InputError, match="killed"):
        runlock.acquire(tmp_path, tmp_path)


def test_a_damaged_lock_is_said_to_be_damaged(tmp_path):
    runlock.lock_path(tmp_path).write_text("{not json")
    with pytest.raises(InputError, match=r"damaged run lock .*snakemake --unlock"):
        runlock.acquire(tmp_path, tmp_path)


def test_os_errors_are_one_line_naming_the_final_file(tmp_path):
    tmp = tmp_path / ".results.csv.0a1b2c3d.part"
    assert final_name(tmp) == str(tmp_path / "results.csv")
    err = OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert os_error_line(err) == f"{tmp_path / 'results.csv'}: no space left on the device (ENOSPC)"
    unnamed = OSError(errno.EROFS, "Read-only file system")
    assert os_error_line(unnamed, "out.png") == "out.png: read-only file system (EROFS)"
    # A library's own OSError is not the system's: its words, in their case, not blamed
    # on the file being written.
    library = OSError("Error no file named config.json found in directory /m/Vae.")
    assert os_error_line(library, "out.png") == (
        "while making out.png: Error no file named config.json found in directory /m/Vae."
    )


def test_an_os_error_in_a_step_keeps_the_finished_file(tmp_path, monkeypatch):
    """A step that hits a full disk: one line (JobError, also in the job's log), and the
    file it was replacing is the old one, with no part file beside it."""
    from t2ibench import io
    from t2ibench.console import logged

    target = tmp_path / "table.csv"
    target.write_text("finished\n")

    def full_disk(tmp):
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    log = tmp_path / "logs" / "job.log"
    with pytest.raises(JobError, match=rf"^{target}: no space left on the device \(ENOSPC\)$"):
        with logged(str(log), str(target)):
            io.atomic_write(target, full_disk)
    assert target.read_text() == "finished\n"
    # The old file stays, marked unfinished (the next run makes it again); no part file.
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [".table.csv.unfinished", "logs", "table.csv"]
    assert "error: " in log.read_text()


def test_a_step_replacing_a_file_is_marked_until_it_succeeds(tmp_path):
    """The unfinished mark: made only when the output exists, left by a failure or an
    interrupt, removed by success; unfinished_outputs lists what it marks, as the folder
    spells it, and drops marks of files gone."""
    from t2ibench import io
    from t2ibench.console import logged

    log = str(tmp_path / "logs" / "job.log")
    new, old = tmp_path / "new.csv", tmp_path / "old.csv"
    with pytest.raises(KeyboardInterrupt), logged(log, str(new)):
        raise KeyboardInterrupt
    assert not io.unfinished_mark(new).exists()  # nothing to put back: no mark
    old.write_text("finished\n")
    with pytest.raises(KeyboardInterrupt), logged(log, str(old)):
        assert io.unfinished_mark(old).exists()
        raise KeyboardInterrupt
    assert io.unfinished_outputs(str(tmp_path)) == [f"{tmp_path}/old.csv"]
    with logged(log, str(old)):
        io.write_text(old, "again\n")
    assert io.unfinished_outputs(str(tmp_path)) == [] and not io.unfinished_mark(old).exists()
    with pytest.raises(ValueError), logged(log, str(old), mark=False):
        raise ValueError
    assert not io.unfinished_mark(old).exists()
    io.unfinished_mark(tmp_path / "gone.csv").touch()
    assert io.unfinished_outputs(str(tmp_path)) == []
    assert not io.unfinished_mark(tmp_path / "gone.csv").exists()


def test_finite_numbers_and_folders(tmp_path):
    check_finite({"a": [1.0, {"b": 2}]})
    with pytest.raises(InputError, match=r"^config key 'a\[1\]\.b': expected a finite number"):
        check_finite({"a": [1.0, {"b": float("-inf")}]})
    check_folder(str(tmp_path / "new" / "deeper"), "config key 'results_dir'")
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match=r"cannot be a folder: .*file is a file"):
        check_folder(str(tmp_path / "file" / "x"), "config key 'results_dir'")


def test_stale_backups_are_removed_only_inside_snakemakes_backup_folder(tmp_path, caplog):
    from t2ibench.preflight import clear_stale_backups

    # The empty folders a finished run leaves go without a word.
    empty = tmp_path / "w" / ".snakemake" / "backups" / "results" / "exp"
    empty.mkdir(parents=True)
    with caplog.at_level("INFO", logger="t2ibench"):
        clear_stale_backups("results", str(tmp_path / "w"))
    assert not empty.exists() and "removed" not in caplog.text

    work = tmp_path / "a" / "b"
    stale = work / ".snakemake" / "backups" / "results" / "exp" / "plots"
    stale.mkdir(parents=True)
    (stale / "x.png").write_bytes(b"x")
    with caplog.at_level("INFO", logger="t2ibench"):
        clear_stale_backups("results", str(work))
    assert not (work / ".snakemake" / "backups" / "results").exists()
    assert "removed 1 file(s) an interrupted run left" in caplog.text
    # a results_dir with `..` points outside the backups: nothing there is removed
    outside = work / "results"
    outside.mkdir()
    (outside / "keep.png").write_bytes(b"k")
    clear_stale_backups("../../results", str(work))
    assert (outside / "keep.png").is_file()
    clear_stale_backups("/abs/results", str(work))  # nothing there: nothing happens


def test_snakemakes_console_does_not_repeat_a_jobs_one_line_error(tmp_path):
    """Snakemake's RuleException around a job's InputError or JobError, and "no backup
    found" for outputs the job never wrote, stay off the console but in the full log;
    any other exception keeps its frames on the console."""
    import io
    import logging

    from t2ibench.console import quiet_snakemake_console

    logger = logging.getLogger("snakemake.logging")
    stream = io.StringIO()
    console = logging.StreamHandler(stream)
    full = logging.FileHandler(tmp_path / "full.log")
    saved = logger.handlers[:], logger.level
    logger.handlers, logger.level = [console, full], logging.INFO
    frame = '\n  File "scripts/t2ibench/generate.py", line 186, in _load'
    try:
        quiet_snakemake_console()
        quiet_snakemake_console()  # once per parse of the Snakefile: one filter
        logger.error(
            f'RuleException:\nInputError in file "rules/generate.smk", line 19:\nm: lacks{frame}'
        )
        logger.error(
            f'RuleException:\nJobError in file "rules/report.smk", line 9:\ndisk full{frame}'
        )
        logger.error(
            f'RuleException:\nValueError in file "rules/generate.smk", line 19:\nboom{frame}'
        )
        logger.warning("Cannot restore results/a.png: no backup found.")
        logger.warning("Some other warning about results/a.png")
    finally:
        logger.handlers, logger.level = saved
        full.close()
    shown = stream.getvalue()
    assert len(console.filters) == 1
    assert "InputError" not in shown and "JobError" not in shown and "no backup" not in shown
    assert "ValueError in file" in shown and frame in shown and "Some other warning" in shown
    kept = (tmp_path / "full.log").read_text()
    assert "InputError in file" in kept and "JobError in file" in kept and "no backup" in kept


def test_made_marks_find_files_changed_since_their_job(tmp_path):
    """A made mark holds what its job wrote: the file removed, cut or edited is changed;
    one that only got a new time (a copy) is not; a damaged mark counts as changed; the
    check writes nothing."""
    import os

    from t2ibench.io import changed_outputs, made_mark, record_made

    folder = str(tmp_path)
    files = {name: tmp_path / name for name in ("a.csv", "b.csv", "c.csv", "d.csv", "e.csv")}
    for path in files.values():
        path.write_text("x,y\n1,2\n")
        record_made(path)
    assert changed_outputs(folder) == []
    files["a.csv"].unlink()
    files["b.csv"].write_text("x,y\n")
    files["c.csv"].write_text("x,y\n1,3\n")  # the same size, other bytes
    os.utime(files["d.csv"], (1e9, 1e9))  # the same bytes, another time
    made_mark(files["e.csv"]).write_text("{not json")
    assert changed_outputs(folder) == [
        f"{folder}/{n}" for n in ("a.csv", "b.csv", "c.csv", "e.csv")
    ]
    marks = {p.name: p.read_bytes() for p in tmp_path.glob(".*.made")}
    assert changed_outputs(folder) == [
        f"{folder}/{n}" for n in ("a.csv", "b.csv", "c.csv", "e.csv")
    ]
    assert {p.name: p.read_bytes() for p in tmp_path.glob(".*.made")} == marks  # none written
    assert changed_outputs(str(tmp_path / "none")) == []


def test_a_made_mark_holds_the_settings_its_file_was_made_with(tmp_path):
    from t2ibench.io import changed_outputs, record_made, settings_digest

    table = tmp_path / "clip_score.csv"
    table.write_text("image_path,clip_score\n")
    record_made(table, {"model": "ViT-L-14"})
    now = {"clip_score.csv": settings_digest({"model": "ViT-L-14"})}
    assert changed_outputs(str(tmp_path), now) == []
    other = {"clip_score.csv": settings_digest({"model": "ViT-B-32"})}
    assert changed_outputs(str(tmp_path), other) == [f"{tmp_path}/clip_score.csv"]
    record_made(table)  # a mark without settings: only the file is checked
    assert changed_outputs(str(tmp_path), other) == []


def test_the_closing_line_names_only_what_is_there(tmp_path):
    """After `snakemake generate` there are no tables and no report: the last line says
    where the images are instead of pointing at files that do not exist."""
    import logging

    from t2ibench.console import closing_summary

    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("t2ibench")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        results = tmp_path / "results"
        closing_summary(str(results), ["baseline", "shift"], str(results))
        (results / "baseline").mkdir(parents=True)
        (results / "baseline" / "results.csv").write_text("")
        closing_summary(str(results), ["baseline", "shift"], str(results))
        (results / "shift").mkdir()
        (results / "shift" / "results.csv").write_text("")
        (results / "report").mkdir()
        (results / "report" / "index.html").write_text("")
        closing_summary(str(results), ["baseline", "shift"], str(results))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    generated, one, both = lines
    assert "no tables yet" in generated and "results.csv" not in generated
    assert "report" not in generated and f"images in {results}/<experiment>/" in generated
    assert f"tables in {results}/baseline/ (results.csv" in one and "; open " not in one
    assert "for baseline, shift" in both and both.endswith(f"open {results}/report/index.html")


def test_a_cluster_executor_without_its_commands_is_one_line(tmp_path, monkeypatch):
    """--profile profiles/slurm on a machine without SLURM: refused before any job,
    instead of a traceback from the executor plugin per job."""
    from t2ibench.preflight import check_executor

    monkeypatch.setenv("PATH", str(tmp_path))
    check_executor("local")
    with pytest.raises(
        InputError, match=r"^the slurm executor .+ sbatch, squeue, sacct are not on"
    ):
        check_executor("slurm")
    for command in ("sbatch", "squeue", "sacct"):
        script = tmp_path / command
        script.write_text("#!/bin/sh\n")
        script.chmod(0o755)
    check_executor("slurm")
