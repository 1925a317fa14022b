"""When a run's evaluation (eval/) can be reused, which of its files are remade, and what is recomputed
(docs/reliability.md). Used by `hyperzero run` and `hyperzero evaluate`."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from hyperzero.utils.integrity import CorruptFileError, checksum_path, damaged_files, verify
from hyperzero.utils.io import read_json
from hyperzero.utils.outputs import OutputCheck, rel, say, set_aside

__all__ = ["check_eval", "eval_is_current", "eval_settings", "media_check", "restore_expert_returns",
           "videos_skipped"]


def check_eval(run_dir: Path) -> list[Path]:
    """Move aside damaged evaluation files (cached rows, expert returns, results, done.json, figures, videos):
    they are redone. Returns where they were."""
    eval_dir = run_dir / "eval"
    moved = []
    for path, reason in damaged_files(eval_dir):
        set_aside(run_dir, path, f"{reason}; it is recomputed")
        moved.append(path)
    for path in sorted(eval_dir.glob("rows/*/*.json")) + sorted(eval_dir.glob("*.json")):
        try:  # written before checksums existed: it must at least parse
            read_json(path)
        except CorruptFileError as e:
            set_aside(run_dir, path, f"{e.reason}; it is recomputed")
            moved.append(path)
    return moved


def media_check(run_dir: Path, cfg, moved: Sequence[Path] = ()) -> OutputCheck:
    """The evaluation's figures and videos (`cfg`: its EvalConfig): ok, damaged (one was moved aside by
    `check_eval`, or a video has no checksum) or missing (videos are asked for and there are none); either way
    they are made again."""
    eval_dir = run_dir / "eval"
    for path in moved:
        if path.parent.name in ("videos", "figures"):
            return OutputCheck("damaged", f"{rel(run_dir, path)} was damaged")
    if cfg.videos:
        videos = sorted((eval_dir / "videos").glob("*.mp4"))
        if not videos and videos_skipped(eval_dir):
            return OutputCheck("ok")  # the family cannot render: the evaluation said so, and rerunning would not help
        if not videos:
            return OutputCheck("missing", "the videos are missing")
        unverified = [v for v in videos if not checksum_path(v).exists()]
        if unverified:  # written before videos had checksums: a truncated one could not be told from a good one
            return OutputCheck("damaged", f"{rel(run_dir, unverified[0])} has no checksum")
    return OutputCheck("ok")


def videos_skipped(eval_dir: Path) -> bool:
    """The last evaluation recorded that the family cannot render videos (eval/done.json)."""
    try:
        return bool(read_json(eval_dir / "done.json").get("videos_skipped"))
    except (OSError, ValueError, AttributeError):
        return False


def restore_expert_returns(run_dir: Path, cfg) -> None:
    """Recompute `eval/expert_returns.json` (the experts' and do-nothing floors' reference returns) when it is
    missing, e.g. moved aside as damaged, while every fit's rows were cached: `evaluate` rolls the references
    out only for fits it rolls out, so the file would otherwise stay missing. `cfg`: the EvalConfig."""
    path = run_dir / "eval" / "expert_returns.json"
    rows = sorted((run_dir / "eval" / "rows").glob("*/*.json"))
    if path.exists() or not rows:
        return
    from hyperzero.datasets import load_dataset
    from hyperzero.evaluation.evaluate import ExpertReference, _default_load_expert, reference_settings

    dataset = load_dataset(run_dir / "dataset")
    tasks = {t.task_id: t for t in dataset.tasks}
    needed = set()
    for row_file in rows:
        try:
            needed |= {r["task_id"] for r in read_json(row_file).get("rows", [])}
        except (OSError, ValueError, AttributeError, KeyError, TypeError):
            continue
    seeds = cfg.episode_seeds
    reference = ExpertReference(run_dir, dataset.family, _default_load_expert, path,
                                **reference_settings(dataset, cfg))
    for task_id in sorted(needed & set(tasks)):
        context = dict(tasks[task_id].context)
        try:
            reference.returns(task_id, context, seeds)
        except FileNotFoundError:
            pass  # a flagged task without an expert: its rows say so
        reference.floor_returns(task_id, context, seeds)
    say(f"evaluate: recomputed eval/expert_returns.json ({len(needed & set(tasks))} task(s))")


def eval_is_current(run_dir: Path, cfg) -> bool:
    """True when eval/done.json matches the current fits, dataset and evaluation settings (`cfg`: the EvalConfig),
    and results.csv is intact (checksum) and reads."""
    from hyperzero.evaluation.evaluate import find_fits
    from hyperzero.evaluation.metrics import read_results

    done = run_dir / "eval" / "done.json"
    results = run_dir / "eval" / "results.csv"
    if not done.exists() or not results.exists():
        return False
    try:
        record = read_json(done)
        verify(results)
        read_results(results)
    except (OSError, ValueError):
        return False
    fits = {f"{f.method}/seed_{f.seed}": f.fingerprint for f in find_fits(run_dir, cfg.methods, cfg.seeds)}
    saved = record.get("config", {})
    current = eval_settings(cfg)
    key = record.get("key", {})
    if "dataset" in key:
        from hyperzero.datasets.format import DatasetError, read_manifest
        from hyperzero.evaluation.evaluate import _dataset_fingerprint, references_digest

        try:
            manifest = read_manifest(run_dir / "dataset")
        except DatasetError:
            return False
        if key["dataset"] != _dataset_fingerprint(type("Manifest", (), {"manifest": manifest})()):
            return False
        try:  # recorded (not rolled-out) expert returns that changed since: the rows hold the old ones
            if key.get("expert_returns") != references_digest(run_dir, manifest, cfg):
                return False
        except ValueError:
            return False
    return key.get("fits") == fits and {k: saved.get(k) for k in current} == current


def eval_settings(cfg) -> dict[str, Any]:
    """The EvalConfig as eval/done.json records it, less what changes no result (how many processes roll out)."""
    out = asdict(cfg)
    out["few_shot_k"] = list(cfg.few_shot_k)
    del out["num_workers"]
    return out
