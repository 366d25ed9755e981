"""The engine's writer thread (t2ibench.writer.Writer): writes in order, every queued
image before close, and a write's error reaches the job."""

from __future__ import annotations

import threading
import time

import pytest

from t2ibench.writer import Writer


def test_every_queued_write_is_done_by_close_in_order():
    done, threads = [], set()

    def task(i):
        def write():
            time.sleep(0.01)
            threads.add(threading.current_thread().name)
            done.append(i)

        return write

    with Writer(depth=2) as writer:
        for i in range(10):
            writer.submit(task(i))
    assert done == list(range(10)) and writer.written == 10
    assert threads == {"t2ibench-writer"}  # not the job's thread


def test_an_error_of_a_write_reaches_the_job_and_stops_the_writes():
    done = []

    def fail():
        raise OSError("disk full")

    writer = Writer()
    writer.submit(fail)
    writer.submit(lambda: done.append(1))
    with pytest.raises(OSError, match="disk full"):
        writer.close()
    assert done == []


def test_leaving_on_an_interrupt_still_writes_what_was_made():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with Writer() as writer:
            writer.submit(lambda: (time.sleep(0.05), done.append("a")))
            raise KeyboardInterrupt
    assert done == ["a"]


def test_progress_past_the_planned_total_is_one_line_every_few_seconds(caplog, monkeypatch):
    """Later rounds of a sequential run make more than the plan line counted: past the
    total, progress is still a line every few seconds, not one per image."""
    from t2ibench import generate

    now = [100.0]
    monkeypatch.setattr(generate.time, "monotonic", lambda: now[0])
    progress = generate.Progress(total=3)
    with caplog.at_level("INFO", logger="t2ibench"):
        for _ in range(20):
            now[0] += 0.5
            progress.step()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("generated")]
    assert lines == ["generated 3/3 images (2.00 img/s, ~0 s left)", "generated 13 images"]
