"""What a run says: t2ibench's log lines on the console and in each job's log file,
the start-up summary of the plan, and the closing summary.

The console gets the plan, progress, model loads, warnings and the closing summary; the
details of each job (and the model libraries' messages and warnings) go to that job's
log file under results/<experiment>/logs/. Snakemake's own console output is set by
profiles/default (a logger plugin), and its full log goes to .snakemake/log/.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from pathlib import Path

from t2ibench.errors import InputError, JobError, Stopped, os_error_line
from t2ibench.io import record_made, unfinished_mark
from t2ibench.plan import Plan

log = logging.getLogger("t2ibench")


class _ToJobLog(logging.Handler):
    """Passes a library's log records (and Python warnings) to t2ibench's logger at debug
    level: they go to the log file of the job that raised them, not to the console."""

    def emit(self, record: logging.LogRecord) -> None:
        log.debug("%s: %s", record.name, record.getMessage())


LIBRARY_LOGGERS = ("diffusers", "transformers", "huggingface_hub", "py.warnings")


class _ToSnakemake(logging.Handler):
    """Passes t2ibench's console lines to Snakemake's logger, so that its logger plugin
    prints them (above its progress display in a terminal) and its log file keeps them."""

    def emit(self, record: logging.LogRecord) -> None:
        from snakemake.logging import logger

        try:
            logger.log(record.levelno, self.format(record))
        except Exception:  # the console must never fail a job
            self.handleError(record)


# Snakemake's console lines that repeat what t2ibench has said (the console filter):
# a job's one-line error (t2ibench's "error: ..." line and the failed job's log already
# say it) or its stop on Ctrl-C as a RuleException with the frames it passed through,
# and, for a job that failed before it wrote its update() outputs, that there was no old
# file to put back.
_REPEATED = (
    (logging.ERROR, re.compile(r"RuleException:\n(InputError|JobError|Stopped) in file ")),
    (logging.WARNING, re.compile(r"Cannot restore .+: no backup found\.$")),
)


def _not_repeated(record: logging.LogRecord) -> bool:
    message = record.msg if isinstance(record.msg, str) else ""
    if any(record.levelno == level and rx.match(message) for level, rx in _REPEATED):
        return False
    # After Ctrl-C, the jobs that stop say so in one line each; Snakemake's failure
    # notice of each (with the whole job log, in the rich logger) would repeat it.
    return not (
        _interrupted() and getattr(getattr(record, "event", None), "name", "") == "JOB_ERROR"
    )


def _interrupted() -> bool:
    from t2ibench.generate import STOP

    return STOP.is_set()


def quiet_snakemake_console() -> None:
    """Keep Snakemake's console handlers (not its log file, which keeps everything)
    from printing what repeats t2ibench's own lines; see _REPEATED."""
    for handler in logging.getLogger("snakemake.logging").handlers:
        if not isinstance(handler, logging.FileHandler) and _not_repeated not in handler.filters:
            handler.addFilter(_not_repeated)


def setup_logging() -> None:
    """Send t2ibench's console lines through Snakemake's logger, once per process.

    Some libraries (open_clip) log through the root logger, which makes Python install a
    stderr handler on it; Snakemake's messages would then print twice. A root handler
    that drops records prevents that. The model libraries' messages (and warnings) go to
    the job logs; their progress bars are turned off (see quiet_libraries).
    """
    if not logging.root.handlers:
        logging.root.addHandler(logging.NullHandler())
    if not log.handlers:
        handler = _ToSnakemake()
        handler.setFormatter(logging.Formatter("t2ibench: %(message)s"))
        handler.setLevel(logging.INFO)  # per-image and per-step details go to the rule logs
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)
        log.propagate = False
        logging.captureWarnings(True)
        for name in LIBRARY_LOGGERS:
            _route_to_job_logs(logging.getLogger(name))
    quiet_snakemake_console()  # Snakemake may have set up new handlers since


def _route_to_job_logs(logger: logging.Logger) -> None:
    logger.handlers = [_ToJobLog()]
    logger.propagate = False


def quiet_libraries() -> None:
    """No progress bars from the model libraries; their warnings to the job logs (the
    libraries reset their loggers' handlers when they are first imported)."""
    import diffusers.utils.logging as diffusers_logging
    import huggingface_hub.utils
    import transformers.utils.logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()
    for name in ("diffusers", "transformers"):
        logging.getLogger(name).setLevel(logging.WARNING)
        _route_to_job_logs(logging.getLogger(name))


