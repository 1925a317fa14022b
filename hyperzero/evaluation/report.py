"""`report.md` and a self-contained `report.html` (figures embedded as base64 PNG) for a run directory.

Everything is read from the run's files: `config.yaml`, `run_info.json`, `experts/*/summary.json`,
`dataset/manifest.json`, `eval/summary.csv`, `eval/expert_returns.json`, `eval/figures/*.png`.
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

from hyperzero.utils.io import atomic_write_text, read_json
from hyperzero.utils.runinfo import versions

FIGURE_CAPTIONS = {
    "return_vs_speed": "Zero-shot return vs desired speed on held-out tasks (paper Fig. 3). Lines: mean over the split "
                       "seeds in which the task was held out; bands: ±1 std over those seeds; dashed: the task's expert.",
    "return_vs_torso_length": "Zero-shot return vs torso length on held-out tasks (paper Fig. 4).",
    "return_vs_finger_length": "Zero-shot return vs finger length on held-out tasks (paper Fig. 4).",
    "heatmaps": "Held-out return over the (reward, dynamics) grid per method, and the difference to the expert "
                "(paper Fig. 5, without smoothing).",
    "summary_normalized": "Held-out return normalised by the expert's return on the same episode seeds; mean ± std "
                          "over split seeds.",
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
    doc.para(f"Family {family}; varied context features: {', '.join(manifest.get('context_names', [])) or 'n/a'}; "
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
            expert_cache[entry["task_id"]] = sum(entry["returns"]) / len(entry["returns"])
    expert_rows, flagged = [], []
    for summary_path in sorted((run_dir / "experts").glob("*/summary.json")):
        try:
            s = read_json(summary_path)
        except (OSError, json.JSONDecodeError):
            expert_rows.append((summary_path.parent.name, "unreadable summary", "", "", ""))
            continue
        if s.get("flagged"):
            flagged.append(s.get("task_id", summary_path.parent.name))
        expert_rows.append((s.get("task_id", summary_path.parent.name), s.get("train_steps", "n/a"),
                            f"{_fmt(s.get('eval_return_mean'))} ± {_fmt(s.get('eval_return_std'))}",
                            _fmt(expert_cache.get(s.get("task_id"))), "yes" if s.get("flagged") else ""))
    if expert_rows:
        doc.table(["task", "train steps", "return (expert's own eval)", "return on evaluation seeds (held-out only)",
                   "flagged"], expert_rows)
        doc.para(f"Flagged experts: {', '.join(flagged) if flagged else 'none'}.")
    else:
        doc.para("No expert summaries found.")

    # --- methods ---
    doc.heading("Held-out results")
    summary_csv = run_dir / "eval" / "summary.csv"
    if summary_csv.exists():
        with open(summary_csv, newline="") as f:
            summary = list(csv.DictReader(f))
        doc.para("Each method is evaluated only on the test tasks of each split seed. Normalised return = return / "
                 "the task expert's return on the same episode seeds; mean ± std across split seeds of the per-seed "
                 "mean over held-out tasks.")
        doc.table(["method", "normalised return", "return", "expert return", "seeds", "rows"],
                  [(r["method"], f"{_fmt(r['normalized_mean'], 3)} ± {_fmt(r['normalized_std'], 3)}",
                    f"{_fmt(r['return_mean'])} ± {_fmt(r['return_std'])}", _fmt(r["expert_return_mean"]),
                    r["n_seeds"], r["n_rows"]) for r in summary])
    else:
        doc.para("No evaluation yet (eval/summary.csv is missing).")

    # --- figures ---
    figures = sorted((run_dir / "eval" / "figures").glob("*.png"))
    if figures:
        doc.heading("Figures")
        for png in figures:
            doc.figure(png, run_dir, FIGURE_CAPTIONS.get(png.stem, png.stem))
    videos = sorted((run_dir / "eval" / "videos").glob("*.mp4"))
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
                     "shows several; a skipped stage takes ~0 s). The report stage itself is not included.")
            stages = ["experts", "dataset", "fits", "eval", "total"]
            doc.table(["started"] + stages, [[h.get("started", "")] + [h.get("seconds", {}).get(s, "") for s in stages]
                                             for h in history])

    # --- reproduction ---
    doc.heading("Reproduce")
    cmd = command or run_info.get("command") or sys.argv
    doc.code(" ".join(str(c) for c in cmd))
    vers = run_info.get("versions") or versions()
    doc.table(["package", "version"], sorted(vers.items()))

    md_path = atomic_write_text(run_dir / "report.md", "\n".join(doc.md) + "\n")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(str(name))}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(doc.html)}</body></html>\n")
    html_path = atomic_write_text(run_dir / "report.html", page)
    return md_path, html_path
