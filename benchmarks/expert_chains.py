"""Experts at density: every expert from scratch, or chains along the grid? One grid trained both ways.

"scratch" trains every task for the preset's train_steps; "chained" trains a few anchors per direction from
scratch, then every other task warm-started from its nearest finished expert of the same direction for
`experts.chain.steps` (hyperzero.experts.chain). Each way is the experts stage of a `hyperzero run` of the preset
(`--stop-after experts`, chains switched on or off) in its own run directory, OUT/scratch and OUT/chained, through
the same quality gate (they share nothing: the chained anchors are trained again). Either run directory can then be
finished as the setting's run: `hyperzero run PRESET --out OUT/chained` (with `--set experts.chain.enabled=false`
for OUT/scratch). Then one markdown table, also written to OUT/table.md with the numbers in OUT/results.json:

    way | experts | CPU-min / expert | gate pass (first try, after retries) | mean / min return | mean / ceiling | neighbour action distance

CPU-minutes count each expert's share of its ensemble's CPU time, gate retries included; the neighbour action
distance is hyperzero.experts.smoothness's (RMS action difference of grid neighbours on both experts' own
rollout states: lower = the solutions vary more smoothly along the grid).

    .venv/bin/python benchmarks/expert_chains.py cheetah-run-reward-dense --out $HOME/hz-runs/chains/cheetah-reward
    # or one way at a time (the table lists every finished way): --ways chained, later --ways scratch

A smoke test on a tiny setting (a minute; the numbers mean nothing):

    .venv/bin/python benchmarks/expert_chains.py tiny --out /tmp/chains --smoke

Resumable: rerun the same command (finished experts are skipped). Long on a dense preset: run it in the
background, not beside another benchmark. `--executor ray` trains each way's ensembles as Ray tasks.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WAYS = {"chained": "true", "scratch": "false"}
SMOKE = ["contexts.grid={speed: [-3, -2, 1, 2, 3, 4]}", "experts.train_steps=300", "experts.gate.enabled=true",
         "experts.gate.max_retries=0", "experts.chain.anchors=1",
         "experts.chain.steps=200", "experts.ensemble_size=3"]


def _way_stats(family: str, experts_dir: Path, summaries: list[dict], episodes: int, max_steps: int | None) -> dict:
    import numpy as np

    from hyperzero.envs import get_family
    from hyperzero.experts.smoothness import neighbour_action_distances
    from hyperzero.utils.io import read_json

    cpu = []
    for s in summaries:
        seconds = float(s.get("cpu_seconds", 0.0))
        for r in s.get("retries", []):  # a retry's CPU time is in its own folder's summary
            retry = experts_dir / s["task_id"] / r["dir"] / "summary.json"
            seconds += float(read_json(retry).get("cpu_seconds", 0.0)) if retry.exists() else 0.0
        cpu.append(seconds / 60.0)
    fam = get_family(family)
    steps = max_steps or fam.episode_steps
    ceiling = (fam.max_reward or 0) * steps or None
    returns = [float(s["eval_return_mean"]) for s in summaries]
    passed = [s["gate"]["passed"] for s in summaries if s.get("gate")]
    first = [s["gate"]["passed"] and not s.get("retries") for s in summaries if s.get("gate")]
    pairs = neighbour_action_distances(experts_dir, [s["task_id"] for s in summaries], episodes=episodes,
                                       max_steps=max_steps)
    return {"experts": len(summaries), "cpu_minutes_per_expert": float(np.mean(cpu)),
            "cpu_minutes_total": float(np.sum(cpu)),
            "gate_pass_rate": float(np.mean(passed)) if passed else None,
            "gate_pass_rate_first_try": float(np.mean(first)) if first else None,
            "return_mean": float(np.mean(returns)), "return_min": float(np.min(returns)),
            "returns": {s["task_id"]: float(s["eval_return_mean"]) for s in summaries},
            "return_over_ceiling": float(np.mean(returns)) / ceiling if ceiling else None,
            "neighbour_action_distance": float(np.mean([p["distance"] for p in pairs])) if pairs else None,
            "neighbour_pairs": pairs,
            "chained_from": {s["task_id"]: s.get("chain", {}).get("source") for s in summaries}}


def _finished(run_dir: Path) -> bool:
    """Whether a way's experts stage finished (every expert finished and intact), so a table may list it."""
    from hyperzero.envs import context_id
    from hyperzero.experts.outputs import expert_check
    from hyperzero.launchers.config import resolve_contexts
    from hyperzero.utils.io import read_json

    if not (run_dir / "run_info.json").exists():
        return False
    config = read_json(run_dir / "run_info.json")["config"]
    return all(expert_check(run_dir / "experts" / context_id(c)).ok
               for c in resolve_contexts(config["family"], config["contexts"]))


