"""ScoreCache: SQLite round trips, misses, persistence and concurrent writers."""

import hashlib
import multiprocessing
import sqlite3

import pytest

from t2ibench.metrics.cache import ScoreCache, image_sha256

CLIP = "clip_score/v1/open_clip-tiny@abc/random:seed0"
LPIPS = "lpips/v1/alex-lin0.1/random:seed0"


def test_round_trip(tmp_path):
    cache = ScoreCache(tmp_path / "scores.sqlite")
    items = {("a" * 64, CLIP): 21.5, ("b" * 64, CLIP): 0.0, ("a" * 64, LPIPS): 0.125}
    cache.put_many(items)
    assert cache.get_many(items) == items
    assert cache.get_many([]) == {}


def test_other_metric_or_image_is_a_miss(tmp_path):
    cache = ScoreCache(tmp_path / "scores.sqlite")
    cache.put_many({("a" * 64, CLIP): 21.5})
    other_metric = CLIP.replace("seed0", "seed1")
    assert cache.get_many([("a" * 64, other_metric), ("c" * 64, CLIP)]) == {}
    assert cache.get_many([("a" * 64, other_metric), ("a" * 64, CLIP)]) == {("a" * 64, CLIP): 21.5}


def test_overwrite_keeps_latest(tmp_path):
    cache = ScoreCache(tmp_path / "scores.sqlite")
    cache.put_many({("a" * 64, CLIP): 1.0})
    cache.put_many({("a" * 64, CLIP): 2.0})
    assert cache.get_many([("a" * 64, CLIP)]) == {("a" * 64, CLIP): 2.0}


def test_survives_reopening_and_many_keys(tmp_path):
    path = tmp_path / "sub" / "scores.sqlite"
    items = {(f"{i:064x}", CLIP): i / 7 for i in range(1234)}  # more than one IN (...) chunk
    ScoreCache(path).put_many(items)
    assert ScoreCache(path).get_many(items) == items


def test_failed_batch_writes_nothing(tmp_path):
    cache = ScoreCache(tmp_path / "scores.sqlite")
    items = {("a" * 64, CLIP): 1.0, (None, CLIP): 2.0}  # a NULL key violates NOT NULL
    with pytest.raises(sqlite3.IntegrityError):
        cache.put_many(items)
    assert cache.get_many([("a" * 64, CLIP)]) == {}


def _writer(path, worker: int) -> None:
    cache = ScoreCache(path)
    for batch in range(20):
        cache.put_many({(f"{worker}-{batch}-{i}", CLIP): float(i) for i in range(10)})


def test_several_processes_write_at_once(tmp_path):
    path = tmp_path / "scores.sqlite"
    ScoreCache(path)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(path, w)) for w in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    keys = [(f"{w}-{b}-{i}", CLIP) for w in range(3) for b in range(20) for i in range(10)]
    assert len(ScoreCache(path).get_many(keys)) == 600


def test_image_sha256_hashes_file_bytes(tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG not really" * 100_000)
    assert image_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert image_sha256(str(path)) == image_sha256(path)


def test_nan_is_not_stored_and_is_scored_again(tmp_path):
    import math

    from t2ibench.metrics.cache import ScoreCache

    cache = ScoreCache(tmp_path / "s.sqlite")
    cache.put_many({("a", "m"): math.nan, ("b", "m"): 1.5})
    assert cache.get_many([("a", "m"), ("b", "m")]) == {("b", "m"): 1.5}
    cache.put_many({("a", "m"): "why"}, table="texts")
    assert cache.get_many([("a", "m")], table="texts") == {("a", "m"): "why"}
