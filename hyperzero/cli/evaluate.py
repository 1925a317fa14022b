"""`hyperzero evaluate RUN_DIR`: held-out evaluation, figures and the report of a run directory."""
from __future__ import annotations

import argparse

from hyperzero.cli import HelpFormatter

ORDER = 50


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 10,100, got {text!r}")


def _name_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def register(subparsers) -> None:
    from hyperzero.evaluation.evaluate import DEFAULT_EVAL_SEED

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
    p.add_argument("--episodes", type=int, default=10, help="evaluation episodes per task (the paper: 10)")
    p.add_argument("--eval-seed", type=int, default=DEFAULT_EVAL_SEED,
                   help="episode i is reset with seed EVAL_SEED+i; must not overlap the dataset's episode seeds")
    p.add_argument("--few-shot-k", type=_int_list, default=[],
                   help="comma-separated shot counts for meta methods (maml, pearl), e.g. 10,100")
    p.add_argument("--methods", type=_name_list, default=None,
                   help="comma-separated methods to evaluate (default: every complete fit)")
    p.add_argument("--bootstrap-reps", type=int, default=2000,
                   help="stratified-bootstrap resamples for the 95%% intervals of the IQM and of P(improvement)")
    p.add_argument("--baseline", default=None,
                   help="the method every other is compared with in P(method > baseline); default: the non-HyperZero "
                        "zero-shot method with the highest IQM score")
    p.add_argument("--cloning-tasks", type=int, default=3, metavar="N",
                   help="training tasks per fit rolled out for the cloning score (did the method learn to copy the "
                        "experts it was trained on?); drawn per split seed, the same for every method; 0 = off")
    p.add_argument("--expert-returns", metavar="FILE.json", default=None,
                   help="a JSON object {task_id: expert return}: R_expert of those tasks, used as given (not re-rolled) "
                        "instead of rolling experts/<task>/expert.pt out; without it a task with no expert of ours "
                        "takes the return its dataset manifest records (ExpertInfo.return_mean). The report says "
                        "which tasks' references came from where")
    p.add_argument("--videos", action="store_true",
                   help="also render mp4 videos and rollout strips (skipped, with a note, for a family that cannot "
                        "render)")
    p.add_argument("--video-steps", type=int, default=300, help="control steps per video")
    p.add_argument("--workers", type=int, default=None,
                   help="processes rolling out the fits (default: one per core; 1 = all in this process)")
    p.add_argument("--no-figures", action="store_true", help="skip the figures")
    p.add_argument("--no-report", action="store_true", help="skip report.md / report.html")
    p.set_defaults(func=run)


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
    from hyperzero.launchers.pipeline import check_eval

    check_eval(run_dir)  # damaged cached rows / results are named, moved to RUN/corrupt/ and recomputed
    config = EvalConfig(episodes=args.episodes, eval_seed=args.eval_seed, few_shot_k=tuple(args.few_shot_k),
                        methods=args.methods, videos=args.videos, video_steps=args.video_steps,
                        figures=not args.no_figures, bootstrap_reps=args.bootstrap_reps, baseline=args.baseline,
                        num_workers=args.workers, cloning_tasks=args.cloning_tasks, expert_returns=args.expert_returns)
    result = evaluate(run_dir, config)
    print((run_dir / "eval" / "summary.md").read_text())
    if not args.no_report:
        md, page = write_report(run_dir)
        print(f"report: {md} and {page}")
    print(f"{len(result.rows)} result rows in {run_dir / 'eval' / 'results.csv'}")
    return 0
