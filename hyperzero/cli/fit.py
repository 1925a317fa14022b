"""`hyperzero fit`: train approximators (one or all methods x split seeds) on a rollout dataset."""
from __future__ import annotations

from pathlib import Path

from hyperzero.cli import HelpFormatter

ORDER = 40


def register(subparsers) -> None:
    from hyperzero.cli.flags import add_stage_options

    p = subparsers.add_parser(
        "fit", help="train HyperZero / baselines on a dataset (resumable; finished fits are skipped)",
        description="Train approximators on the TRAIN tasks of each split seed; select on VAL tasks (carved from "
                    "train); TEST tasks are never used. Writes OUT/<method>/seed_<k>/{model.pt, split.json, "
                    "progress.csv, tb/, run_info.json, done.json}. Rerun the same command to resume.",
        formatter_class=HelpFormatter)
    p.add_argument("--dataset", required=True, help="dataset directory (with manifest.json)")
    p.add_argument("--out", required=True, help="output directory; fits go to OUT/<method>/seed_<k>/")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_stage_options(p, "fit", aliases={"methods": ["--method"]})
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


def fit_settings(args):
    """The command's `fit` section (defaults < --config < --set < options), checked, as a FitSection."""
    from hyperzero.cli.flags import option_error, stage_config
    from hyperzero.launchers.config import FitSection, check_fit_section
    from hyperzero.models.registry import METHODS

    settings = stage_config(args, "fit")["fit"]
    if settings.get("methods") in (["all"], "all"):
        settings["methods"] = list(METHODS)
    try:
        check_fit_section(settings)
    except ValueError as e:
        raise option_error(e, "fit") from None
    return FitSection.from_dict(settings)


def run(args) -> int:
    import sys

    from hyperzero.datasets import load_dataset
    from hyperzero.utils.lock import run_dir_lock

    section = fit_settings(args)
    if section.sweep.num_workers not in (None, 1):
        print("fit: this command runs its fits one after another; fit.num_workers applies to `hyperzero run`",
              file=sys.stderr)
    configs = section.configs()
    for c in configs:
        c.check()  # fail on bad options before any training
    ds = load_dataset(args.dataset)
    with run_dir_lock(args.out):  # inputs are checked; now one writer per directory
        return _fit_locked(args, ds, configs)


def _fit_locked(args, ds, configs) -> int:
    from hyperzero.training.outputs import check_fit, fit_inputs_check, record_fit_inputs
    from hyperzero.training import fit

    tasks = {e["task_id"]: e["sha256"] for e in ds.manifest.get("tasks", [])}
    for c in configs:
        out = Path(args.out) / c.method / f"seed_{c.seed}"
        if out.exists():
            inputs = fit_inputs_check(out, ds.family, ds.context_names, tasks)
            if inputs.state == "changed":  # another dataset's fit: refuse rather than skip or overwrite it
                raise ValueError(f"{out} {inputs.reason}; choose a new --out, or delete {out} to refit it")
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
