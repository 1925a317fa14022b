"""`hyperzero experts train|collect`: train one TD3 expert per task; roll them out into a dataset."""
from __future__ import annotations

import sys

from hyperzero.cli import HelpFormatter

ORDER = 20


def _contexts_from_args(args, experts: dict | None = None) -> list[dict]:
    from hyperzero.envs import get_family
    from hyperzero.envs.context import parse_values

    space = get_family(args.family).context_space
    chosen = [name for name, given in (("--grid", args.grid), ("--contexts", args.contexts),
                                       ("--sample", args.sample is not None)) if given]
    if len(chosen) != 1:
        raise ValueError("give exactly one of --grid, --contexts or --sample "
                         f"(got {', '.join(chosen) or 'none'}), or a --config with contexts; e.g. --grid "
                         f"speed=-10:10:0.5")
    from hyperzero.launchers.config import MAX_TASKS

    if args.grid:
        names = [spec.partition("=")[0].strip() for spec in args.grid]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"--grid gives {', '.join(twice)} more than once; give each feature once, "
                             f"e.g. --grid speed=1,2,3")
        count = 1
        for spec in args.grid:
            values = spec.partition("=")[2]
            try:
                count *= max(1, len(parse_values(values)))
            except ValueError:
                pass  # parse_grid names the bad spec
        if count > MAX_TASKS:
            raise ValueError(f"--grid {' '.join(args.grid)}: {count} tasks, more than {MAX_TASKS} (one expert each); "
                             f"use larger steps or fewer values")
        for spec in args.grid:
            name, _, values = spec.partition("=")
            feature = space.features.get(name.strip())
            if feature is not None and feature.nonzero and values and 0.0 in parse_values(values):
                print(f"experts: skipping {name.strip()}=0 in --grid {spec} (a signed speed of 0 has no direction)",
                      file=sys.stderr)
        return space.parse_grid(args.grid, allow_extrapolation=args.allow_extrapolation, skip_zero=True)
    if args.contexts:
        if len(args.contexts) > MAX_TASKS:
            raise ValueError(f"--contexts: {len(args.contexts)} contexts, more than {MAX_TASKS}")
        out = []
        for spec in args.contexts:
            ctx = {}
            for item in spec.split(","):
                name, eq, value = item.partition("=")
                if not eq:
                    raise ValueError(f"--contexts {spec!r}: each item must be name=value, e.g. speed=2,torso_length=0.6")
                if name.strip() in ctx:
                    raise ValueError(f"--contexts {spec!r}: {name.strip()} is given twice; give each feature once "
                                     f"per context, e.g. --contexts speed=2 speed=3 for two tasks")
                try:
                    ctx[name.strip()] = float(value)
                except ValueError:
                    raise ValueError(f"--contexts {spec!r}: {value!r} is not a number") from None
            out.append(ctx)
        return out
    if not 1 <= args.sample <= MAX_TASKS:
        raise ValueError(f"--sample must be in 1 .. {MAX_TASKS} (tasks, one expert each; got {args.sample})")
    names = args.vary.split(",") if args.vary else [n for n, f in space.features.items() if not f.optional]
    from hyperzero.experts.profiles import profile_config

    experts = dict(experts or {})
    expert_seed = experts.get("seed", profile_config(experts.get("profile", "authors")).seed)
    seed = args.sample_seed if args.sample_seed is not None else expert_seed
    return space.sample(args.sample, seed=seed, names=names)


def _train(args) -> int:
    from pathlib import Path

    from hyperzero.cli.flags import option_error, stage_config
    from hyperzero.envs import get_family
    from hyperzero.launchers.config import ExpertsSection, check_experts_section, resolve_contexts
    from hyperzero.utils.lock import run_dir_lock

    settings = stage_config(args, "experts")
    family = args.family or settings.get("family")
    if not family:
        raise ValueError("give --family (e.g. --family cheetah-run), or --config PRESET|FILE with a family")
    args.family = family
    given = [args.grid, args.contexts, args.sample is not None]
    if not any(given) and settings.get("contexts") is not None:
        contexts = resolve_contexts(family, settings["contexts"])  # the config's tasks
    else:
        contexts = _contexts_from_args(args, settings["experts"])
    # every input is checked before the output directory is touched
    space = get_family(family).context_space
    contexts = [space.validate(c, allow_extrapolation=args.allow_extrapolation) for c in contexts]
    try:
        check_experts_section(settings["experts"], family)
    except ValueError as e:
        raise option_error(e, "experts") from None
    section = ExpertsSection.from_dict(settings["experts"])
    _check_resources(args, section.solver.resolved(family), len(contexts), section.settings.ensemble_size,
                     section.settings.num_workers)
    with run_dir_lock(args.out):  # one writer per directory
        return _train_locked(args, Path(args.out), contexts, section)


