"""A SQLite cache of per-image scores, keyed by image content and metric.

A key is ``(image_sha256, metric_id)``: the SHA-256 of the image file's bytes and the
``metric_id`` of the scorer (model, weights and formula version). Re-running a benchmark
therefore re-scores only images whose bytes or metric changed.

Every write is one transaction, so a crash leaves either all or none of a batch. The database
runs in WAL mode with a busy timeout, so several processes (Snakemake jobs) can read and
write it at once; like any SQLite file it needs a filesystem with working locks (not every
network filesystem has them). A connection is opened per call, so a ``ScoreCache`` may be
shared between threads.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Iterable, Mapping
from contextlib import closing
from pathlib import Path

from t2ibench.errors import InputError

Key = tuple[str, str]  # (image_sha256, metric_id)

# SQLite's default limit on ``?`` parameters per statement is 999 before 3.32, 32766 after.
_CHUNK = 500


def image_sha256(path: Path | str) -> str:
    """The cache's image key: the SHA-256 of the image file's bytes (not of its pixels),
    read once per process while the file is unchanged (the image list, which verifies
    every image, and each metric job ask for the same images)."""
    from t2ibench.freshness import file_sha256

    return file_sha256(path)


class ScoreCache:
    """Scores by ``(image_sha256, metric_id)`` in the SQLite file ``path`` (created if absent)."""

    def __init__(self, path: Path | str, timeout: float = 60.0):
        self.path = Path(path)
        self.timeout = timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        with closing(self._connect()) as db, db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS scores ("
                " image_sha256 TEXT NOT NULL, metric_id TEXT NOT NULL, value REAL NOT NULL,"
                " PRIMARY KEY (image_sha256, metric_id)) WITHOUT ROWID"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS texts ("
                " image_sha256 TEXT NOT NULL, metric_id TEXT NOT NULL, value TEXT NOT NULL,"
                " PRIMARY KEY (image_sha256, metric_id)) WITHOUT ROWID"
            )
        if new:  # SQLite creates 0644 whatever the umask; its -wal / -shm files follow it
            from t2ibench.io import umask_mode

            os.chmod(self.path, umask_mode(0o666))

    def get_many(self, keys: Iterable[Key], table: str = "scores") -> dict[Key, float]:
        """The cached scores among ``keys``; keys not in the cache are left out. ``table``
        "texts" holds text values (a verdict's reason) under keys of the same kind."""
        assert table in ("scores", "texts")
        by_metric: dict[str, list[str]] = {}
        for sha, metric_id in keys:
            by_metric.setdefault(metric_id, []).append(sha)
        found: dict[Key, float] = {}
        with closing(self._connect()) as db:
            for metric_id, shas in by_metric.items():
                for start in range(0, len(shas), _CHUNK):
                    chunk = shas[start : start + _CHUNK]
                    rows = db.execute(
                        f"SELECT image_sha256, value FROM {table} WHERE metric_id = ?"
                        f" AND image_sha256 IN ({', '.join('?' * len(chunk))})",
                        [metric_id, *chunk],
                    )
                    found.update(((sha, metric_id), value) for sha, value in rows)
        return found

    def put_many(self, items: Mapping[Key, float], table: str = "scores") -> None:
        """Store (or overwrite) scores (or, in "texts", text values), in one transaction."""
        assert table in ("scores", "texts")
        if table == "scores":  # NaN is not stored (SQLite has none): it is scored again
            rows = [(sha, m, float(v)) for (sha, m), v in items.items() if math.isfinite(float(v))]
        else:
            rows = [(sha, m, str(v)) for (sha, m), v in items.items()]
        with closing(self._connect()) as db, db:
            db.executemany(
                f"INSERT OR REPLACE INTO {table} (image_sha256, metric_id, value) VALUES (?, ?, ?)",
                rows,
            )

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=self.timeout)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as err:
            db.close()
            if isinstance(err, sqlite3.OperationalError):  # locked, busy: as it is
                raise
            raise InputError(
                f"{self.path}: not a readable score cache ({err}); remove it and run again "
                "(the scores are computed again)"
            ) from None
        return db
