"""``python scripts/cli.py COMMAND``: look at experiments, models and the plan.

    experiments   the catalogue: descriptions, variables, values and cell counts
    models        each configured model: source, family, prediction type, images done
    plan          images per experiment, model and cell: done, to make, estimated time;
                  --power: what the planned run can detect, from earlier scores
    compare       an experiment's images on disk: --list, --info, or a grid,
                  side-by-side or diff image (see t2ibench.report.compare)

`models`, `plan` and `compare` (for its results_dir only) read the config the way
`snakemake` does: config/config.yaml, or the files given with --configfile instead of
it, then --config KEY=VALUE on top.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from t2ibench.errors import InputError


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--configfile", nargs="+", metavar="FILE", help="config file(s) used instead of the demo"
    )
    parser.add_argument(
        "--config", nargs="+", default=[], metavar="KEY=VALUE", help="as snakemake --config"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python scripts/cli.py", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("experiments", help="list the experiment catalogue")
    _config_args(sub.add_parser("models", help="list the configured models"))
    plan = sub.add_parser("plan", help="preview what a run will make")
    _config_args(plan)
    plan.add_argument(
        "--verify",
        action="store_true",
        help="also check each finished PNG's sha256 against its record (reads every image)",
    )
    plan.add_argument(
        "--power",
        action="store_true",
        help="per experiment and metric, the smallest difference the planned run can detect "
        "(80%% power, adjusted level), from the scores of an earlier or quick run",
    )
    plan.add_argument(
        "--difference",
        action="append",
        metavar="METRIC=VALUE",
        help="with --power: the prompts needed to detect this difference (repeatable)",
    )
    _compare_args(sub.add_parser("compare", help="compare an experiment's images on disk"))
    return parser


def _int_in(low: int, high: int | None = None):
    """An argparse type: an integer from `low` (to `high`)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            span = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise argparse.ArgumentTypeError(f"expected an integer {span}, got {text!r}")
        return value

    return parse


def _compare_args(parser: argparse.ArgumentParser) -> None:
    from t2ibench.report.compare import DIFF_MODES, MODES, PER_ROW, THRESHOLD
    from t2ibench.report.grid import AXES
    from t2ibench.report.grid_render import MAX_SIDE

    _config_args(parser)
    add = parser.add_argument
    add("--results-dir", metavar="DIR", help="results folder (default: the config's results_dir)")
    add("--list", action="store_true", help="list the experiments found in the results folder")
    add("-e", "--experiment", metavar="EXP", help="the experiment to look at")
    add("--info", action="store_true", help="describe the experiment")
    add("--mode", choices=MODES, default="grid", help="what to draw (default: grid)")
    add("--rows", choices=AXES, help="grid rows (default: prompts)")
    add("--cols", choices=AXES, help="grid columns (default: values; baseline: models)")
    repeat = {"action": "append", "default": []}
    add("--prompt", dest="prompts", metavar="P", **repeat, help="prompt id or index (comma list)")
    add("--values", metavar="V", **repeat, help="cell names or values (comma list)")
    add("--seed", dest="seeds", metavar="S", **repeat, help="seed(s) (comma list, repeatable)")
    add("--model", dest="models", metavar="M", **repeat, help="model name(s) (comma list)")
    add("--metric", metavar="NAME", help="draw this metric under each image, e.g. clip_score")
    add("--diff-mode", choices=DIFF_MODES, default="highlight", help="diff style")
    add(
        "--threshold",
        type=_int_in(0, 255),
        default=THRESHOLD,
        help="highlight: |A-B| above this is red",
    )
    add("--resize", action="store_true", help="diff: resize B to A's size when they differ")
    add(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="PNG to write (default: <experiment>-<mode>.png)",
    )
    add("--cell-size", type=_int_in(16), default=256, help="tile size in px (default: 256)")
    add("--max-side", type=_int_in(64), default=MAX_SIDE, help="page size cap in px")
    add("--max-rows", type=_int_in(1), help="rows per page at most")
    add("--per-row", type=_int_in(1), default=PER_ROW, help="side-by-side: images per row")


def _plan(args):
    from snakemake.cli import parse_config

    from t2ibench.config import load_config, validate_config
    from t2ibench.plan import build_plan

    try:
        overrides = parse_config(args.config)
    except ValueError as err:
        raise InputError(f"--config: {err}") from None
    return build_plan(validate_config(load_config(args.configfile, overrides)))


def _results_dir(args) -> str:
    """--results-dir, else the config's results_dir (as the plan would use it, without
    building the plan: only the config files are read)."""
    import hashlib

    from snakemake.cli import parse_config

    from t2ibench.config import load_config

    if args.results_dir:
        return args.results_dir
    try:
        overrides = parse_config(args.config)
    except ValueError as err:
        raise InputError(f"--config: {err}") from None
    config = load_config(args.configfile, overrides)
    results_dir = str(config.get("results_dir") or "results")
    if config.get("prompt"):
        digest = hashlib.sha256(str(config["prompt"]).strip().encode()).hexdigest()[:8]
        results_dir = f"{results_dir}/prompt-{digest}"
    return results_dir