def _check_resources(args, cfg, n_tasks: int, ensemble_size: int | None, num_workers: int | None) -> None:
    """An estimate of one worker's memory against this machine's, before the output directory is touched."""
    import os

    from hyperzero.envs import get_family
    from hyperzero.experts.sweep import MAX_ENSEMBLE
    from hyperzero.utils.hardware import human_bytes, memory_bytes

    if args.executor != "local":
        return  # Ray workers may run on other machines
    fam = get_family(args.family)
    members = min(ensemble_size or MAX_ENSEMBLE, n_tasks)
    workers = min(num_workers or os.cpu_count() or 1, -(-n_tasks // members))
    parts = cfg.memory_bytes(fam.obs_dim, fam.act_dim, members)
    total, available = sum(parts.values()) * workers, memory_bytes()
    if available and total > available:
        shown = ", ".join(f"{k} {human_bytes(v)}" for k, v in parts.items())
        raise ValueError(f"training would need about {human_bytes(total)} of memory ({shown} per worker, {workers} "
                         f"worker(s)), more than this machine's {human_bytes(available)}; lower --batch-size, "
                         f"--hidden-sizes, --train-steps (the replay holds every step), --ensemble-size or "
                         f"--num-workers")


def _train_locked(args, out, contexts, section) -> int:
    from hyperzero.experts import train_experts
    from hyperzero.experts.outputs import check_expert

    for task_dir in sorted(p for p in out.iterdir() if p.is_dir() and p.name not in ("corrupt", "stale")
                           and not p.name.startswith(".")):  # .shadow/: re-simulated ensemble members (sweep.py)
        check_expert(out, task_dir)  # damaged files are named and moved to OUT/corrupt/; those tasks are redone
    summaries = train_experts(args.family, contexts, args.out, section.solver,
                              ensemble_size=section.settings.ensemble_size, num_workers=section.settings.num_workers,
                              executor=args.executor, ray_address=args.address, progress=not args.no_progress,
                              allow_extrapolation=args.allow_extrapolation, gate=section.gate,
                              chain=section.settings.chain)
    flagged = [s["task_id"] for s in summaries if s.get("flagged")]
    for s in summaries:
        retried = f" (retried: kept {s.get('promoted_from', 'the first attempt')})" if s.get("retries") else ""
        why = f"  FLAGGED: {s['gate']['reason'] if s.get('gate') else 'below --quality-threshold'}" if s.get(
            "flagged") else ""
        print(f"{s['task_id']}: return {s['eval_return_mean']:.1f} +- {s['eval_return_std']:.1f} "
              f"(do-nothing floor {s.get('floor_return', float('nan')):.1f}) after {s['train_steps']} steps"
              f"{retried}{why}")
    if flagged:
        print(f"experts: {len(flagged)} expert(s) flagged; `experts collect` leaves them out (--exclude-flagged false "
              f"keeps them; details in {args.out}/gate.json)", file=sys.stderr)
    return 0


def _collect(args) -> int:
    from pathlib import Path

    from hyperzero.cli.flags import option_error, stage_config
    from hyperzero.datasets.collect import collect_dataset  # the dataset stage; imported only when used
    from hyperzero.launchers.config import check_dataset_section
    from hyperzero.utils.lock import run_dir_lock

    if not Path(args.experts).is_dir():
        raise ValueError(f"--experts {args.experts}: no such directory; pass the --out of `hyperzero experts train`")
    settings = stage_config(args, "dataset")["dataset"]
    try:
        check_dataset_section(settings)
    except ValueError as e:
        raise option_error(e, "dataset") from None
    names = args.context_names.split(",") if args.context_names else None
    with run_dir_lock(args.out):  # one writer per directory
        return _collect_locked(args, names, collect_dataset, settings)


def _collect_locked(args, names, collect_dataset, settings) -> int:
    collect_dataset(args.experts, args.out, n_episodes=settings["n_episodes"], seed=settings["seed"],
                    context_names=names, exclude_flagged=settings["exclude_flagged"], progress=not args.no_progress,
                    action_noise=settings.get("action_noise", 0.0))
    return 0


def register(subparsers) -> None:
    from hyperzero.cli.flags import add_stage_options

    fmt = HelpFormatter
    group = subparsers.add_parser("experts", help="train TD3 experts per task; collect their rollouts",
                                  formatter_class=fmt)
    sub = group.add_subparsers(title="experts commands", metavar="COMMAND")
    group.set_defaults(func=lambda args: group.print_help() or 0)

    t = sub.add_parser("train", help="train one TD3 expert per context (resumable; finished experts are skipped)",
                       formatter_class=fmt)
    t.add_argument("--family", help="contextual family: cheetah-run, walker-walk, finger-spin, or your own (--plugin "
                                    "MODULE; `hyperzero envs` lists them); default: the --config's family")
    t.add_argument("--grid", nargs="+", metavar="NAME=VALUES",
                   help="grid of contexts, e.g. speed=-10:10:0.5 torso_length=0.3,0.5 (speed 0 is skipped)")
    t.add_argument("--contexts", nargs="+", metavar="NAME=V,NAME=V",
                   help="explicit contexts, one per argument, e.g. speed=2,torso_length=0.6 speed=-4")
    t.add_argument("--sample", type=int, help="sample this many contexts uniformly in the nominal bounds")
    t.add_argument("--vary", help="features to sample with --sample (comma list); default: all non-optional ones")
    t.add_argument("--sample-seed", type=int, help="seed of --sample (default: the experts' --seed)")
    t.add_argument("--allow-extrapolation", action="store_true", help="accept contexts outside the nominal bounds")
    t.add_argument("--out", required=True, help="output directory: one sub-folder per task")
    t.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local processes or Ray tasks (same files either way)")
    t.add_argument("--address", help="Ray cluster address (e.g. 127.0.0.1:6379 or auto); default starts a local one")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_stage_options(t, "experts", prefix_help="; without --grid/--contexts/--sample the tasks are the config's")
    t.set_defaults(func=_train)

    c = sub.add_parser("collect", help="roll out trained experts into a dataset (hyperzero.datasets)",
                       formatter_class=fmt)
    c.add_argument("--experts", required=True, help="directory written by `hyperzero experts train`")
    c.add_argument("--out", required=True, help="dataset directory to write (manifest.json + tasks/)")
    c.add_argument("--context-names", help="varied context features, comma list (default: inferred from the tasks)")
    c.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_stage_options(c, "dataset")
    c.set_defaults(func=_collect)
