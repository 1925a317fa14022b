"""`hyperzero experts train|collect`: train one TD3 expert per task; roll them out into a dataset."""
from __future__ import annotations

import sys

from hyperzero.cli import HelpFormatter

ORDER = 20
PROFILES = ("authors", "fast")  # hyperzero.experts.profiles.PROFILES (not imported here: keeps --help fast)


def _contexts_from_args(args) -> list[dict]:
    from hyperzero.envs import get_family
    from hyperzero.envs.context import parse_values

    space = get_family(args.family).context_space
    chosen = [name for name, given in (("--grid", args.grid), ("--contexts", args.contexts),
                                       ("--sample", args.sample is not None)) if given]
    if len(chosen) != 1:
        raise ValueError("give exactly one of --grid, --contexts or --sample "
                         f"(got {', '.join(chosen) or 'none'}); e.g. --grid speed=-10:10:0.5")
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
    seed = args.sample_seed if args.sample_seed is not None else args.seed
    return space.sample(args.sample, seed=seed, names=names)


def _config_from_args(args):
    from hyperzero.experts.profiles import profile_config

    overrides = {
        "train_steps": args.steps, "seed": args.seed, "device": args.device, "precision": args.precision,
        "eval_every": args.eval_every, "eval_episodes": args.eval_episodes, "checkpoint_every": args.checkpoint_every,
        "quality_threshold": args.quality_threshold, "batch_size": args.batch_size,
        "max_episode_steps": args.max_episode_steps, "seed_steps": args.seed_steps,
        "random_steps": args.random_steps, "torch_threads": args.threads,
    }
    if args.hidden:
        overrides["hidden_sizes"] = tuple(int(h) for h in args.hidden.split(","))
    if args.share_experience:
        overrides["share_experience"] = True
    if args.obs_norm:
        overrides["obs_norm"] = True
    return profile_config(args.profile, **{k: v for k, v in overrides.items() if v is not None})


def _train(args) -> int:
    from pathlib import Path

    from hyperzero.envs import get_family
    from hyperzero.experts.gate import GateConfig
    from hyperzero.utils.lock import run_dir_lock

    contexts = _contexts_from_args(args)  # every input is checked before the output directory is touched
    space = get_family(args.family).context_space
    contexts = [space.validate(c, allow_extrapolation=args.allow_extrapolation) for c in contexts]
    config = _config_from_args(args)
    _check_resources(args, config, len(contexts))
    gate = None if args.no_gate else GateConfig(max_retries=args.gate_retries)
    with run_dir_lock(args.out):  # one writer per directory
        return _train_locked(args, Path(args.out), contexts, config, gate)


# TD3Config field -> the option that sets it, so that a refused value names what the user typed
_OPTIONS = {"train_steps": "--steps", "seed": "--seed", "batch_size": "--batch-size", "hidden_sizes": "--hidden",
            "eval_episodes": "--eval-episodes", "eval_every": "--eval-every", "checkpoint_every": "--checkpoint-every",
            "max_episode_steps": "--max-episode-steps", "seed_steps": "--seed-steps", "random_steps": "--random-steps",
            "torch_threads": "--threads", "precision": "--precision", "device": "--device"}


