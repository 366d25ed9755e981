"""``python scripts/cli.py COMMAND``: look at experiments, models and the plan.

    experiments   the catalogue: descriptions, variables, values and cell counts
    models        each configured model: source, family, prediction type, images done
    plan          images per experiment, model and cell: done, to make, estimated time

`models` and `plan` read the config the way `snakemake` does: config/config.yaml, or
the files given with --configfile instead of it, then --config KEY=VALUE on top.
"""

from __future__ import annotations

import argparse
import os
import sys

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
    _config_args(sub.add_parser("plan", help="preview what a run will make"))
    return parser


def _plan(args):
    from snakemake.cli import parse_config

    from t2ibench.config import load_config, validate_config
    from t2ibench.plan import build_plan

    try:
        overrides = parse_config(args.config)
    except ValueError as err:
        raise InputError(f"--config: {err}") from None
    return build_plan(validate_config(load_config(args.configfile, overrides)))


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
    for name, spec in plan.models.items():
        print(f"{name}", file=out)
        print(f"    source: {spec.source}", file=out)
        print(f"    family: {spec.family}", file=out)
        print(f"    prediction type: {spec.prediction_type} ({spec.prediction_reason})", file=out)
        for experiment, exp in plan.experiments.items():
            if name not in exp.models:
                continue
            jobs = [j for j in plan.jobs if (j.experiment, j.model) == (experiment, name)]
            done = sum(os.path.exists(plan.path(j)) for j in jobs)
            print(f"    {experiment}: {done}/{len(jobs)} images done", file=out)
        print(file=out)


def show_plan(plan, out) -> None:
    from t2ibench.preview import format_table, make_estimator, plan_status

    estimator = make_estimator(plan)
    rows = plan_status(plan, estimator)
    print(f"results in {plan.results_dir}/", file=out)
    print(format_table(rows, estimator), file=out)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "experiments":
            list_experiments(sys.stdout)
        elif args.command == "models":
            list_models(_plan(args), sys.stdout)
        else:
            show_plan(_plan(args), sys.stdout)
    except InputError as error:
        print(f"t2ibench: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
