"""`hyperzero fit`: train approximators (one or all methods x split seeds) on a rollout dataset."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from hyperzero.cli import HelpFormatter

ORDER = 40


def register(subparsers) -> None:
    from hyperzero.models.config import ModelConfig
    from hyperzero.models.registry import METHODS
    from hyperzero.training.config import FitConfig

    d, m = FitConfig(), ModelConfig()
    p = subparsers.add_parser(
        "fit", help="train HyperZero / baselines on a dataset (resumable; finished fits are skipped)",
        description="Train approximators on the TRAIN tasks of each split seed; select on VAL tasks (carved from "
                    "train); TEST tasks are never used. Writes OUT/<method>/seed_<k>/{model.pt, split.json, "
                    "progress.csv, tb/, run_info.json, done.json}. Rerun the same command to resume.",
        formatter_class=HelpFormatter)
    p.add_argument("--dataset", required=True, help="dataset directory (with manifest.json)")
    p.add_argument("--method", default="hyperzero",
                   help=f"a method or 'all' (every registered method) or a comma list; methods: {', '.join(METHODS)}")
    p.add_argument("--seeds", default="0", help="comma-separated split seeds; seed k = split k and init k")
    p.add_argument("--out", required=True, help="output directory; fits go to OUT/<method>/seed_<k>/")
    p.add_argument("--protocol", choices=["paper", "hypogen"], default=d.protocol,
                   help="paper: 15%% of tasks held out for test (at least --min-test-tasks); hypogen: 80%%")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help="fraction of non-test tasks used for validation (checkpoint selection, early stopping)")
    p.add_argument("--test-fraction", type=float, default=None,
                   help="fraction of tasks held out for test (default: the protocol's, 0.15 paper / 0.80 hypogen)")
    p.add_argument("--min-test-tasks", type=int, default=d.min_test_tasks,
                   help="hold out at least this many test tasks per split while 2 or more remain to train on")
    p.add_argument("--selection", choices=["auto", "return", "val_loss", "last"], default=d.selection,
                   help="model.pt = the checkpoint with the best mean return of rollouts on the val tasks (return), "
                        "the lowest zero-shot action MSE on them (val_loss), or the final weights (last); auto = return when there "
                        "are val tasks and the family has an environment")
    p.add_argument("--val-episodes", type=int, default=d.val_episodes,
                   help="full-length episodes per val task at each rollout evaluation (selection return)")
    p.add_argument("--lr-sweep", type=_float_list, default=[],
                   help="comma-separated learning rates, e.g. 3e-4,1e-3: fit once per lr and keep the one best on "
                        "the val tasks (recorded in lr_sweep.json); overrides --lr")
    p.add_argument("--lr-sweep-steps", type=int, default=d.lr_sweep_steps,
                   help="steps per sweep fit; 0 = --steps (the winner is reused), else the chosen lr's sweep fit "
                        "is continued to --steps")
    p.add_argument("--value-scale", type=float, default=None,
                   help="factor on q* and r in the value and TD losses; default 1/mean|q*| of the train tasks; "
                        "1.0 = unscaled (the authors')")
    p.add_argument("--steps", type=int, default=d.steps, help="gradient steps (the same for every method)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="samples per gradient step (all tasks)")
    p.add_argument("--tasks-per-batch", type=int, default=d.tasks_per_batch,
                   help="K tasks per batch, batch-size/K samples each (weights generated once per task)")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    p.add_argument("--eval-interval", type=int, default=d.eval_interval, help="steps between validation evaluations")
    p.add_argument("--patience", type=int, default=d.patience,
                   help="early stopping after this many evaluations without improvement; 0 = off (equal budgets)")
    p.add_argument("--checkpoint-interval", type=int, default=d.checkpoint_interval,
                   help="steps between resumable checkpoints")
    p.add_argument("--context-norm", choices=["bounds", "raw"], default=d.context_norm,
                   help="bounds: map the family's nominal context bounds to [-1, 1]; raw: feed contexts as they are")
    p.add_argument("--td-gamma", type=float, default=None,
                   help="discount in the TD loss; default the dataset's gamma (experts'); 1.0 = the authors' code")
    p.add_argument("--head-init", choices=["uniform", "hyperfan_in"], default=m.head_init,
                   help="hypernetwork head init: authors' uniform (±0.05 / ±0.008) or hyperfan-in (Chang et al. 2020)")
    p.add_argument("--hidden-dim", type=int, default=m.hidden_dim, help="hidden width of policy and Q networks")
    p.add_argument("--value-weight", type=float, default=m.value_weight, help="w_v: weight of the Q regression loss")
    p.add_argument("--td-weight", type=float, default=m.td_weight, help="w_td: weight of the TD loss")
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda[:i]")
    p.add_argument("--threads", type=int, default=d.num_threads, help="torch threads; 0 = torch default")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)

    e = subparsers.add_parser(
        "export-policy", help="export a fitted model's policy for one context (.npz for numpy, or TorchScript)",
        description="Generate the policy of one context from a fit directory and save it: `.npz` (act with "
                    "hyperzero.models.export.NumpyPolicy.load(path).act(obs), numpy only) or `.pt` TorchScript.",
        formatter_class=HelpFormatter)
    e.add_argument("--fit", required=True, help="fit directory (OUT/<method>/seed_<k>) holding model.pt")
    e.add_argument("--context", required=True,
                   help="context as name=value pairs, comma-separated, e.g. speed=3: a value for every feature the "
                        "model was trained on (none is defaulted); other features only at the model's fixed values")
    e.add_argument("--out", required=True, help="output file: *.npz (numpy) or *.pt (TorchScript)")
    e.add_argument("--allow-extrapolation", action="store_true",
                   help="accept a context outside the family's nominal range (within its physical limits)")
    e.set_defaults(func=run_export)


def _float_list(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 3e-4,1e-3, got {text!r}") from None


def parse_methods(text: str) -> list[str]:
    from hyperzero.models.registry import METHODS

    names = list(METHODS) if text == "all" else [s.strip() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in METHODS]
    if unknown or not names:
        raise ValueError(f"unknown method(s) {unknown or text!r}; choose from {', '.join(METHODS)} or 'all'")
    return names


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds must be comma-separated integers, e.g. 0,1,2 (got {text!r})") from None
    if not seeds:
        raise ValueError("--seeds is empty; give e.g. --seeds 0,1,2")
    return seeds


def run(args) -> int:
    from hyperzero.datasets import load_dataset
    from hyperzero.models.config import ModelConfig
    from hyperzero.training import FitConfig
    from hyperzero.utils.lock import run_dir_lock

    methods, seeds = parse_methods(args.method), parse_seeds(args.seeds)
    model = dataclasses.replace(ModelConfig(), head_init=args.head_init, hidden_dim=args.hidden_dim,
                                value_weight=args.value_weight, td_weight=args.td_weight)
    base = FitConfig(protocol=args.protocol, val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                     min_test_tasks=args.min_test_tasks, selection=args.selection, val_episodes=args.val_episodes,
                     lr_sweep=list(args.lr_sweep), lr_sweep_steps=args.lr_sweep_steps, value_scale=args.value_scale,
                     steps=args.steps,
                     batch_size=args.batch_size, tasks_per_batch=args.tasks_per_batch, lr=args.lr,
                     eval_interval=args.eval_interval, patience=args.patience,
                     checkpoint_interval=args.checkpoint_interval, context_norm=args.context_norm,
                     td_gamma=args.td_gamma, device=args.device, num_threads=args.threads, model=model)
    configs = [dataclasses.replace(base, method=mth, seed=s) for mth in methods for s in seeds]
    for c in configs:
        c.check()  # fail on bad options before any training
    ds = load_dataset(args.dataset)
    with run_dir_lock(args.out):  # inputs are checked; now one writer per directory
        return _fit_locked(args, ds, configs)


def _fit_locked(args, ds, configs) -> int:
    from hyperzero.launchers.pipeline import check_fit, fit_inputs_problem, record_fit_inputs
    from hyperzero.training import fit

    tasks = {e["task_id"]: e["sha256"] for e in ds.manifest.get("tasks", [])}
    for c in configs:
        out = Path(args.out) / c.method / f"seed_{c.seed}"
        if out.exists():
            problem = fit_inputs_problem(out, ds.family, ds.context_names, tasks)
            if problem:  # another dataset's fit: refuse rather than skip or overwrite it
                raise ValueError(f"{out} {problem}; choose a new --out, or delete {out} to refit it")
            check_fit(Path(args.out), out, tasks, ds.family, ds.context_names)  # damaged -> OUT/corrupt/, refit
        done = (out / "done.json").exists()
        if not done:
            record_fit_inputs(out, ds)
        print(f"[fit] {c.method} seed {c.seed} -> {out}{' (done, skipped)' if done else ''}", flush=True)
        fit(ds, out, c, progress=not args.no_progress)
    return 0


def parse_context(text: str) -> dict[str, str]:
    """`speed=3,torso_length=0.6` -> {"speed": "3", ...}; the values are checked by the family's context space."""
    ctx = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"--context expects name=value pairs like speed=3,torso_length=0.6 (got {part!r})")
        if name.strip() in ctx:
            raise ValueError(f"--context gives {name.strip()!r} twice ({ctx[name.strip()]} and {value.strip()}); "
                             f"give each feature once")
        ctx[name.strip()] = value.strip()
    if not ctx:
        raise ValueError(f"--context expects name=value pairs like speed=3,torso_length=0.6 (got {text!r})")
    return ctx


def run_export(args) -> int:
    import sys
    import warnings

    from hyperzero.envs import ExtrapolationWarning
    from hyperzero.training import load_fit

    tm = load_fit(args.fit)
    # the environments' checks (NaN, booleans, non-numbers, unknown features, |speed| below the minimum, out
    # of range) and the model's: every feature it was trained on given, the others only at its fixed values
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ExtrapolationWarning)
        ctx = tm.check_context(parse_context(args.context), args.allow_extrapolation)
    for w in caught:
        print(f"hyperzero: warning: {w.message}", file=sys.stderr)
    policy = tm.policy(ctx, allow_extrapolation=args.allow_extrapolation)
    if not hasattr(policy, "save_npz"):
        raise ValueError(f"method {tm.method} does not produce an exportable fixed policy")
    out = Path(args.out)
    if out.suffix == ".npz":
        policy.save_npz(out, context=ctx, method=tm.method, family=tm.family, context_names=tm.context_names)
    elif out.suffix == ".pt":
        policy.save_torchscript(out)
    else:
        raise ValueError(f"--out must end in .npz (numpy) or .pt (TorchScript), got {out.name!r}")
    print(f"[export] {tm.method} policy for {ctx} -> {out}")
    return 0
