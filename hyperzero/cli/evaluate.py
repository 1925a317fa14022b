"""`hyperzero evaluate RUN_DIR`: held-out evaluation, figures and the report of a run directory."""
from __future__ import annotations

from hyperzero.cli import HelpFormatter

ORDER = 50


def register(subparsers) -> None:
    from hyperzero.cli.flags import add_stage_options

    p = subparsers.add_parser(
        "evaluate", help="zero-/few-shot evaluation of every fit on its held-out tasks; figures and report",
        description="Roll out every fitted method on each split seed's TEST tasks only (and each task's expert and "
                    "the do-nothing policy on the same episode seeds), then write eval/results.csv (raw return, "
                    "expert, floor, score per pair), eval/summary.{csv,md} (IQM and P(improvement) with 95% "
                    "bootstrap intervals), eval/figures/, and report.md/report.html in RUN_DIR. Each fit is also "
                    "rolled out on a few of its TRAINING tasks for a cloning score (eval/cloning.{csv,md}), kept "
                    "apart from every held-out number, and held-out tasks are split into those between and those "
                    "outside the training tasks (eval/positions.csv).",
        formatter_class=HelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR",
                   help="a run directory with dataset/ and fits/ (and experts/, unless the dataset records its experts' "
                        "returns or --expert-returns gives them)")
    p.add_argument("--no-report", action="store_true", help="skip report.md / report.html")
    add_stage_options(p, "evaluate", include=("methods", "seeds"),
                      prefix_help="; methods and seeds only here: the pipeline evaluates every fit")
    p.set_defaults(func=run)


def eval_settings(args) -> dict:
    """The command's `evaluate` section (defaults < --config < --set < options), checked: EvalConfig fields."""
    from hyperzero.cli.flags import option_error, stage_config
    from hyperzero.launchers.config import check_evaluate_section

    settings = stage_config(args, "evaluate")["evaluate"]
    try:
        check_evaluate_section(settings, excluded=())
    except ValueError as e:
        raise option_error(e, "evaluate") from None
    return settings


def run(args) -> int:
    from pathlib import Path

    from hyperzero.utils.lock import run_dir_lock

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run directory {run_dir} does not exist; pass the --out directory of `hyperzero run`")
    with run_dir_lock(run_dir):  # one writer per run directory
        return _evaluate(args, run_dir)


def _evaluate(args, run_dir) -> int:
    from hyperzero.evaluation import EvalConfig, evaluate
    from hyperzero.evaluation.report import write_report
    from hyperzero.evaluation.outputs import check_eval

    check_eval(run_dir)  # damaged cached rows / results are named, moved to RUN/corrupt/ and recomputed
    config = EvalConfig(**eval_settings(args))
    result = evaluate(run_dir, config)
    print((run_dir / "eval" / "summary.md").read_text())
    if not args.no_report:
        md, page = write_report(run_dir)
        print(f"report: {md} and {page}")
    print(f"{len(result.rows)} result rows in {run_dir / 'eval' / 'results.csv'}")
    return 0
