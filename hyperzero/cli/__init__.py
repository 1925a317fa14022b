"""The `hyperzero` command. Each stage's subcommands live in their own module of this package.

A module here joins the CLI by defining `register(subparsers)` (adds its parser(s), setting
`func=<callable(args) -> int>` as the default) and an integer `ORDER` for its place in `--help`.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows `(default: X)` only where X says something: not for None, flags, or help that states its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or action.default == [] or "default" in text.lower():
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hyperzero",
        description="Zero-shot transfer in RL with hypernetworks: contextual environments, TD3 experts, "
                    "rollout datasets, HyperZero and baselines, held-out evaluation and reports.",
        formatter_class=HelpFormatter,
    )
    from hyperzero import __version__

    parser.add_argument("--version", action="version", version=f"hyperzero {__version__}")
    parser.add_argument("--debug", action="store_true", default=False, help=DEBUG_HELP)
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE", help=PLUGIN_HELP)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    modules = []
    for info in pkgutil.iter_modules(__path__):
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "register"):
            modules.append(mod)
    for mod in sorted(modules, key=lambda m: getattr(m, "ORDER", 100)):
        mod.register(sub)
    _add_debug_flag(sub)
    return parser


DEBUG_HELP = "on an error, print the full traceback (by default bad input prints one clear line)"
PLUGIN_HELP = ("import MODULE (a module name, or a path to a .py file) first: it registers your own family with "
               "hyperzero.envs.register_family (repeatable; docs/own-environment.md). Families of installed packages "
               "(entry points of group hyperzero.families) need no option")


def _add_debug_flag(subparsers: argparse._SubParsersAction) -> None:
    """`--debug` is accepted after any command too (`hyperzero run tiny --debug`), and so is `--plugin` after a
    command that has no subcommands (`hyperzero experts train --plugin my_family.py ...`)."""
    for child in {id(p): p for p in subparsers.choices.values()}.values():
        if not any("--debug" in a.option_strings for a in child._actions):
            child.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
        nested = [a for a in child._actions if isinstance(a, argparse._SubParsersAction)]
        if not nested and not any("--plugin" in a.option_strings for a in child._actions):
            child.add_argument("--plugin", dest="plugin_after_command", action="append", default=argparse.SUPPRESS,
                               metavar="MODULE", help=PLUGIN_HELP)
        for action in nested:
            _add_debug_flag(action)


# Errors that describe the user's input or environment (bad option, damaged file, busy run directory,
# missing file, a failure the message explains): one line, no traceback, unless --debug.
USER_ERRORS = (ValueError, OSError, RuntimeError)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    try:
        plugins = list(getattr(args, "plugin", []) or []) + list(getattr(args, "plugin_after_command", []) or [])
        if plugins:
            from hyperzero.envs import load_plugins

            load_plugins(plugins)
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except USER_ERRORS as e:  # a clear message, no traceback (--debug shows it)
        if getattr(args, "debug", False):
            raise
        kind = "" if isinstance(e, ValueError) else f"{type(e).__name__}: "
        print(f"hyperzero: error: {kind}{e}", file=sys.stderr)
        print("hyperzero: (rerun with --debug for the traceback)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hyperzero: interrupted; rerun the same command to resume from the last checkpoint.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