def compare(args, out) -> None:
    """`compare`: --list, --info, or write a grid, side-by-side or diff image."""
    from pathlib import Path

    from t2ibench.report import compare as cmp

    results_dir = Path(_results_dir(args))
    if args.list:
        cmp.list_experiments(results_dir, out)
        return
    if not args.experiment:
        raise InputError("compare: give --list, or -e EXPERIMENT (with --info or --mode)")
    if args.info:
        cmp.experiment_info(results_dir, args.experiment, out)
        return
    names = [f.name for f in dataclasses.fields(cmp.CompareRequest)]
    request = cmp.CompareRequest(**{name: getattr(args, name) for name in names})
    for path in cmp.run_compare(results_dir, request):
        print(f"wrote {path}", file=out)


def _values(exp, axis: str) -> str:
    return ", ".join(dict.fromkeys(c.values[axis] for c in exp.cells if axis in c.values))


def list_experiments(out) -> None:
    from t2ibench.experiments import BASELINE, baseline, catalogue, load_experiment

    base = baseline()
    print(f"{BASELINE}\n    {base.description}\n    cells: 1 (default)\n", file=out)
    for path in catalogue():
        exp = load_experiment(str(path))
        quick = load_experiment(str(path), quick=True)
        applies = ", ".join(exp.families or exp.models or ["all models"])
        print(f"{exp.name}  [{applies}]", file=out)
        print(f"    {exp.description}", file=out)
        for axis in exp.axes:
            print(f"    {axis}: {_values(exp, axis)}", file=out)
        cells = f"cells: {len(exp.cells)} (quick: {len(quick.cells)})"
        print(f"    {cells}; reference: {exp.reference}\n", file=out)


def list_models(plan, out) -> None:
    from t2ibench.freshness import Freshness

    fresh = Freshness(plan)
    for name, spec in plan.models.items():
        print(f"{name}", file=out)
        print(f"    source: {spec.source}", file=out)
        print(f"    family: {spec.family}", file=out)
        print(f"    prediction type: {spec.prediction_type} ({spec.prediction_reason})", file=out)
        for experiment, exp in plan.experiments.items():
            if name not in exp.models:
                continue
            jobs = [j for j in plan.jobs if (j.experiment, j.model) == (experiment, name)]
            done = sum(fresh.state(j).done for j in jobs)
            print(f"    {experiment}: {done}/{len(jobs)} images done", file=out)
        print(file=out)


def show_plan(plan, out, verify: bool = False) -> None:
    from t2ibench.console import sequential_waiting
    from t2ibench.freshness import OUTDATED, Freshness
    from t2ibench.preview import format_table, make_estimator, plan_status

    fresh = Freshness(plan, verify=verify)
    estimator = make_estimator(plan)
    # A sequential experiment's rows count what is done and what its next round makes
    # (the line below the table says what later rounds may make).
    waiting, _ = sequential_waiting(plan, fresh)
    rows = plan_status(plan, fresh, estimator, skip={j for j in waiting if not fresh.state(j).done})
    print(f"results in {plan.results_dir}/", file=out)
    print(format_table(rows, estimator), file=out)
    outdated = [(job, state) for job, state in fresh.states().items() if state.state == OUTDATED]
    if outdated:
        print(f"\n{len(outdated)} finished image(s) will be made again:", file=out)
        for job, state in outdated:
            print(f"  {plan.path(job)}: {state.reason}", file=out)
    for experiment in plan.experiments:
        if plan.sequential(experiment) is not None:
            from t2ibench.look_chain import announce

            print(announce(plan, experiment, fresh), file=out)
    size = plan.config["images_per_job"]
    if size > 1:
        from t2ibench.chunks import experiment_chunks

        chunks = [c for e in plan.experiments for c in experiment_chunks(plan, e, size, fresh)]
        print(
            f"in chunks (images_per_job = {size}): {len(chunks)} generation job(s) for "
            f"{sum(len(c.todo) for c in chunks)} image(s) to make or remake",
            file=out,
        )


def show_power(plan, out, differences: list[str] | None) -> None:
    from t2ibench import planning
    from t2ibench.config import compared_columns

    wanted = planning.parse_differences(differences, compared_columns(plan.config))
    for experiment in plan.experiments:
        for line in planning.report_lines(planning.power(plan, experiment, wanted)):
            print(line, file=out)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "experiments":
            list_experiments(sys.stdout)
        elif args.command == "compare":
            compare(args, sys.stdout)
        elif args.command == "models":
            list_models(_plan(args), sys.stdout)
        elif args.power:
            show_power(_plan(args), sys.stdout, args.difference)
        else:
            show_plan(_plan(args), sys.stdout, verify=args.verify)
    except InputError as error:
        print(f"t2ibench: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
