"""Expert solvers side by side on a preset's task grid and budget: return, gate pass rate, CPU-minutes per expert.

    .venv/bin/python benchmarks/solvers.py --preset cheetah-run-dynamics-small --solvers td3 sac \
        --out $HOME/hz-runs/solvers/cheetah --markdown docs/benchmarks-experts-solvers.md
    .venv/bin/python benchmarks/solvers.py --preset tiny --out /tmp/solvers-smoke    # smoke test, ~1 minute

Each solver trains the preset's experts (its `experts:` section: profile, budget, gate, packing; `--set` overrides
it as `hyperzero run` does) into <out>/<solver>/, with the same seed, and the rows are compared:

* return: the final deterministic evaluation return per expert (after the gate's retries, as the pipeline keeps);
* gate: the share of experts the quality gate passed at the first attempt, and after its retries;
* CPU-minutes per expert: each expert's share of its ensemble's process CPU time, its retries included (CPU time,
  unlike wall time, is not inflated when other work shares the cores).

Keys of the section that a solver's config lacks (e.g. TD3's exploration noise for SAC) are left out for that
solver and named on stderr. Resumable: rerunning the same command skips finished experts. Writes
<out>/solvers.csv (one row per solver and task) and a markdown table (stdout, and --markdown when given).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def solver_settings(section: dict, solver: str):
    """(the typed experts section for `solver`, keys left out) of a resolved `experts:` section: the keys the
    solver's config lacks (e.g. TD3's exploration noise for SAC) are left out."""
    from hyperzero.experts.solvers import get_solver
    from hyperzero.launchers.config import SWEEP_KEYS, ExpertsSection

    fields = {f.name for f in dataclasses.fields(get_solver(solver).config_class)}
    left_out = sorted(k for k in section if k not in fields and k not in SWEEP_KEYS)
    kept = {k: v for k, v in section.items() if k not in left_out}
    return ExpertsSection.from_dict({**kept, "solver": solver}), left_out


def expert_row(solver: str, task_dir: Path, summary: dict) -> dict:
    from hyperzero.utils.io import read_json

    cpu = float(summary.get("cpu_seconds", 0.0))
    for retry in summary.get("retries", []):
        path = task_dir / retry["dir"] / "summary.json"
        if path.exists():
            cpu += float(read_json(path).get("cpu_seconds", 0.0))
    gate = summary.get("gate")
    return {"solver": solver, "task_id": summary["task_id"], "return": summary["eval_return_mean"],
            "first_return": (summary.get("first_attempt") or summary)["eval_return_mean"],
            "passed_first": None if gate is None else not summary.get("retries") and gate["passed"],
            "passed": None if gate is None else gate["passed"], "retries": len(summary.get("retries", [])),
            "cpu_minutes": cpu / 60.0}


def markdown(rows: list[dict], title: str) -> str:
    def share(values) -> str:
        values = [v for v in values if v is not None]
        return f"{sum(values)}/{len(values)}" if values else "gate off"

    lines = [f"### {title}", "",
             "| solver | experts | return mean | return median | min | gate pass (first try) | gate pass (after retries) "
             "| CPU-min / expert |", "|---|---|---|---|---|---|---|---|"]
    for solver in dict.fromkeys(r["solver"] for r in rows):
        mine = [r for r in rows if r["solver"] == solver]
        returns = [r["return"] for r in mine]
        lines.append(f"| {solver} | {len(mine)} | {statistics.mean(returns):.0f} | {statistics.median(returns):.0f} | "
                     f"{min(returns):.0f} | {share(r['passed_first'] for r in mine)} | "
                     f"{share(r['passed'] for r in mine)} | {statistics.mean(r['cpu_minutes'] for r in mine):.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", required=True, help="a preset name or a config file (its family, contexts, experts)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key, as `hyperzero run --set` (e.g. experts.train_steps=20000)")
    ap.add_argument("--solvers", nargs="+", default=["td3", "sac"], help="registry names (hyperzero.experts.solvers)")
    ap.add_argument("--out", required=True, help="folder of the experts (<out>/<solver>/) and solvers.csv")
    ap.add_argument("--markdown", help="also write the table to this file")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    from hyperzero.experts import train_experts
    from hyperzero.experts.solvers import get_solver
    from hyperzero.launchers.config import resolve_config, resolve_contexts
    from hyperzero.launchers.config_files import load_config_source

    for name in args.solvers:
        get_solver(name)  # an unknown name fails before any training
    raw, source = load_config_source(args.preset)
    config = resolve_config(raw, args.set)
    family, contexts = config["family"], resolve_contexts(config["family"], config["contexts"])
    out = Path(args.out)
    rows = []
    for solver in args.solvers:
        experts, left_out = solver_settings(config["experts"], solver)
        if left_out:
            print(f"solvers: {solver}: {source}'s experts keys {left_out} are not "
                  f"{type(experts.solver).__name__} fields; left out", file=sys.stderr)
        summaries = train_experts(family, contexts, out / solver, experts.solver,
                                  ensemble_size=experts.settings.ensemble_size, num_workers=experts.settings.num_workers,
                                  progress=not args.no_progress, gate=experts.gate)
        rows += [expert_row(solver, out / solver / s["task_id"], s) for s in summaries]
    with open(out / "solvers.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = markdown(rows, f"{family}, {len(contexts)} tasks ({source}{', ' + ', '.join(args.set) if args.set else ''})")
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table)


if __name__ == "__main__":
    main()
