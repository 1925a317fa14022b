"""`report.md` and a self-contained `report.html` (figures embedded as base64 PNG) for a run directory.

Everything is read from the run's files: `config.yaml`, `run_info.json`, `experts/*/summary.json`,
`dataset/manifest.json`, `fits/*/seed_*/{done.json, progress.csv}`, `eval/summary.csv`,
`eval/results.csv`, `eval/cloning.csv`, `eval/positions.csv`, `eval/expert_returns.json`, `eval/figures/*.png`.
Missing pieces are reported as missing, never invented.
"""
from __future__ import annotations

import base64
import csv
import html
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from hyperzero.evaluation.figures import order_methods
from hyperzero.evaluation.metrics import per_task_summary, read_results, test_rows
from hyperzero.evaluation.stats import (CLONING_HEADER, MARKDOWN_HEADER, POSITION_HEADER, cloning_table, position_table,
                                        stats_table)
from hyperzero.utils.io import atomic_write_text, read_json
from hyperzero.utils.runinfo import versions

FIGURE_CAPTIONS = {
    "return_vs_speed": "Zero-shot return vs desired speed on held-out tasks (paper Fig. 3). Lines: mean over the split "
                       "seeds in which the task was held out; bands: ±1 std over those seeds; dashed: the task's expert; "
                       "dotted: the do-nothing floor on the same episode seeds.",
    "return_vs_torso_length": "Zero-shot return vs torso length on held-out tasks (paper Fig. 4).",
    "return_vs_finger_length": "Zero-shot return vs finger length on held-out tasks (paper Fig. 4).",
    "heatmaps": "Held-out return over the (reward, dynamics) grid per method, and the difference to the expert "
                "(paper Fig. 5, without smoothing).",
    "surfaces": "The same grid as unsmoothed 3-D surfaces, one panel per method on shared colour and z scales: facets "
                "join neighbouring held-out points only, hollow circles are the expert's return on the same tasks, "
                "grey crosses mark grid points never held out.",
    "summary_intervals": "Left: interquartile mean of the floor-corrected score (R - R_floor) / (R_expert - R_floor) "
                         "over all (split seed, held-out task) pairs; right: probability of beating the strongest "
                         "baseline. Bars: 95 % stratified-bootstrap intervals (rliable).",
    "learning_curves": "Learning curves (mean over split seeds): train action MSE, zero-shot action MSE on the "
                       "validation tasks, and the return of validation-task rollouts (what selection uses).",
    "ablation": "Ablation: HyperZero vs without the TD loss vs without generating Q (paper Fig. 7).",
    "rollout_strip": "Rollouts of generated policies for chosen contexts (paper Fig. 6).",
}