def _fmt(x, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("preset", help="a preset or config file whose family, grid and experts section are used")
    p.add_argument("--out", type=Path, required=True, help="scratch/ and chained/ experts, table.md, results.json")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides, as hyperzero run")
    p.add_argument("--episodes", type=int, default=1, help="rollout episodes per expert for the action distance")
    p.add_argument("--smoke", action="store_true", help="a tiny grid and budget (" + "; ".join(SMOKE) + ")")
    p.add_argument("--executor", choices=("local", "ray"), default="local", help="as hyperzero run's --executor")
    p.add_argument("--ways", nargs="+", choices=WAYS, default=list(WAYS),
                   help="which ways to train, in this order (default: both; chained first, as it is the setting's run); "
                        "the table lists every way whose experts are finished")
    args = p.parse_args()

    from hyperzero.envs import context_id
    from hyperzero.launchers.config import resolve_contexts
    from hyperzero.launchers.pipeline import Runtime, run_pipeline
    from hyperzero.utils.hardware import cpu_kind
    from hyperzero.utils.io import read_json

    overrides = (SMOKE if args.smoke else []) + args.set
    results = {"preset": args.preset, "overrides": overrides, "cpu": cpu_kind(), "ways": {}}
    for way in args.ways:
        out = args.out / way
        print(f"expert_chains: the experts of {args.preset}, {way}, in the run directory {out}", file=sys.stderr)
        run_pipeline(args.preset, out, [*overrides, f"experts.chain.enabled={WAYS[way]}"], stop_after="experts",
                     runtime=Runtime(executor=args.executor, progress=not args.smoke))
    for way in WAYS:
        out = args.out / way
        if not _finished(out):
            continue
        config = read_json(out / "run_info.json")["config"]
        family, experts = config["family"], config["experts"]
        contexts = resolve_contexts(family, config["contexts"])
        summaries = [read_json(out / "experts" / context_id(c) / "summary.json") for c in contexts]
        results.update(family=family, tasks=len(contexts), chain={**(experts.get("chain") or {}), "enabled": True})
        results["ways"][way] = _way_stats(family, out / "experts", summaries, args.episodes,
                                          experts.get("max_episode_steps"))
    lines = [f"{results['family']}, {results['tasks']} tasks ({args.preset}{' --smoke' if args.smoke else ''}), {cpu_kind()}", "",
             "| way | experts | CPU-min / expert | gate pass (first try) | gate pass (after retries) | mean return | "
             "min return | mean return / ceiling | neighbour action distance |", "|---|---|---|---|---|---|---|---|---|"]
    for way, r in results["ways"].items():
        lines.append(f"| {way} | {r['experts']} | {r['cpu_minutes_per_expert']:.2f} "
                     f"| {_fmt(r['gate_pass_rate_first_try'], '.2f')} | {_fmt(r['gate_pass_rate'], '.2f')} "
                     f"| {r['return_mean']:.0f} | {r['return_min']:.0f} | {_fmt(r['return_over_ceiling'], '.2f')} "
                     f"| {_fmt(r['neighbour_action_distance'], '.3f')} |")
    table = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(table)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table)


if __name__ == "__main__":
    main()