def _check_resources(args, config, n_tasks: int) -> None:
    """The config's own checks (naming the option), packing options, and an estimate of one worker's memory
    against this machine's, before the output directory is touched."""
    import os

    from hyperzero.envs import get_family
    from hyperzero.experts.sweep import MAX_ENSEMBLE
    from hyperzero.utils.hardware import human_bytes, memory_bytes

    try:
        cfg = config.resolved(args.family)
    except ValueError as e:
        text = str(e)
        field = text[len("TD3Config."):].split("=", 1)[0] if text.startswith("TD3Config.") else None
        raise ValueError(f"{_OPTIONS[field]}: {text}" if field in _OPTIONS else text) from None
    for option, value in (("--ensemble-size", args.ensemble_size), ("--workers", args.workers),
                          ("--gate-retries", args.gate_retries)):
        if value is not None and value < (0 if option == "--gate-retries" else 1):
            raise ValueError(f"{option} must be >= {0 if option == '--gate-retries' else 1} (got {value})")
    if args.executor != "local":
        return  # Ray workers may run on other machines
    fam = get_family(args.family)
    members = min(args.ensemble_size or MAX_ENSEMBLE, n_tasks)
    workers = min(args.workers or os.cpu_count() or 1, -(-n_tasks // members))
    parts = cfg.memory_bytes(fam.obs_dim, fam.act_dim, members)
    total, available = sum(parts.values()) * workers, memory_bytes()
    if available and total > available:
        shown = ", ".join(f"{k} {human_bytes(v)}" for k, v in parts.items())
        raise ValueError(f"training would need about {human_bytes(total)} of memory ({shown} per worker, {workers} "
                         f"worker(s)), more than this machine's {human_bytes(available)}; lower --batch-size, "
                         f"--hidden, --steps (the replay holds every step), --ensemble-size or --workers")


def _train_locked(args, out, contexts, config, gate) -> int:
    from hyperzero.experts import train_experts
    from hyperzero.launchers.pipeline import check_expert

    for task_dir in sorted(p for p in out.iterdir() if p.is_dir() and p.name not in ("corrupt", "stale")
                           and not p.name.startswith(".")):  # .shadow/: re-simulated ensemble members (sweep.py)
        check_expert(out, task_dir)  # damaged files are named and moved to OUT/corrupt/; those tasks are redone
    summaries = train_experts(args.family, contexts, args.out, config, ensemble_size=args.ensemble_size,
                              num_workers=args.workers, executor=args.executor, ray_address=args.address,
                              progress=not args.no_progress, allow_extrapolation=args.allow_extrapolation, gate=gate)
    flagged = [s["task_id"] for s in summaries if s.get("flagged")]
    for s in summaries:
        retried = f" (retried: kept {s.get('promoted_from', 'the first attempt')})" if s.get("retries") else ""
        why = f"  FLAGGED: {s['gate']['reason'] if s.get('gate') else 'below --quality-threshold'}" if s.get(
            "flagged") else ""
        print(f"{s['task_id']}: return {s['eval_return_mean']:.1f} +- {s['eval_return_std']:.1f} "
              f"(do-nothing floor {s.get('floor_return', float('nan')):.1f}) after {s['train_steps']} steps"
              f"{retried}{why}")
    if flagged:
        print(f"experts: {len(flagged)} expert(s) flagged; `experts collect` leaves them out with --exclude-flagged "
              f"(details in {args.out}/gate.json)", file=sys.stderr)
    return 0


def _collect(args) -> int:
    from pathlib import Path

    from hyperzero.datasets.collect import collect_dataset  # the dataset stage; imported only when used
    from hyperzero.utils.lock import run_dir_lock

    if not Path(args.experts).is_dir():
        raise ValueError(f"--experts {args.experts}: no such directory; pass the --out of `hyperzero experts train`")
    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1 (got {args.episodes})")
    names = args.context_names.split(",") if args.context_names else None
    with run_dir_lock(args.out):  # one writer per directory
        return _collect_locked(args, names, collect_dataset)


def _collect_locked(args, names, collect_dataset) -> int:
    collect_dataset(args.experts, args.out, n_episodes=args.episodes, seed=args.seed, context_names=names,
                    exclude_flagged=args.exclude_flagged, progress=not args.no_progress, action_noise=args.action_noise)
    return 0


def register(subparsers) -> None:
    fmt = HelpFormatter
    group = subparsers.add_parser("experts", help="train TD3 experts per task; collect their rollouts",
                                  formatter_class=fmt)
    sub = group.add_subparsers(title="experts commands", metavar="COMMAND")
    group.set_defaults(func=lambda args: group.print_help() or 0)

    t = sub.add_parser("train", help="train one TD3 expert per context (resumable; finished experts are skipped)",
                       formatter_class=fmt)
    t.add_argument("--family", required=True, help="contextual family: cheetah-run, walker-walk, finger-spin, or your own (--plugin MODULE; "
                        "`hyperzero envs` lists them)")
    t.add_argument("--grid", nargs="+", metavar="NAME=VALUES",
                   help="grid of contexts, e.g. speed=-10:10:0.5 torso_length=0.3,0.5 (speed 0 is skipped)")
    t.add_argument("--contexts", nargs="+", metavar="NAME=V,NAME=V",
                   help="explicit contexts, one per argument, e.g. speed=2,torso_length=0.6 speed=-4")
    t.add_argument("--sample", type=int, help="sample this many contexts uniformly in the nominal bounds")
    t.add_argument("--vary", help="features to sample with --sample (comma list); default: all non-optional ones")
    t.add_argument("--sample-seed", type=int, help="seed of --sample (default: --seed)")
    t.add_argument("--allow-extrapolation", action="store_true", help="accept contexts outside the nominal bounds")
    t.add_argument("--out", required=True, help="output directory: one sub-folder per task")
    t.add_argument("--steps", type=int, help="env steps per expert (default 100000; the authors used 1M)")
    t.add_argument("--seed", type=int, default=2, help="seed of every expert (authors: 2)")
    t.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local processes or Ray tasks (same files either way)")
    t.add_argument("--address", help="Ray cluster address (e.g. 127.0.0.1:6379 or auto); default starts a local one")
    t.add_argument("--device", choices=("auto", "cpu", "cuda"), help="torch device (default auto: CUDA if present)")
    t.add_argument("--profile", choices=tuple(PROFILES), default="authors",
                   help="solver settings to start from: authors (the paper's TD3) or fast (n-step 3, LayerNorm "
                        "critics, lr 3e-4, 128-128; the presets' choice, see docs/experts.md); other flags override")
    t.add_argument("--share-experience", action="store_true",
                   help="tasks of one ensemble with equal dynamics also learn from each other's transitions, "
                        "relabelled with their own reward (off by default: not reliably better, docs/experts.md)")
    t.add_argument("--obs-norm", action="store_true",
                   help="normalise each expert's observations by running mean and std (SimBa's RSNorm), saved with "
                        "the expert (off by default; measured in docs/benchmarks-experts.md)")
    t.add_argument("--precision", choices=("auto", "fp32", "bf16"),
                   help="auto (default: bf16 only on a CPU with AMX, else fp32, on CUDA too), fp32, or bf16 "
                        "(refused on a CPU without AMX/AVX512-BF16, where it is ~17x slower; warned with "
                        "AVX512-BF16 alone, where it is slower than fp32)")
    t.add_argument("--no-gate", action="store_true",
                   help="skip the quality gate (no retries; only --quality-threshold flags experts)")
    t.add_argument("--gate-retries", type=int, default=1,
                   help="retrain an expert that scores far below its neighbours this many times (new seed, "
                        "warm start from the nearest expert that passed)")
    t.add_argument("--ensemble-size", type=int, help="tasks per stacked ensemble (default: spread over workers, <= 8; <= 32 on a GPU)")
    t.add_argument("--workers", type=int, help="parallel processes / Ray tasks (default: one per core; at most 4 sharing a GPU)")
    t.add_argument("--threads", type=int, help="torch threads per worker (default: cores / workers)")
    t.add_argument("--checkpoint-every", type=int,
                   help="env steps between resume checkpoints (multiple of the episode length; default 10000)")
    t.add_argument("--eval-every", type=int, help="env steps between deterministic evaluations (default 10000)")
    t.add_argument("--eval-episodes", type=int, help="episodes per evaluation (default 10)")
    t.add_argument("--quality-threshold", type=float, help="flag experts whose final eval return is below this")
    t.add_argument("--batch-size", type=int, help="minibatch size (default: 256, walker-walk 512)")
    t.add_argument("--hidden", help="hidden widths of actor and critics, e.g. 256,256 (default)")
    t.add_argument("--seed-steps", type=int, help="env steps before the first update (default 4000)")
    t.add_argument("--random-steps", type=int, help="uniform-random action steps at the start (default 2000)")
    t.add_argument("--max-episode-steps", type=int,
                   help="shorter episodes, for smoke tests (default: the family's, 1000 for the shipped ones)")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.set_defaults(func=_train)

    c = sub.add_parser("collect", help="roll out trained experts into a dataset (hyperzero.datasets)",
                       formatter_class=fmt)
    c.add_argument("--experts", required=True, help="directory written by `hyperzero experts train`")
    c.add_argument("--out", required=True, help="dataset directory to write (manifest.json + tasks/)")
    c.add_argument("--episodes", type=int, default=10, help="episodes per task")
    c.add_argument("--seed", type=int, default=0, help="seed of the rollout episodes")
    c.add_argument("--action-noise", type=float, default=0.0,
                   help="std of Gaussian noise added to the executed action (then clipped to [-1, 1]); the stored "
                        "labels stay the expert's clean action and q*, so the data cover recovery from errors (DART)")
    c.add_argument("--context-names", help="varied context features, comma list (default: inferred from the tasks)")
    c.add_argument("--exclude-flagged", action="store_true", help="skip experts flagged by the quality gate")
    c.add_argument("--no-progress", action="store_true", help="no progress bars")
    c.set_defaults(func=_collect)