class _Doc:
    """Builds the markdown and the HTML side by side."""

    def __init__(self):
        self.md: list[str] = []
        self.html: list[str] = []

    def heading(self, text: str, level: int = 2):
        self.md.append(f"{'#' * level} {text}\n")
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def para(self, text: str):
        self.md.append(text + "\n")
        self.html.append(f"<p>{html.escape(text)}</p>")

    def code(self, text: str):
        self.md.append(f"```\n{text}\n```\n")
        self.html.append(f"<pre>{html.escape(text)}</pre>")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]]):
        self.md.append("| " + " | ".join(header) + " |")
        self.md.append("|" + "---|" * len(header))
        for r in rows:
            self.md.append("| " + " | ".join(str(c) for c in r) + " |")
        self.md.append("")
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
        self.html.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def figure(self, png: Path, relative_to: Path, caption: str):
        self.md.append(f"![{caption}]({png.relative_to(relative_to).as_posix()})\n\n*{caption}*\n")
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        self.html.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}img{max-width:100%}figure{margin:1.5em 0}figcaption{font-size:0.85em;color:#555}
pre{background:#f6f6f6;padding:0.8em;overflow-x:auto;font-size:0.85em}"""


def _load_yaml(path: Path) -> dict:
    import yaml

    with open(path) as f:
        return yaml.safe_load(f) or {}


def _fmt(x: Any, digits: int = 1) -> str:
    try:
        return f"{float(x):.{digits}f}"
    except (TypeError, ValueError):
        return "n/a"


def fit_records(run_dir: Path) -> dict[str, list[dict]]:
    """method -> per split seed: done.json plus curve endpoints from progress.csv (for the budgets table)."""
    from hyperzero.evaluation.figures import read_progress

    out: dict[str, list[dict]] = {}
    for done_path in sorted((run_dir / "fits").glob("*/seed_*/done.json")):
        try:
            done = read_json(done_path)
        except (OSError, json.JSONDecodeError):
            continue
        progress = done_path.parent / "progress.csv"
        series = read_progress(progress) if progress.exists() else {}
        done["flatness"] = {key: last_fifth_change(series.get(key, []), int(done.get("steps") or 0))
                            for key in ("train/action_loss", "val/return")}
        out.setdefault(done_path.parent.parent.name, []).append(done)
    return out


def last_fifth_change(points: Sequence[tuple[int, float]], steps: int) -> float | None:
    """Relative change of a curve over the last 20 % of `steps`: (last - value at 80 %) / |value at 80 %|."""
    if not points or steps <= 0:
        return None
    late = [(s, v) for s, v in points if s >= 0.8 * steps]
    if len(late) < 2 or late[0][1] == 0:
        return None
    return (late[-1][1] - late[0][1]) / abs(late[0][1])


def fits_table(fits: dict[str, list[dict]]) -> list[list[str]]:
    import statistics

    rows = []
    for method in order_methods(fits):
        records = fits[method]
        steps = sorted({r.get("steps") for r in records})
        selected = [r.get("selected_step", r.get("best_step")) for r in records if r.get("selected_step", r.get(
            "best_step")) is not None]
        shares = [r["validation_share"] for r in records if r.get("validation_share") is not None]

        def flat(key):
            values = [r["flatness"][key] for r in records if r["flatness"].get(key) is not None]
            return f"{statistics.mean(values):+.1%}" if values else "n/a"

        rows.append([method, str(len(records)), ", ".join(str(s) for s in steps),
                     ", ".join(sorted({str(r.get("selection", "val_loss")) for r in records})),
                     f"{statistics.median(selected):g} ({min(selected)}–{max(selected)})" if selected else "n/a",
                     ", ".join(f"{r['lr']:g}" for r in records if r.get("lr") is not None)
                     + (" (swept)" if any(r.get("lr_sweep") for r in records) else ""),
                     f"{statistics.mean(shares):.0%}" if shares else "n/a",
                     flat("train/action_loss"), flat("val/return")])
    return rows


def cpu_time(run_dir: Path) -> dict[str, dict]:
    """Process CPU time per training stage, summed from each expert attempt's summary.json (retries included)
    and each fit's done.json (every learning rate of a sweep): {stage: {"seconds", "count", "unrecorded"}}.
    Experts linked from another run (`--experts-from`) were trained, and are counted, there: their stage is
    {"seconds": 0, "count": 0, "unrecorded": 0, "linked_from": that run}."""
    out = {}
    linked_from = _experts_source(run_dir)
    if linked_from:
        out["experts"] = {"seconds": 0.0, "count": 0, "unrecorded": 0, "linked_from": linked_from}
    for stage, pattern, keys in (("experts", "experts/**/summary.json", ("cpu_seconds",)),
                                 ("fits", "fits/*/seed_*/done.json", ("sweep_cpu_seconds", "cpu_seconds"))):
        if stage in out:
            continue
        seconds, count, unrecorded = 0.0, 0, 0
        for path in sorted(run_dir.glob(pattern)):
            try:
                record = read_json(path)
            except (OSError, ValueError):
                continue
            value = next((record[k] for k in keys if record.get(k)), None)
            count += 1
            if value is None:
                unrecorded += 1  # written before CPU time was recorded
            else:
                seconds += float(value)
        out[stage] = {"seconds": seconds, "count": count, "unrecorded": unrecorded}
    return out


def _experts_source(run_dir: Path) -> str | None:
    """The run whose experts this one linked (`hyperzero run --experts-from`), as its run_info.json records it."""
    try:
        return read_json(run_dir / "run_info.json").get("experts_from")
    except (OSError, ValueError):
        return None


def machine_kinds(run_dir: Path) -> list[str]:
    """The CPUs the run's stages ran on, as `cpu_kind` lines (several when it was resumed elsewhere), from every
    run_info.json it holds; this machine's when none records one."""
    from hyperzero.utils.hardware import cpu_kind

    kinds: dict[str, str] = {}  # the CPU without its family -> its line (with the family where any record has it)
    for path in sorted(run_dir.glob("**/run_info.json")):
        try:
            facts = read_json(path).get("cpu")
        except (OSError, ValueError):
            continue
        if isinstance(facts, dict):  # a record written before the CPU family was recorded is the same machine
            key = cpu_kind({**facts, "cpu_family": None})
            if key not in kinds or facts.get("cpu_family"):
                kinds[key] = cpu_kind(facts)
    return list(kinds.values()) or [cpu_kind() + " (this machine; the run recorded none)"]


def _peak_load(invocation: dict) -> str:
    """The busiest 5-minute load average at a stage's end over the CPU count, e.g. "3.9 / 2" ("" if not recorded)."""
    loads = [load[1] for load in invocation.get("load_average", {}).values()]
    return f"{max(loads):.1f} / {invocation.get('cpus', '?')}" if loads else ""


def portable_command(argv: Sequence[str]) -> list[str]:
    """The command that made a run, as another user can type it: `hyperzero ...` instead of the path to the entry
    point, and the run directory as `runs/<its name>` instead of this machine's path."""
    args = [str(a) for a in argv]
    if args and Path(args[0]).name in ("hyperzero", "__main__.py"):
        args[0] = "hyperzero"
    for i, a in enumerate(args):
        if a.startswith("--out="):
            args[i] = f"--out=runs/{Path(a[len('--out='):]).name}"
        elif i and args[i - 1] == "--out":
            args[i] = f"runs/{Path(a).name}"
    return args


def _family_origin(name: str) -> str:
    """" (your own, a Gymnasium env, from module m)" for a family that is not shipped, "" otherwise."""
    try:
        from hyperzero.envs import family_source, get_family

        fam = get_family(name)
        source = family_source(name)
    except (ValueError, OSError):
        return ""
    if source is None or "shipped" in source:
        return ""
    kind = "a Gymnasium env" if fam.kind == "gymnasium" else "a dm_control domain"
    return f" (your own: {kind}, from {source})"


def _eval_record(run_dir: Path) -> dict:
    """eval/done.json ({} when missing or unreadable)."""
    try:
        record = read_json(run_dir / "eval" / "done.json")
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _read_csv(path: Path) -> list[dict] | None:
    if not path.exists():
        return None
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _cloning_section(doc: _Doc, run_dir: Path, summary: Sequence[dict], rows: Sequence) -> None:
    doc.heading("Cloning (training tasks) vs transfer (held-out tasks)", 3)
    cloning = _read_csv(run_dir / "eval" / "cloning.csv")
    if cloning is None:
        doc.para("No cloning evaluation (eval/cloning.csv is missing: the evaluation predates it); rerun "
                 "`hyperzero evaluate` to add it.")
        return
    if not cloning:
        doc.para("The cloning score is off for this run (cloning_tasks = 0).")
        return
    doc.para("Each fit is also rolled out, zero-shot, on a few of its own training tasks (drawn per split seed) on the "
             "same fresh episode seeds, and scored the same way. A low cloning score means the method never learned "
             "to copy the experts; a high cloning score with a low transfer score means it copies but does not "
             "transfer. IQM [95 % stratified-bootstrap interval]; the expert column gives the experts' mean return "
             "on the training tasks / on the held-out tasks scored. Training-task rows are in no other table or "
             "figure.")
    doc.table(list(CLONING_HEADER), cloning_table(cloning, summary, rows))


def _positions_section(doc: _Doc, run_dir: Path) -> None:
    doc.heading("Held-out tasks between vs outside the training tasks", 3)
    positions = _read_csv(run_dir / "eval" / "positions.csv")
    if not positions:
        doc.para("No positions (eval/positions.csv is missing or empty: the evaluation predates it); rerun "
                 "`hyperzero evaluate` to add it.")
        return
    doc.para("A held-out task is between when its context lies in the convex hull of its split's training tasks over "
             "the varied context features (one feature: training tasks on both sides of, or at, its value), counting "
             "for a signed feature such as speed only training tasks of the same sign; otherwise it is outside "
             "(extrapolation; a held-out corner of a grid is outside). Pairs (tasks): scored (split seed, task) pairs and "
             "distinct tasks. A group with fewer than 4 pairs shows its mean instead of an IQM.")
    doc.table(list(POSITION_HEADER), position_table(positions))


def write_report(run_dir: str | Path, command: Sequence[str] | None = None) -> tuple[Path, Path]:
    run_dir = Path(run_dir)
    config = _load_yaml(run_dir / "config.yaml") if (run_dir / "config.yaml").exists() else {}
    run_info = read_json(run_dir / "run_info.json") if (run_dir / "run_info.json").exists() else {}
    doc = _Doc()
    name = config.get("name") or run_dir.name
    doc.heading(f"HyperZero run report: {name}", 1)
    if config.get("description"):
        doc.para(str(config["description"]))

    # --- family and tasks ---
    manifest = read_json(run_dir / "dataset" / "manifest.json") if (run_dir / "dataset" / "manifest.json").exists() else {}
    family = manifest.get("family") or config.get("family", "unknown")
    tasks = manifest.get("tasks", [])
    doc.heading("Family and tasks")
    doc.para(f"Family {family}{_family_origin(family)}; varied context features: "
             f"{', '.join(manifest.get('context_names', [])) or 'n/a'}; "
             f"{len(tasks)} tasks in the dataset"
             + (f" ({len(manifest.get('excluded_tasks', []))} excluded)" if manifest.get("excluded_tasks") else "") + ".")

    # --- budgets ---
    doc.heading("Budgets")
    budget_rows = []
    for section, keys in (("experts", ("train_steps", "ensemble_size", "seed")), ("dataset", ("n_episodes", "seed")),
                          ("fit", ("methods", "seeds", "steps", "batch_tasks", "batch_size")),
                          ("evaluate", ("episodes", "eval_seed", "few_shot_k"))):
        values = config.get(section, {}) or {}
        shown = ", ".join(f"{k}={values[k]}" for k in keys if k in values)
        rest = ", ".join(f"{k}={v}" for k, v in values.items() if k not in keys and not isinstance(v, (dict, list)))
        budget_rows.append((section, "; ".join(s for s in (shown, rest) if s) or "n/a"))
    doc.table(["stage", "settings"], budget_rows)

    # --- experts ---
    doc.heading("Experts")
    expert_cache = {}
    cache_path = run_dir / "eval" / "expert_returns.json"
    if cache_path.exists():
        for entry in read_json(cache_path).values():
            if "expert" in entry:  # the cache also holds the do-nothing floor's returns
                expert_cache[entry["task_id"]] = sum(entry["returns"]) / len(entry["returns"])
    expert_rows, flagged = [], []
    for summary_path in sorted((run_dir / "experts").glob("*/summary.json")):
        try:
            s = read_json(summary_path)
        except (OSError, json.JSONDecodeError):
            expert_rows.append((summary_path.parent.name, "unreadable summary", "", "", "", "", ""))
            continue
        task = s.get("task_id", summary_path.parent.name)
        gate = s.get("gate") or {}
        if s.get("flagged"):
            flagged.append(f"{task} ({gate.get('reason', 'below the quality threshold')})")
        attempts = "" if not s.get("retries") else (
            f"retried; kept {s.get('promoted_from', 'the first attempt')}")
        expert_rows.append((task, s.get("train_steps", "n/a"),
                            f"{_fmt(s.get('eval_return_mean'))} ± {_fmt(s.get('eval_return_std'))}",
                            _fmt(s.get("floor_return")), _fmt(expert_cache.get(task)), attempts,
                            "**yes**" if s.get("flagged") else "no" if gate else ""))
    if expert_rows:
        doc.para("Every expert is judged by the quality gate (docs/experts.md): at least 0.9 of the family's "
                 "ceiling, or close to its best neighbouring task above the do-nothing floor. A flagged expert's "
                 "task is left out of the dataset and of every score.")
        doc.table(["task", "train steps", "return (expert's own eval)", "do-nothing floor",
                   "return on evaluation seeds (evaluated tasks only)", "gate retry", "flagged"], expert_rows)
        doc.para(f"Flagged experts: {'; '.join(flagged) if flagged else 'none'}.")
    else:
        doc.para("No expert summaries found.")

    # --- model selection and budgets ---
    fits = fit_records(run_dir)
    if fits:
        doc.heading("Model selection and budgets")
        doc.para("Per method, over its split seeds: the selection rule (return = the checkpoint with the best mean "
                 "return of rollouts on validation tasks carved from the training tasks; never test tasks), the "
                 "selected step, the learning rate (chosen on the validation tasks when a sweep was run), the share "
                 "of fit time spent on validation, and how much the curves still moved over the last 20 % of "
                 "training (relative change of the train action MSE and of the validation return; near 0 = flat).")
        doc.table(["method", "seeds", "steps", "selection", "selected step (median, range)", "lr (per seed)",
                   "validation share of fit time", "Δ train MSE, last 20 %", "Δ val return, last 20 %"],
                  fits_table(fits))

    # --- held-out results ---
    doc.heading("Held-out results")
    summary_csv = run_dir / "eval" / "summary.csv"
    results_csv = run_dir / "eval" / "results.csv"
    rows = []
    if results_csv.exists():
        try:
            rows = read_results(results_csv)
        except ValueError as e:
            doc.para(f"eval/results.csv is unreadable ({e}); rerun the evaluation.")
    if summary_csv.exists() and rows:
        with open(summary_csv, newline="") as f:
            summary = list(csv.DictReader(f))
        doc.para("Each method is evaluated only on the test tasks of each split seed; every (split seed, held-out "
                 "task) pair is one sample. Score = (R - R_floor) / (R_expert - R_floor) with R_floor the return of "
                 "the do-nothing policy (a = 0) and R_expert the task's expert, all on the same episode seeds "
                 "(0 = no better than standing still, 1 = the expert). IQM = interquartile mean; intervals are 95 % "
                 "stratified-bootstrap intervals (rliable; strata = split seeds). P(better than baseline) is the "
                 "probability that the method's score on a held-out task beats the strongest baseline's. The last "
                 "column is the paper's metric (mean of R / R_expert, ± std over seeds), for comparison only.")
        doc.table(list(MARKDOWN_HEADER), stats_table(summary))
        done = _eval_record(run_dir)
        if done.get("expert_returns"):
            from hyperzero.evaluation.evaluate import expert_sources_sentence

            doc.para(expert_sources_sentence(done["expert_returns"]))
        held_out = test_rows(rows)
        excluded = sorted({(r.task_id, r.excluded) for r in held_out if r.excluded})
        doc.para("Tasks left out of the aggregates: " + ("; ".join(f"{t} ({why})" for t, why in excluded)
                                                         if excluded else "none") + ".")
        _cloning_section(doc, run_dir, summary, rows)
        _positions_section(doc, run_dir)
        doc.heading("Per held-out task", 3)
        doc.para("Mean over the split seeds that held the task out (their number in brackets): raw return and, in "
                 "parentheses, the score. Expert and floor are rolled out on the same episode seeds.")
        tasks = per_task_summary(held_out)
        methods = order_methods(r.method for r in held_out)
        table = []
        for t in tasks:
            cells = [_fmt(t.methods[m][0]) + f" ({_fmt(t.methods[m][1], 2)}) [{t.methods[m][2]}]" if m in t.methods
                     else "" for m in methods]
            table.append([t.task_id + (f" — excluded: {t.excluded}" if t.excluded else ""), _fmt(t.expert_return),
                          _fmt(t.floor_return)] + cells)
        doc.table(["task", "expert", "floor (a = 0)"] + methods, table)
    else:
        doc.para("No evaluation yet (eval/summary.csv or eval/results.csv is missing).")

    # --- figures ---
    figures = sorted((run_dir / "eval" / "figures").glob("*.png"))
    if figures:
        doc.heading("Figures")
        for png in figures:
            doc.figure(png, run_dir, FIGURE_CAPTIONS.get(png.stem, png.stem))
    videos = sorted((run_dir / "eval" / "videos").glob("*.mp4"))
    skipped = _eval_record(run_dir).get("videos_skipped")
    if skipped and not videos:
        doc.heading("Videos")
        doc.para(f"No videos: {skipped}.")
    if videos:
        doc.heading("Videos")
        for v in videos:
            rel = v.relative_to(run_dir).as_posix()
            doc.md.append(f"* [{v.name}]({rel})")
            doc.html.append(f'<p><a href="{html.escape(rel)}">{html.escape(v.name)}</a></p>')
        doc.md.append("")

    # --- wall time ---
    timings_path = run_dir / "stage_times.json"
    if timings_path.exists():
        try:
            history = read_json(timings_path)
        except (OSError, json.JSONDecodeError):
            history = []
        if history:
            doc.heading("Wall time")
            doc.para("Seconds per stage of each `hyperzero run` invocation in this directory (a resumed run "
                     "shows several; a skipped stage takes ~0 s). The report stage itself is not included. "
                     "Load: the highest 5-minute load average at a stage's end, over the machine's CPUs; above "
                     "the CPU count, other work shared the cores and the times are longer than the run alone.")
            stages = ["experts", "dataset", "fits", "eval", "total"]
            doc.table(["started"] + stages + ["load / CPUs"],
                      [[h.get("started", "")] + [h.get("seconds", {}).get(s, "") for s in stages] + [_peak_load(h)]
                       for h in history])
            cpu = cpu_time(run_dir)
            parts = []
            for stage, what in (("experts", "expert attempts (retries included)"),
                                ("fits", "fits (every swept learning rate)")):
                c = cpu[stage]
                recorded = c["count"] - c["unrecorded"]
                if c.get("linked_from"):
                    parts.append(f"{stage} linked from {c['linked_from']} (trained, and counted, there)")
                elif recorded:
                    parts.append(f"{stage} {c['seconds'] / 3600:.2f} CPU-h over {recorded} {what}, "
                                 f"{c['seconds'] / 60 / recorded:.1f} CPU-min each"
                                 + (f" ({c['unrecorded']} more written before CPU time was recorded)"
                                    if c["unrecorded"] else ""))
                elif c["count"]:
                    parts.append(f"{stage} not recorded (written before CPU time was)")
            if parts:
                doc.para("CPU time (process time of the workers, summed over resumes; unlike wall time it does not "
                         "grow when other work shares the cores): " + "; ".join(parts) + ".")

    # --- reproduction ---
    doc.heading("Reproduce")
    doc.code(" ".join(portable_command(command or run_info.get("command") or sys.argv)))
    machines = machine_kinds(run_dir)
    doc.para(f"Machine{'s' if len(machines) > 1 else ''}: " + "; ".join(machines) + ". Numbers from another CPU kind "
             "(or another packing of threads) will differ: float rounding of batched matmuls depends on the kernels "
             "(docs/reliability.md).")
    vers = run_info.get("versions") or versions()
    doc.table(["package", "version"], sorted(vers.items()))

    md_path = atomic_write_text(run_dir / "report.md", "\n".join(doc.md) + "\n")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(str(name))}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(doc.html)}</body></html>\n")
    html_path = atomic_write_text(run_dir / "report.html", page)
    return md_path, html_path