class _JobLogFile(logging.FileHandler):
    """A job's log file. A line it cannot write (the disk is full) is dropped quietly:
    the console has it, and the job's own error says what failed."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


@contextlib.contextmanager
def logged(path: str, output: str | None = None, mark: bool = True, settings=None):
    """Also write t2ibench log messages to a rule's log file while it runs.

    Jobs may run as threads of one process: the file gets only the messages of the
    thread that runs this job, not those of jobs running beside it. Bad input found only
    now, and an operating-system error (a full disk, a folder it may not write), end the
    job with one line naming the file (`output`, when the error names none); the files
    are written atomically, so nothing is left half-written.

    With `mark`, a job that replaces an existing `output` (an `update()` table) leaves an
    unfinished mark beside it until it succeeds (t2ibench.io.unfinished_mark): when it
    fails or is interrupted, Snakemake puts the old file back with a new time, which
    would pass for up to date; the mark has the next run make it again. A job that
    succeeds leaves a made mark (t2ibench.io.made_mark), with the digest of the
    `settings` it was made with: a file removed, cut or edited since, or whose settings
    changed, is made again by the next run.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    marked = unfinished_mark(output) if mark and output and Path(output).exists() else None
    if marked is not None:
        marked.touch()
    handler = _JobLogFile(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    thread = threading.get_ident()
    handler.addFilter(lambda record: record.thread == thread)
    log.addHandler(handler)
    try:
        yield
        if mark and output and Path(output).is_file():
            record_made(output, settings)
        if marked is not None:
            marked.unlink(missing_ok=True)
    except InputError as err:  # bad input found only now: say it in the rule's log too
        log.error("error: %s", err)
        raise
    except Stopped as err:  # Ctrl-C between images
        log.warning("%s", err)
        raise
    except OSError as err:
        message = os_error_line(err, output)
        log.error("error: %s", message)
        raise JobError(message) from None
    finally:
        log.removeHandler(handler)
        handler.close()


def announce_plan(plan: Plan, fresh, images_per_job: int, making: bool = True) -> None:
    """The plan, what is left to make and why, and the time it will take, before
    anything runs (and before Snakemake removes anything it will remake). `making`
    False: `analyze`, which makes no image."""
    from t2ibench.freshness import OUTDATED, describe
    from t2ibench.generate import GENERATOR
    from t2ibench.preview import make_estimator, plan_status, total_estimate

    states = fresh.states()
    estimator = make_estimator(plan)
    waiting, later = sequential_waiting(plan, fresh)
    rows = plan_status(plan, fresh, estimator, skip=waiting)
    states = {job: state for job, state in states.items() if job not in waiting}
    todo = sum(r.todo for r in rows)
    GENERATOR.progress.total = todo + later
    prompts = {p.id for e in plan.experiments.values() for p in e.prompts}
    models = {m for e in plan.experiments.values() for m in e.models}
    log.info(
        "plan: %d images over %d model(s) and %d prompt(s) in %d experiment(s) (%s) in "
        "%s/; %d done, %d to make%s%s; %s",
        len(plan.jobs),
        len(models),
        len(prompts),
        len(plan.experiments),
        ", ".join(plan.experiments),
        plan.results_dir,
        sum(r.done for r in rows) + sum(1 for j in waiting if fresh.state(j).done),
        todo,
        f" ({describe(states.values())})" if todo else "",
        f", at most {later} more in later rounds" if later else "",
        total_estimate(rows, estimator)
        if making
        else "`analyze` makes none, it scores what is there",
    )
    if todo:  # what the images to make can tell, from an earlier or quick run's scores
        from t2ibench.planning import startup_line

        for experiment in plan.experiments:
            line = startup_line(plan, experiment)
            if line:
                log.info("%s", line)
    for experiment in plan.experiments:
        if plan.sequential(experiment) is not None:
            from t2ibench.look_chain import announce

            log.info("%s", announce(plan, experiment, fresh, making))
    outdated = [job for job, state in states.items() if state.state == OUTDATED]
    if outdated:
        first = outdated[0]
        log.warning(
            "%d finished image(s) will be made again (`snakemake analyze` scores what is "
            "there and makes none); e.g. %s: %s; `python scripts/cli.py plan` lists them",
            len(outdated),
            plan.path(first),
            states[first].reason,
        )
    if images_per_job > 1:
        from t2ibench.chunks import experiment_chunks

        chunks = [
            c for e in plan.experiments for c in experiment_chunks(plan, e, images_per_job, fresh)
        ]
        log.info(
            "generation in chunks of images_per_job = %d: %d job(s) for %d image(s), each "
            "loading its model once",
            images_per_job,
            len(chunks),
            sum(len(c.todo) for c in chunks),
        )


def sequential_waiting(plan: Plan, fresh) -> tuple[set, int]:
    """The images of sequential experiments that no round asks for yet (not counted as
    to make), and how many later rounds may still make."""
    from t2ibench.look_chain import progress

    waiting, later = set(), 0
    for experiment in plan.experiments:
        if plan.sequential(experiment) is not None:
            state = progress(plan, experiment, fresh)
            asked = set(state["next_jobs"])
            waiting |= {j for j in plan.jobs if j.experiment == experiment and j not in asked}
            later += state["later_todo"]
    return waiting, later


def closing_summary(analysis_dir: str, experiments=(), images_dir: str | None = None) -> None:
    """The run's last line: what it made and where to look, naming only files that are
    there (`snakemake generate` makes no table)."""
    from t2ibench.generate import GENERATOR

    made = f"done: {GENERATOR.progress.done} image(s) made in this run"
    with_tables = [e for e in experiments if Path(analysis_dir, e, "results.csv").is_file()]
    if len(with_tables) == 1:
        where = f"tables in {analysis_dir}/{with_tables[0]}/ (results.csv, summary.csv)"
    elif with_tables:
        where = (
            f"tables in {analysis_dir}/<experiment>/ (results.csv, summary.csv) for "
            + ", ".join(with_tables)
        )
    else:
        where = (
            f"images in {images_dir or analysis_dir}/<experiment>/<model>/<cell>/; no tables "
            "yet (`snakemake` or `snakemake analyze` makes them)"
        )
    report = Path(analysis_dir, "report", "index.html")
    opened = f"; open {report}" if report.is_file() else ""
    log.info("%s; %s%s", made, where, opened)
