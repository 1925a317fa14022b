"""`hyperzero dataset export-minari|import-minari`: rollout datasets to and from Minari (docs/dataset-format.md)."""
from __future__ import annotations

import argparse

from hyperzero.cli import HelpFormatter

ORDER = 25  # after `experts` (which writes datasets), before `fit`

MINARI_PATH_HELP = ("Minari's datasets folder for this command (sets MINARI_DATASETS_PATH); default: the "
                    "MINARI_DATASETS_PATH environment variable, else ~/.minari/datasets")


def register(subparsers: argparse._SubParsersAction) -> None:
    fmt = HelpFormatter
    group = subparsers.add_parser("dataset", help="convert rollout datasets to and from other formats (Minari)",
                                  formatter_class=fmt)
    sub = group.add_subparsers(title="dataset commands", metavar="COMMAND")
    group.set_defaults(func=lambda args: group.print_help() or 0)

    e = sub.add_parser("export-minari", formatter_class=fmt,
                       help="write a hyperzero dataset as one Minari dataset (every task; context in each episode's "
                            "reset options, q* in infos, expert metadata in the dataset metadata)")
    e.add_argument("dataset", help="hyperzero dataset directory (manifest.json + tasks/)")
    e.add_argument("--dataset-id", help="Minari dataset id, (namespace/)name-v<version>; default: "
                                        "hyperzero/<family>/<directory name>-v0")
    e.add_argument("--minari-path", help=MINARI_PATH_HELP)
    e.add_argument("--data-format", choices=("hdf5", "arrow"), default="hdf5",
                   help="Minari storage format (hdf5 needs h5py, arrow needs pyarrow)")
    e.add_argument("--author", help="author recorded in the Minari metadata")
    e.add_argument("--author-email", help="author e-mail recorded in the Minari metadata")
    e.add_argument("--code-permalink", help="link to the code that produced the data, recorded in the Minari metadata")
    e.add_argument("--description", help="description recorded in the Minari metadata (default: one generated from "
                                         "the family, the number of tasks and the varied features)")
    e.add_argument("--algorithm-name", help="algorithm recorded in the Minari metadata (default: the experts' "
                                            "source, e.g. hyperzero-td3)")
    e.add_argument("--allow-unfinalized", action="store_true",
                   help="export a dataset whose collection was interrupted (its finished tasks)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing Minari dataset of the same id")
    e.set_defaults(func=_export)

    i = sub.add_parser("import-minari", formatter_class=fmt,
                       help="write a Minari dataset (exported by hyperzero, or recorded on a hyperzero/<family>-v0 "
                            "env) as a hyperzero dataset directory")
    i.add_argument("dataset", help="Minari dataset id (e.g. hyperzero/cheetah-run/expert-v0) or its folder")
    i.add_argument("--out", required=True, help="hyperzero dataset directory to write (rerun to resume)")
    i.add_argument("--minari-path", help=MINARI_PATH_HELP)
    i.add_argument("--family", help="hyperzero family of the data, if the Minari dataset does not name it")
    i.add_argument("--context-names", help="varied context features, comma list (default: the exported ones, else "
                                           "the features that differ across the episodes' contexts)")
    i.add_argument("--gamma", type=float, help="discount for return_to_go (default: the exported one, else 0.99)")
    i.add_argument("--expert-source", default="minari",
                   help="expert source recorded for data without hyperzero expert metadata")
    i.add_argument("--overwrite", action="store_true", help="delete an existing dataset in --out first")
    i.set_defaults(func=_import)


def _export(args) -> int:
    from hyperzero.datasets.minari_io import export_minari

    ds = export_minari(args.dataset, args.dataset_id, data_format=args.data_format, author=args.author,
                       author_email=args.author_email, code_permalink=args.code_permalink,
                       description=args.description, algorithm_name=args.algorithm_name, overwrite=args.overwrite,
                       allow_unfinalized=args.allow_unfinalized, minari_path=args.minari_path)
    meta = ds.storage.metadata["hyperzero"]
    print(f"exported {len(meta['tasks'])} tasks, {ds.total_episodes} episodes, {ds.total_steps} steps -> Minari "
          f"dataset {ds.id} ({ds.storage.data_path.parent})")
    return 0


def _import(args) -> int:
    from hyperzero.datasets import load_dataset
    from hyperzero.datasets.minari_io import import_minari

    names = [n.strip() for n in args.context_names.split(",") if n.strip()] if args.context_names else None
    out = import_minari(args.dataset, args.out, family=args.family, context_names=names, gamma=args.gamma,
                        expert_source=args.expert_source, overwrite=args.overwrite, minari_path=args.minari_path)
    ds = load_dataset(out)
    print(f"imported {len(ds.tasks)} tasks of {ds.family} (context_names {ds.context_names}) -> {out}")
    return 0
