"""`hyperzero run PRESET|config.yaml`: the whole pipeline, resumable, local or on Ray."""
from __future__ import annotations


from hyperzero.cli import HelpFormatter

ORDER = 60


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run", help="the whole pipeline: experts -> dataset -> fits -> evaluation -> report (resumable)",
        description="Run every stage of a preset or YAML config in one run directory. Each stage is skipped when its "
                    "outputs are complete and valid; corrupt outputs are moved to RUN/corrupt/ and redone, so rerunning "
                    "the same command after a crash resumes. Presets: `hyperzero run --list`.",
        formatter_class=HelpFormatter)
    p.add_argument("config", nargs="?", metavar="PRESET|CONFIG.yaml", help="a preset name or a YAML config file")
    p.add_argument("--list", action="store_true", help="list the shipped presets and exit")
    p.add_argument("--show", action="store_true", help="print the resolved config and exit (nothing is run)")
    p.add_argument("--out", default=None, help="run directory (default: runs/<name>)")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: processes on this machine, one per core by default (experts.num_workers, "
                        "fit.num_workers); ray: Ray tasks for experts and fits")
    p.add_argument("--address", default=None, help="Ray cluster address for --executor ray (default: start a local Ray)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda, for experts and fits (default: the config's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set experts.train_steps=30000 --set fit.seeds=[0,1] (repeatable)")
    p.add_argument("--force", action="store_true",
                   help="accept a config that differs from the run directory's; the stages it affects are redone "
                        "(their old outputs are moved to RUN/stale/)")
    p.add_argument("--experts-from", default=None, metavar="RUN_DIR",
                   help="use the finished experts of another run directory made with the same family and experts "
                        "section, on a grid that contains every task of this run (hard links, nothing retrained), "
                        "e.g. to fit them under another split protocol; refused, naming the difference, otherwise")
    p.add_argument("--stop-after", choices=("experts", "dataset", "fits", "eval", "report"), default=None,
                   help="stop after this stage")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    from hyperzero.cli.flags import add_flags, section_flags

    for section in ("experts", "dataset", "fit", "evaluate"):
        group = p.add_argument_group(f"{section} settings (override the config's `{section}:` section, after --set)")
        add_flags(group, section_flags(section), prefix=f"{section}.")
    p.set_defaults(func=run)


def overrides_of(args) -> list[str]:
    """The command's `--set` items, then its config options as `--set` items (an option wins over a `--set` of
    the same key)."""
    from hyperzero.cli.flags import as_overrides, given_values

    values = given_values(args)
    kept = [item for item in args.overrides if item.split("=", 1)[0].strip() not in values]
    return kept + as_overrides(values)


def run(args) -> int:
    from hyperzero.launchers.config import resolve_pipeline_config
    from hyperzero.launchers.config_files import dump_yaml, list_presets, load_config_source
    from hyperzero.launchers.pipeline import Runtime, run_pipeline

    if args.list:
        presets = list_presets()
        width = max(map(len, presets))
        for name, description in presets.items():
            print(f"{name:{width}s}  {description}")
        return 0
    if not args.config:
        raise ValueError("give a preset name or a config file, e.g. `hyperzero run quickstart`; "
                         "see `hyperzero run --list`")
    if args.show:
        raw, _ = load_config_source(args.config)
        print(dump_yaml(resolve_pipeline_config(raw, overrides_of(args)).to_dict()))  # as config.yaml holds it
        return 0
    runtime = Runtime(executor=args.executor, address=args.address, device=args.device,
                      progress=not args.no_progress)
    run_dir = run_pipeline(args.config, args.out, overrides_of(args), force=args.force, runtime=runtime,
                           stop_after=args.stop_after, experts_from=args.experts_from)
    summary = run_dir / "eval" / "summary.md"
    if summary.exists():
        print(summary.read_text())
    print(f"run directory: {run_dir}")
    return 0
