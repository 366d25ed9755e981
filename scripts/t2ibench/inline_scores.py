"""Scoring images while they are in memory, in the job that made them.

With ``metrics.score_in_generation`` on, a generation job scores each image it makes with
the enabled per-image prompt metrics (those registered with a ``scorer``: CLIP score,
SigLIP, HPS, PickScore, ImageReward) as soon as the PNG is written, from the pixels in
memory: no PNG is decoded. The scores go to the score cache under the same keys the
metric jobs use (the PNG file's SHA-256, the scorer's metric id and the prompt), so the
metric jobs then find them there and score nothing. A PNG is lossless: the pixels in
memory are the pixels the metric job would decode, and the scores agree with the metric
job's to float rounding (a batch of other images, tests/test_inline_scores.py).

Scores are batched up to each scorer's ``batch_size`` and run on the writer's thread,
under the lock models run under (between the generation's batches on one device); the
images' transforms (resizing) run on ``metrics.workers`` threads. Nothing that goes wrong
here reaches the images: a scorer, or the cache, that fails is logged once and dropped;
its metric job then scores the images instead, and says the error there.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from t2ibench.generate import TORCH_LOCK

log = logging.getLogger("t2ibench")

# Scorers built in this process, by builder and config: a Snakemake process runs many
# per-image jobs as threads, and each reuses the scorers of the first; the metric jobs
# reuse them too (t2ibench.metrics.builders), rather than hold a second copy.
_SCORERS: dict[tuple, object] = {}
_BUILD_LOCK = threading.Lock()


def _key(plan, build) -> tuple:
    import json

    config = plan.config
    metrics = json.dumps(config["metrics"], sort_keys=True, default=str)
    return (
        build.__module__,
        build.__qualname__,
        metrics,
        config["device"],
        config["resources_dir"],
    )


def built_scorer(plan, build):
    """The scorer `build(plan)` already built in this process by a generation job, or
    None."""
    return _SCORERS.get(_key(plan, build))


def _scorer_metrics(plan) -> list:
    from t2ibench.metrics import registry

    metrics_config = plan.config["metrics"]
    if not metrics_config.get("score_in_generation"):
        return []
    return [
        m for m in registry.all_metrics() if m.scorer is not None and m.name in
        registry.enabled(metrics_config)
    ]  # fmt: skip


def _scorer(plan, metric):
    key = _key(plan, metric.scorer)
    with _BUILD_LOCK:
        if key not in _SCORERS:
            with TORCH_LOCK:
                _SCORERS[key] = metric.scorer(plan)
        return _SCORERS[key]


class InlineScores:
    """The scores of a job's images, made as the writer writes them (``add``) and put
    in the score cache batch by batch; ``close`` scores what is left."""

    def __init__(self, plan, cache_path: Path, prompts: dict[str, str], metrics: list):
        """``prompts``: image path -> the prompt it is scored against (Plan.prompt_text);
        ``metrics``: the registry entries whose scorers score them."""
        self.plan = plan
        self.cache_path = Path(cache_path)
        self.prompts = prompts
        self.metrics = metrics
        self.scorers: dict[str, object] = {}
        self.pending: list[tuple[object, str, str]] = []  # (image, prompt, png sha256)
        self.scored = 0
        self._lock = threading.Lock()
        workers = plan.config["metrics"]["workers"]
        self.pool = ThreadPoolExecutor(workers, "t2ibench-score") if workers > 1 else None

    @classmethod
    def for_jobs(cls, plan, cache_path: Path, jobs) -> InlineScores | None:
        """Inline scores for the plan's ``jobs``, or None when none are asked for."""
        metrics = _scorer_metrics(plan)
        if not metrics:
            return None
        prompts = {plan.path(j): plan.prompt_text(j) for j in jobs}
        return cls(plan, cache_path, prompts, metrics)

    def _batch_size(self) -> int:
        return max((scorer.batch_size for scorer in self.scorers.values()), default=1)

    def add(self, image_path: str, image, record: dict) -> None:
        """An image just written (its record holds the PNG's sha256). Flagged images
        (black, NaN) are not scored, as in the metric jobs."""
        if record.get("image_flag") or image_path not in self.prompts:
            return
        with self._lock:
            if not self.scorers and self.metrics:
                self._build()
            self.pending.append((image, self.prompts[image_path], record["png_sha256"]))
            if len(self.pending) >= self._batch_size():
                self._flush()

    def close(self, score_pending: bool = True) -> None:
        """Score what is pending (unless told not to: an interrupted job leaves it to the
        metric jobs) and stop the transform threads."""
        with self._lock:
            if score_pending:
                self._flush()
            self.pending = []
            if self.pool is not None:
                self.pool.shutdown()
                self.pool = None

    def __enter__(self) -> InlineScores:
        return self

    def __exit__(self, kind, *exc) -> None:
        self.close(score_pending=kind is None)

    def _build(self) -> None:
        for metric in self.metrics:
            try:
                self.scorers[metric.name] = _scorer(self.plan, metric)
            except Exception as err:  # noqa: BLE001 - the metric job reports it in full
                log.warning("%s: not scored in generation (%s); its metric job scores it",
                            metric.name, err)  # fmt: skip
        self.metrics = []

    def _flush(self) -> None:
        if not self.pending or not self.scorers:
            self.pending = []
            return
        images, prompts, shas = (list(column) for column in zip(*self.pending, strict=True))
        self.pending = []
        for name, scorer in list(self.scorers.items()):
            try:
                self._score(scorer, images, prompts, shas)
            except Exception as err:  # noqa: BLE001 - the metric job reports it in full
                log.warning("%s: not scored in generation (%s); its metric job scores it",
                            name, err)  # fmt: skip
                del self.scorers[name]
        self.scored += len(images)

    def _score(self, scorer, images, prompts, shas) -> None:
        """One scorer's scores of a batch, into the cache. Under the lock the models run
        under: loading a model elsewhere in the process in fp16/bf16 changes torch's
        default dtype meanwhile, and with it the pixels the transforms make."""
        from t2ibench.metrics.cache import ScoreCache
        from t2ibench.scoring import prompt_metric_id

        with TORCH_LOCK:
            scores = scorer.score(images, prompts, self.pool)
        keys = [
            (sha, prompt_metric_id(scorer.metric_id, text))
            for sha, text in zip(shas, prompts, strict=True)
        ]
        ScoreCache(self.cache_path).put_many(dict(zip(keys, scores, strict=True)))
