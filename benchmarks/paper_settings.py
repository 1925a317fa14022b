"""The paper's nine settings at reduced scale and at the paper's density: run them, publish each result, and
tabulate all of them.

    # run (resumable: rerun the same command after a crash or a new session; finished settings are skipped)
    nohup .venv/bin/python benchmarks/paper_settings.py run --root $HOME/hz-runs/nine --executor ray > nine.log 2>&1 &
    # the dense settings, reward first; after each reward setting its HyPoGen-split row on the same experts
    nohup .venv/bin/python benchmarks/paper_settings.py run --scale dense --root $HOME/hz-runs/dense > dense.log 2>&1 &
    # copy one finished run's small results into docs/results/<setting>/ (run does this itself)
    .venv/bin/python benchmarks/paper_settings.py publish cheetah-run-reward-small --root $HOME/hz-runs/nine
    # the nine-row markdown table of docs/results/README.md, from what is published
    .venv/bin/python benchmarks/paper_settings.py table
    # and the probability-of-improvement table beside it
    .venv/bin/python benchmarks/paper_settings.py improvement
    # the dense table beside the reduced one, HyPoGen's numbers, and a verdict per setting on interpolation pairs
    .venv/bin/python benchmarks/paper_settings.py dense-table
    .venv/bin/python benchmarks/paper_settings.py verdicts
    # where HyperZero stands against the imitation targets, per published setting
    .venv/bin/python benchmarks/paper_settings.py targets

Each setting is `hyperzero run <family>-<kind>-<small|dense> --out <root>/<setting>`; a parity setting
(`<family>-reward-dense-hypogen`, HyPoGen's 20 % / 80 % split) runs on the experts of its dense run
(`--experts-from`). Stage wall times are in the run's stage_times.json and are copied with the results, with the
experts' and fits' CPU time (cpu_time.json).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from hyperzero.evaluation.report import cpu_time

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
FAMILIES = ("cheetah-run", "walker-walk", "finger-spin")
KINDS = ("reward", "dynamics", "both")
# Cheapest evidence first: the cheetah reward setting also replaces the superseded cheetah reference run. Walker
# reward comes early because its expert grid is also the walker evidence of the expert solver; the other two walker
# settings last: their experts need 120k steps, 3x the others (docs/benchmarks-experts.md (k)).
ORDER = [f"{fam}-{kind}-small" for fam, kind in
         [("cheetah-run", "reward"), ("finger-spin", "reward"), ("cheetah-run", "dynamics"),
          ("walker-walk", "reward"), ("finger-spin", "dynamics"), ("finger-spin", "both"),
          ("cheetah-run", "both"), ("walker-walk", "dynamics"), ("walker-walk", "both")]]
# The dense settings: the three reward settings first (cheetah, finger, walker), each followed by its parity run on
# the same experts (HyPoGen's split), then the other six, cheapest first.
DENSE_ORDER = [f"{fam}-{kind}-dense" for fam, kind in
               [("cheetah-run", "reward"), ("finger-spin", "reward"), ("walker-walk", "reward"),
                ("cheetah-run", "dynamics"), ("finger-spin", "dynamics"), ("finger-spin", "both"),
                ("cheetah-run", "both"), ("walker-walk", "dynamics"), ("walker-walk", "both")]]
PARITY = {f"{fam}-reward-dense-hypogen": f"{fam}-reward-dense" for fam in FAMILIES}  # parity run -> experts' run
SCALES = {"small": ORDER, "dense": [s for d in DENSE_ORDER for s in (d, *[p for p, src in PARITY.items() if src == d])]}
ALL_SETTINGS = ORDER + SCALES["dense"]
METHODS = ["hyperzero", "hyperzero_without_td", "hyperzero_without_q", "mlp_policy", "mlp_uvfa_td", "maml", "pearl",
           "context_blind"]
# Held-out average return reported in HyPoGen's Table 1 (ICLR 2025; 1M-step TD3 experts, 20 % train / 80 % test
# split, checkpoints picked on test return), transcribed from a summary of that table, not checked against the paper.
HYPOGEN_TABLE = {  # setting: (HyperZero, HyPoGen, expert)
    "cheetah-run-reward": (695.7, 819.2, 869.6), "cheetah-run-dynamics": (895.5, 926.9, 963.1),
    "cheetah-run-both": (602.4, 623.8, 927.1), "finger-spin-reward": (596.8, 835.2, 975.7),
    "finger-spin-dynamics": (536.6, 657.1, 959.4), "finger-spin-both": (353.7, 365.9, 913.4),
    "walker-walk-reward": (328.5, 436.3, 722.7), "walker-walk-dynamics": (642.2, 706.2, 897.1),
    "walker-walk-both": (393.9, 409.9, 814.4),
}
# Why a setting has no published result yet, where "not run yet" is not the reason.
NOT_PUBLISHED: dict[str, str] = {}
# What a published result keeps (small files only): run path -> docs path.
PUBLISHED = {"config.yaml": "config.yaml", "report.md": "report.md", "stage_times.json": "stage_times.json",
             "experts/gate.json": "gate.json", "eval/results.csv": "results.csv", "eval/summary.csv": "summary.csv",
             "eval/summary.md": "summary.md", "eval/cloning.csv": "cloning.csv", "eval/positions.csv": "positions.csv"}
# A setting republished under new defaults keeps its earlier result here, labelled "before" in the tables.
BEFORE = RESULTS / "before-imitation"
VIDEOS_KEPT = 2


def run(settings: list[str], root: Path, executor: str = "local") -> None:
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "PYTHONUNBUFFERED": "1"}
    for setting in settings:
        out = root / setting
        if (RESULTS / setting / "summary.csv").exists() and (out / "eval" / "done.json").exists():
            print(f"{setting}: published; skipped", flush=True)
            continue
        command = [sys.executable, "-m", "hyperzero", "run", setting, "--out", str(out), "--executor", executor,
                   "--no-progress"]
        if setting in PARITY and not (out / "experts").exists():  # linked once; a resumed run has them
            command += ["--experts-from", str(root / PARITY[setting])]
        print(f"{setting}: {' '.join(command[2:])}", flush=True)
        with open(root / f"{setting}.log", "a") as log:
            code = subprocess.call(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        if code != 0:
            sys.exit(f"{setting}: hyperzero run exited with {code}; see {root / (setting + '.log')}; "
                     "rerun this command to resume")
        publish(setting, out)


def publish(setting: str, run_dir: Path, keep_before: bool = False) -> Path:
    """Copy the small results of a finished run into docs/results/<setting>/ (figures as PNG, two videos); with
    `keep_before`, the result published there until now moves to docs/results/before-imitation/<setting>/."""
    if not (run_dir / "eval" / "done.json").exists():
        raise SystemExit(f"{run_dir} has no finished evaluation; run it first")
    dest = RESULTS / setting
    if keep_before and dest.exists():
        if (BEFORE / setting).exists():
            raise SystemExit(f"{BEFORE / setting} exists already: the earlier result is kept once; publish without "
                             f"--keep-before to replace only {dest}")
        BEFORE.mkdir(parents=True, exist_ok=True)
        shutil.move(dest, BEFORE / setting)
        report = BEFORE / setting / "report.md"  # its links to the repository's docs are one folder deeper now
        if report.exists():
            report.write_text(report.read_text().replace("](../", "](../../"))
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "figures").mkdir(parents=True)
    for src, name in PUBLISHED.items():
        if (run_dir / src).exists():
            shutil.copyfile(run_dir / src, dest / name)
    for png in sorted((run_dir / "eval" / "figures").glob("*.png")):
        shutil.copyfile(png, dest / "figures" / png.name)
    # CPU time per training stage, summed from the run's experts and fits (the report states the same)
    (dest / "cpu_time.json").write_text(json.dumps(cpu_time(run_dir), indent=1) + "\n")
    videos = sorted((run_dir / "eval" / "videos").glob("hyperzero_seed0_*.mp4"))[:VIDEOS_KEPT]
    if videos:
        (dest / "videos").mkdir()
        for v in videos:
            shutil.copyfile(v, dest / "videos" / v.name)
    # the report links figures and videos relative to the run's eval folder; point them at the copies
    report = dest / "report.md"
    if report.exists():
        report.write_text(report.read_text().replace("eval/figures/", "figures/").replace("eval/videos/", "videos/"))
    print(f"{setting}: published to {dest.relative_to(REPO)}", flush=True)
    return dest


def _summary(setting: str) -> dict[str, dict]:
    with open(RESULTS / setting / "summary.csv", newline="") as f:
        return {row["method"]: row for row in csv.DictReader(f)}


def _expert_mean(setting: str) -> float | None:
    """Mean expert return over the held-out (split seed, task) pairs that were scored (as the IQMs use)."""
    with open(RESULTS / setting / "results.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["method"] == "hyperzero" and not r.get("excluded")
                and r.get("role", "test") == "test"]  # held-out rows, not the cloning rows on training tasks
    return sum(float(r["expert_return"]) for r in rows) / len(rows) if rows else None


def _wall_seconds(invocations: list[dict]) -> float:
    """Wall time over every invocation of a resumed run: its total, or for one that was killed (no total), the
    stages it finished (work a killed stage had done is not recorded)."""
    return sum(t["seconds"].get("total", sum(t["seconds"].values())) for t in invocations)


def _cpu_hours(setting: str) -> float | None:
    """CPU-hours of the experts and fits, where every one of them recorded its CPU time (None otherwise)."""
    path = RESULTS / setting / "cpu_time.json"
    if not path.exists():
        return None
    stages = json.loads(path.read_text()).values()  # experts linked from another run count 0 here
    if any(s["unrecorded"] or not (s["count"] or s.get("linked_from")) for s in stages):
        return None
    return sum(s["seconds"] for s in stages) / 3600


def _cpu(setting: str, root: Path = RESULTS) -> str:
    """The CPU a published result ran on, as its report names it ("Machine: AMD EPYC (family 25, model 1), ...")."""
    found = re.search(r"^Machine: (.*?), \d+ cores", (root / setting / "report.md").read_text(), re.MULTILINE)
    return found.group(1) if found else "not recorded"


def table() -> str:
    methods = METHODS
    head = ("| setting | " + " | ".join(methods) + " | expert (ours) | HyPoGen T1: HyperZero / HyPoGen / expert "
            "| hours (2 cores): wall (CPU) | CPU |")
    lines = [head, "|" + "---|" * (len(methods) + 5)]
    for fam in FAMILIES:
        for kind in KINDS:
            setting = f"{fam}-{kind}-small"
            anchor = HYPOGEN_TABLE[f"{fam}-{kind}"]
            anchors = " / ".join(f"{x:.0f}" for x in anchor)
            if not (RESULTS / setting / "summary.csv").exists():
                status = NOT_PUBLISHED.get(setting, "not run yet")
                lines.append(f"| {setting} | " + " | ".join(status if m == "hyperzero" else "" for m in methods)
                             + f" | | {anchors} | | |")
                continue
            rows = _summary(setting)
            cells = []
            for m in methods:
                r = rows.get(m)
                cells.append("–" if r is None else
                             f"{float(r['iqm_score']):.2f} [{float(r['iqm_score_lo']):.2f}, {float(r['iqm_score_hi']):.2f}]"
                             f"<br>R {float(r['iqm_return']):.0f}")
            expert = _expert_mean(setting)
            hours = f"{_wall_seconds(json.loads((RESULTS / setting / 'stage_times.json').read_text())) / 3600:.1f}"
            cpu_hours = _cpu_hours(setting)
            if cpu_hours is not None:
                hours += f" ({cpu_hours:.1f})"
            lines.append(f"| [{setting}]({setting}/report.md) | " + " | ".join(cells)
                         + f" | {'' if expert is None else f'{expert:.0f}'} | {anchors} | {hours} | {_cpu(setting)} |")
    return "\n".join(lines)


def improvement_table() -> str:
    """P(HyperZero beats X on a held-out pair) per published setting and per baseline / ablation X, with 95 %
    stratified-bootstrap intervals (the evaluation's defaults); bold where the interval lies above or below 0.5."""
    from hyperzero.evaluation.metrics import read_results
    from hyperzero.evaluation.stats import aggregate

    others = ["mlp_policy", "mlp_uvfa_td", "context_blind", "maml", "pearl", "hyperzero_without_td",
              "hyperzero_without_q"]
    lines = ["| setting | " + " | ".join(f"P(HyperZero > {m})" for m in others) + " | CPU |", "|" + "---|" * (len(others) + 2)]
    for setting in ORDER:
        if not (RESULTS / setting / "results.csv").exists():
            continue
        rows = read_results(RESULTS / setting / "results.csv")
        present = {r.method for r in rows}
        cells = []
        for m in others:
            if m not in present:
                cells.append("–")
                continue
            hz = next(x for x in aggregate(rows, baseline=m) if x.method == "hyperzero")
            cell = f"{hz.poi:.2f} [{hz.poi_lo:.2f}, {hz.poi_hi:.2f}]"
            cells.append(f"**{cell}**" if hz.poi_lo > 0.5 or hz.poi_hi < 0.5 else cell)
        lines.append(f"| {setting} | " + " | ".join(cells) + f" | {_cpu(setting)} |")
    return "\n".join(lines)


def _held_out(setting: str, method: str = "hyperzero", group: str | None = None) -> list:
    """The scored held-out rows of one method in a published setting (one position group, or all)."""
    from hyperzero.evaluation.metrics import read_results, test_rows
    from hyperzero.evaluation.stats import rows_of_group

    rows = read_results(RESULTS / setting / "results.csv")
    rows = rows_of_group(rows, group) if group else test_rows(rows)
    return [r for r in rows if r.method == method and not r.excluded]


def _return_ratio(rows: list) -> float:
    """HyPoGen's metric over scored rows: mean return / mean expert return (R/E)."""
    return sum(r.return_mean for r in rows) / sum(r.expert_return for r in rows)


def _group_cell(setting: str, group: str | None) -> str:
    """HyperZero's held-out IQM score [95 % interval] over all pairs or one position group, as the setting's report
    gives it, then the raw ratio as HyPoGen's table computes it (mean return / mean expert return over the same
    pairs), the mean raw return and the pair count."""
    rows = _held_out(setting, group=group)
    if not rows:
        return "no pairs"
    ratio = _return_ratio(rows)
    raw = f"R/E {ratio:.2f} (R {sum(r.return_mean for r in rows) / len(rows):.0f}), {len(rows)} pairs"
    published = (_rows_by(RESULTS / setting / "summary.csv") if group is None
                 else _rows_by(RESULTS / setting / "positions.csv", group)).get("hyperzero")
    if published is None or published["iqm_score"] in ("", "nan"):  # too few pairs for an IQM
        return raw
    return f"{_cell(published).split('<br>')[0]}<br>{raw}"


def dense_table() -> str:
    """Per setting: HyperZero held out at reduced scale and at density (all pairs, between, outside), HyPoGen's
    Table 1 ratios, and for the reward settings the same experts under HyPoGen's split."""
    lines = ["| setting | reduced (-small): all held-out pairs | dense: all | dense: between training tasks | "
             "dense: outside | dense, HyPoGen's split (20 / 80): all | HyPoGen T1: HyperZero / HyPoGen, ÷ expert | "
             "dense: CPU-hours | dense: CPU |", "|" + "---|" * 9]
    for fam in FAMILIES:
        for kind in KINDS:
            small, dense, parity = f"{fam}-{kind}-small", f"{fam}-{kind}-dense", f"{fam}-{kind}-dense-hypogen"
            hz, hypogen, expert = HYPOGEN_TABLE[f"{fam}-{kind}"]
            cells = [_group_cell(small, None) if (RESULTS / small / "results.csv").exists() else "not run"]
            if (RESULTS / dense / "results.csv").exists():
                cells += [_group_cell(dense, g) for g in (None, "between", "outside")]
            else:
                cells += ["not run yet", "", ""]
            if parity in PARITY:
                cells.append(_group_cell(parity, None) if (RESULTS / parity / "results.csv").exists() else "not run yet")
            else:
                cells.append("–")
            cpu = _cpu_hours(dense) if (RESULTS / dense).exists() else None
            cells += [f"{hz / expert:.2f} / {hypogen / expert:.2f}", "" if cpu is None else f"{cpu:.1f}",
                      _cpu(dense) if (RESULTS / dense / "report.md").exists() else ""]
            name = f"[{dense}]({dense}/report.md)" if (RESULTS / dense / "report.md").exists() else dense
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdicts(group: str = "between") -> str:
    """Per published dense setting, on its held-out pairs of `group`: whether HyperZero beats each baseline and each
    ablation (P(HyperZero > X) with its 95 % interval: above 0.5 = beats, below = behind, else level), and how close
    it is to the expert."""
    from hyperzero.evaluation.metrics import read_results
    from hyperzero.evaluation.stats import aggregate, rows_of_group

    lines = [f"| setting | HyperZero on pairs {group} training tasks | beats | level with | behind | CPU |",
             "|---|---|---|---|---|---|"]
    for setting in SCALES["dense"]:
        if not (RESULTS / setting / "results.csv").exists():
            continue
        rows = [r for r in rows_of_group(read_results(RESULTS / setting / "results.csv"), group) if not r.excluded]
        beats, level, behind = [], [], []
        for m in [m for m in METHODS if m != "hyperzero" and any(r.method == m for r in rows)]:
            hz = next((x for x in aggregate(rows, baseline=m) if x.method == "hyperzero"), None)
            if hz is None or hz.poi != hz.poi:  # no common pairs
                continue
            cell = f"{m} ({hz.poi:.2f} [{hz.poi_lo:.2f}, {hz.poi_hi:.2f}])"
            (beats if hz.poi_lo > 0.5 else behind if hz.poi_hi < 0.5 else level).append(cell)
        lines.append(f"| {setting} | {_group_cell(setting, group)} | {', '.join(beats) or '–'} | "
                     f"{', '.join(level) or '–'} | {', '.join(behind) or '–'} | {_cpu(setting)} |")
    return "\n".join(lines)


def _cell(row: dict | None) -> str:
    if row is None:
        return "–"
    if row["iqm_score"] in ("", "nan"):  # too few pairs for an IQM: their mean, as the report shows
        return f"mean {float(row['mean_score']):.2f}<br>R {float(row['mean_return']):.0f} (n = {row['n_pairs']})"
    return (f"{float(row['iqm_score']):.2f} [{float(row['iqm_score_lo']):.2f}, {float(row['iqm_score_hi']):.2f}]"
            f"<br>R {float(row['iqm_return']):.0f}")


def _rows_by(path: Path, group: str | None = None) -> dict[str, dict]:
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {r["method"]: r for r in csv.DictReader(f) if group is None or r.get("group") == group}


def before_after_table() -> str:
    """Per republished setting and method: held-out IQM score before (the earlier defaults) and after, the cloning
    score after (on training tasks), and the held-out score split into pairs between / outside the training tasks."""
    lines = ["| setting | method | held-out before | held-out after | cloning after | between after | outside after | "
             "CPU: before / after |", "|---|---|---|---|---|---|---|---|"]
    for setting in ALL_SETTINGS:
        if not (BEFORE / setting / "summary.csv").exists() or not (RESULTS / setting / "summary.csv").exists():
            continue
        before, after = _rows_by(BEFORE / setting / "summary.csv"), _rows_by(RESULTS / setting / "summary.csv")
        cloning = _rows_by(RESULTS / setting / "cloning.csv", "train")
        between = _rows_by(RESULTS / setting / "positions.csv", "between")
        outside = _rows_by(RESULTS / setting / "positions.csv", "outside")
        cpus = f"{_cpu(setting, BEFORE)} / {_cpu(setting)}"
        for m in [m for m in after if m in before] + [m for m in after if m not in before]:
            lines.append(f"| [{setting}]({setting}/report.md) | {m} | {_cell(before.get(m))} | {_cell(after.get(m))} | "
                         f"{_cell(cloning.get(m))} | {_cell(between.get(m))} | {_cell(outside.get(m))} | {cpus} |")
    return "\n".join(lines)


# The imitation targets: HyperZero's cloning score on its training tasks, per family, and for walker its held-out
# return / expert at least HyPoGen's figure for HyperZero (HYPOGEN_TABLE) on the same kind of setting.
CLONING_TARGET = {"cheetah-run": 0.9, "finger-spin": 0.9, "walker-walk": 0.8}


def targets_table() -> str:
    """Per published setting: HyperZero's cloning score against its family's target, its held-out score before and
    after the imitation defaults (worse = the after interval's upper end below the before IQM), and its held-out
    return / expert (HyPoGen's metric) against HyPoGen's figure for HyperZero, a target for walker only."""
    lines = ["| setting | CPU | HyperZero cloning [95% CI] (target) | held out: before → after | held-out R/E "
             "(HyPoGen's HyperZero) | targets |", "|---|---|---|---|---|---|"]
    for setting in ["quickstart", *ALL_SETTINGS]:
        if not (RESULTS / setting / "summary.csv").exists():
            continue
        family = "cheetah-run" if setting == "quickstart" else next(f for f in FAMILIES if setting.startswith(f))
        kind = next((k for k in KINDS if setting.startswith(f"{family}-{k}")), None)
        missed = []
        clone = _rows_by(RESULTS / setting / "cloning.csv", "train").get("hyperzero")
        if clone is None:
            clone_cell = "not scored"
            missed.append("cloning not scored")
        else:
            clone_cell = f"{_cell(clone).split('<br>')[0]} (≥ {CLONING_TARGET[family]})"
            if float(clone["iqm_score"]) < CLONING_TARGET[family]:
                missed.append("cloning")
        after = _rows_by(RESULTS / setting / "summary.csv")["hyperzero"]
        before = _rows_by(BEFORE / setting / "summary.csv").get("hyperzero")
        held = f"{float(after['iqm_score']):.2f} [{float(after['iqm_score_lo']):.2f}, {float(after['iqm_score_hi']):.2f}]"
        if before is not None:
            held = f"{float(before['iqm_score']):.2f} → {held}"
            if float(after["iqm_score_hi"]) < float(before["iqm_score"]):
                missed.append("worse than before")
        ratio = _return_ratio(_held_out(setting))
        ratio_cell = f"{ratio:.2f}"
        if kind is not None:  # the quickstart has no HyPoGen figure
            hz, _, expert = HYPOGEN_TABLE[f"{family}-{kind}"]
            ratio_cell += f" ({hz / expert:.2f})"
            if family == "walker-walk" and ratio < hz / expert:
                missed.append("walker R/E")
        else:
            ratio_cell += " (–)"
        verdict = "met" if not missed else "**missed: " + ", ".join(missed) + "**"
        name = f"[{setting}]({setting}/report.md)"
        lines.append(f"| {name} | {_cpu(setting)} | {clone_cell} | {held} | {ratio_cell} | {verdict} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the settings in order (resumable), publishing each as it finishes")
    r.add_argument("--root", type=Path, default=Path.home() / "hz-runs" / "nine", help="folder of the run dirs")
    r.add_argument("--scale", choices=tuple(SCALES), default="small",
                   help="small: the nine reduced settings; dense: the nine at the paper's density, each reward setting "
                        "followed by its HyPoGen-split run on the same experts")
    r.add_argument("--settings", nargs="+", default=None, choices=ALL_SETTINGS, metavar="SETTING",
                   help="which settings, in this order (default: every setting of --scale, in its order)")
    r.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="hyperzero run's executor: local processes (one fit per core, docs/pipeline.md) or Ray "
                        "tasks (one one-thread fit per CPU, also across a cluster)")
    p = sub.add_parser("publish", help="copy a finished run's small results into docs/results/<setting>/")
    p.add_argument("setting", choices=ALL_SETTINGS)
    p.add_argument("--root", type=Path, default=Path.home() / "hz-runs" / "nine")
    p.add_argument("--run", type=Path, default=None, help="the finished run directory (default: ROOT/SETTING)")
    p.add_argument("--keep-before", action="store_true",
                   help="move the result published until now to docs/results/before-imitation/SETTING/ first")
    sub.add_parser("before-after", help="print held-out before / after and cloning per republished setting")
    sub.add_parser("table", help="print the nine-row markdown table from docs/results/*-small/")
    sub.add_parser("improvement", help="print P(HyperZero > each baseline and ablation) per published setting")
    sub.add_parser("dense-table", help="print the dense table beside the reduced one and HyPoGen's ratios")
    sub.add_parser("targets", help="print, per published setting, where HyperZero stands against the imitation "
                                   "targets (cloning, no setting worse, walker held-out return / expert)")
    v = sub.add_parser("verdicts", help="print, per dense setting, which methods HyperZero beats on held-out pairs")
    v.add_argument("--group", choices=("between", "outside"), default="between",
                   help="held-out pairs between the training tasks (interpolation) or outside them")
    args = ap.parse_args()
    if args.command == "run":
        run(args.settings or SCALES[args.scale], args.root, args.executor)
    elif args.command == "publish":
        publish(args.setting, args.run or args.root / args.setting, keep_before=args.keep_before)
    elif args.command == "before-after":
        print(before_after_table())
    elif args.command == "improvement":
        print(improvement_table())
    elif args.command == "dense-table":
        print(dense_table())
    elif args.command == "verdicts":
        print(verdicts(args.group))
    elif args.command == "targets":
        print(targets_table())
    else:
        print(table())


if __name__ == "__main__":
    main()
