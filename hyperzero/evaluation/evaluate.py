"""Zero-shot (and few-shot) evaluation of every fit of a run on its held-out tasks (and a cloning check).

For every fit `fits/<method>/seed_<k>/` (complete: `done.json`), the trained model generates a
policy for each of that split's TEST tasks only, and it is rolled out in the real environment for N
episodes. The episode seeds are `eval_seed, eval_seed+1, ...`, refused if any of them was used to
generate the dataset (so no evaluation episode starts where a training episode did, which the
original code got wrong: its evaluation seed equalled the data seed). Each task's expert and the
do-nothing policy (a = 0, the floor) are rolled out on the same seeds as references; those returns
are cached in `eval/expert_returns.json`. Each row's score is (R - R_floor) / (R_expert - R_floor).

A dataset from another solver has no `experts/<task>/expert.pt` to roll out: R_expert is then the return its
manifest records for the task (`ExpertInfo.return_mean`, the producer's own evaluation), or the one a JSON file
gives (`EvalConfig.expert_returns`, CLI `--expert-returns FILE`: {task_id: return}; it takes precedence over
both). Those are not re-rolled on the evaluation seeds, and `done.json`, `summary.md` and the report say which
tasks' references came from where (`expert_reference_sources`).

Cloning: each fit is also rolled out, zero-shot only, on `cloning_tasks` of its split's TRAINING tasks, on the
same fresh episode seeds and scored against the same references (rows with role "train"). A method that does
badly there never learned to copy the experts; one that does well there but badly on held-out tasks does not
transfer. The training tasks are drawn by `cloning_task_ids` (seeded by the split seed: every method of split k
is checked on the same ones). Train rows enter no held-out aggregate or figure; they have their own table
(`eval/cloning.csv|md`, `stats.group_aggregate`).

Each held-out row is also labelled "between" or "outside" its split's training tasks
(`hyperzero.evaluation.metrics.context_position`), and `eval/positions.csv` holds the IQM score of each group.

Tasks whose expert is flagged (`experts/<task>/summary.json` "flagged": true, or the dataset manifest)
or is no better than the floor keep their rows, marked `excluded`, and are left out of every aggregate;
the aggregates (`eval/summary.csv|md`) are the IQM with stratified-bootstrap intervals and the
probability of improvement over the strongest baseline (`hyperzero.evaluation.stats`, via rliable).

Meta methods (MAML, PEARL) also get few-shot rows, e.g. `maml@10shot`: the policy is adapted on k
transitions drawn from the test task's dataset episodes (seeded, so reruns pick the same ones).

Resumable: each fit's rows are stored in `eval/rows/<method>/seed_<k>.json` together with the
fingerprint of the fit and of the evaluation settings, and reused only when both still match.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from hyperzero.evaluation.metrics import (ResultRow, context_position, signed_features, varying_features,
                                          write_results)
from hyperzero.evaluation.rollout import numpy_policy, rollout_returns, zero_action_policy
from hyperzero.evaluation.stats import (aggregate, cloning_to_markdown, group_aggregate, groups_to_csv_text,
                                        positions_to_markdown, stats_to_csv_text, stats_to_markdown)
from hyperzero.evaluation.videos import render_videos
from hyperzero.utils.integrity import fingerprint
from hyperzero.utils.io import atomic_write_json, atomic_write_text, read_json

META_METHODS = ("maml", "pearl")
CLONING_SALT = zlib.crc32(b"cloning")  # keeps the cloning draw apart from other draws seeded with the split seed
DEFAULT_EVAL_SEED = 1_000_000  # far from the small seeds datasets use by default


@dataclass
class EvalConfig:
    episodes: int = 10                    # evaluation episodes per (method, seed, task), and for the expert
    eval_seed: int = DEFAULT_EVAL_SEED    # episode i is reset with seed eval_seed + i
    few_shot_k: tuple[int, ...] = ()      # shot counts for meta methods (rows named "<method>@<k>shot")
    methods: list[str] | None = None      # restrict to these methods (default: every complete fit)
    seeds: list[int] | None = None        # restrict to these split seeds (default: every complete fit)
    videos: bool = False                  # render rollout strips and mp4 videos of generated policies
    video_method: str | None = None       # method whose policies are filmed; None = hyperzero if fitted, else the
                                          # first method
    video_contexts: list[dict] | None = None  # contexts filmed, e.g. [{speed: 2}]; None = the extremes of the run's
                                              # first varied feature
    video_steps: int = 300                # control steps per video (30 fps)
    figures: bool = True                  # write eval/figures/ (false: tables and report only)
    device: str = "cpu"                   # accepted for configs that set it; unused: evaluation rolls out on the CPU
    num_workers: int | None = None        # processes rolling out fits (default: one per core; 1 = this process)
    bootstrap_reps: int = 2000            # stratified-bootstrap resamples for the 95 % intervals (rliable)
    bootstrap_seed: int = 0               # seed of those resamples (the intervals are reproducible)
    baseline: str | None = None           # Y of P(X > Y); None = the baseline method with the best IQM score
    cloning_tasks: int = 3                # training tasks per fit also rolled out, for the cloning score (0 = off)
    expert_returns: str | None = None     # JSON file {task_id: expert return}: R_expert for those tasks, not re-rolled

    def __post_init__(self):
        from hyperzero.utils.typed import check_fields

        check_fields(self)  # types first (EvalConfig(episodes="3") is refused naming the field), then ranges
        self.few_shot_k = tuple(self.few_shot_k or ())
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}; pass --episodes 10 for the paper's protocol")
        if any(k < 1 for k in self.few_shot_k):
            raise ValueError(f"few-shot k must be positive integers, got {list(self.few_shot_k)}; e.g. --few-shot-k 10,100")
        if self.video_steps < 1:
            raise ValueError(f"video_steps must be >= 1, got {self.video_steps}")
        if self.num_workers is not None and self.num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {self.num_workers}; e.g. --num-workers 2")
        if self.cloning_tasks < 0:
            raise ValueError(f"cloning_tasks must be >= 0 (training tasks per fit rolled out for the cloning score), "
                             f"got {self.cloning_tasks}; e.g. --cloning-tasks 3, or --cloning-tasks 0 to turn it off")
        if self.bootstrap_reps < 100:
            raise ValueError(f"bootstrap_reps must be >= 100 for a 95 % interval, got {self.bootstrap_reps}; "
                             "e.g. --bootstrap-reps 2000")

    @property
    def episode_seeds(self) -> list[int]:
        return [self.eval_seed + i for i in range(self.episodes)]


@dataclass
class FitRef:
    method: str
    seed: int
    directory: Path

    @property
    def fingerprint(self) -> str:
        """Changes whenever the fit is redone (done.json is rewritten with the new model)."""
        done = self.directory / "done.json"
        digest = fingerprint(done)[:16]
        model = self.directory / "model.pt"
        if model.exists():
            digest += f"-{fingerprint(model)[:16]}"  # content, not size and mtime: a refit within a second counts
        return digest


@dataclass
class EvalResult:
    rows: list[ResultRow]                 # held-out rows (role "test") and cloning rows (role "train")
    summary: list                         # MethodStats over the held-out rows
    written: list[Path] = field(default_factory=list)
    cloning: list = field(default_factory=list)    # GroupStats of the train rows
    positions: list = field(default_factory=list)  # GroupStats of the held-out rows "between" / "outside"


def find_fits(run_dir: str | Path, methods: Sequence[str] | None = None,
              seeds: Sequence[int] | None = None) -> list[FitRef]:
    """Every complete fit (with done.json) under `<run>/fits/<method>/seed_<k>/`, sorted."""
    fits_dir = Path(run_dir) / "fits"
    refs = []
    if fits_dir.is_dir():
        for method_dir in sorted(p for p in fits_dir.iterdir() if p.is_dir()):
            if methods and method_dir.name not in methods:
                continue
            for seed_dir in sorted(method_dir.glob("seed_*")):
                if (seed_dir / "done.json").is_file():
                    try:
                        seed = int(seed_dir.name.split("_", 1)[1])
                    except ValueError:
                        continue
                    if seeds is not None and seed not in seeds:
                        continue
                    refs.append(FitRef(method_dir.name, seed, seed_dir))
    if methods:
        unknown = sorted(set(methods) - {r.method for r in refs})
        if unknown:
            raise ValueError(f"no complete fit for methods {unknown} under {fits_dir}; fitted methods: "
                             f"{sorted({r.method for r in find_fits(run_dir)})}. Fit them first or drop them from --methods")
    return sorted(refs, key=lambda r: (r.method, r.seed))


def check_seed_overlap(episode_seeds: Sequence[int], dataset) -> None:
    """Refuse evaluation seeds that the dataset used for its episodes."""
    used = set()
    for task in dataset.tasks:
        used.update(int(s) for s in np.asarray(task.episode_seed).ravel())
    overlap = sorted(used & {int(s) for s in episode_seeds})
    if overlap:
        free = max(used) + 1
        raise ValueError(f"evaluation episode seeds {overlap[:5]}{' ...' if len(overlap) > 5 else ''} were used to "
                         f"generate the dataset's episodes; evaluating there would start from training states. "
                         f"Pass a different --eval-seed (e.g. --eval-seed {max(free, DEFAULT_EVAL_SEED)})")


def is_meta(model: Any, method: str) -> bool:
    flag = getattr(model, "is_meta", None)
    if flag is None and hasattr(model, "model"):
        flag = getattr(model.model, "is_meta", None)
    return bool(flag) if flag is not None else method in META_METHODS


def few_shot_transitions(task, k: int, eval_seed: int) -> dict[str, np.ndarray]:
    """k transitions drawn without replacement from the task's dataset episodes (seeded per task and k)."""
    flat = task.transitions()
    n = len(flat["obs"])
    if k > n:
        raise ValueError(f"few-shot k={k} exceeds the {n} transitions of task {task.task_id}; use a smaller --few-shot-k")
    rng = np.random.default_rng([eval_seed, k, zlib.crc32(task.task_id.encode())])
    idx = np.sort(rng.choice(n, size=k, replace=False))
    return {name: np.asarray(values)[idx] for name, values in flat.items()}


def _split_part(model: Any, fit: FitRef, part: str) -> list[str]:
    split = getattr(model, "split", None)
    if split is None and (fit.directory / "split.json").exists():
        split = read_json(fit.directory / "split.json")
    ids = split.get(part) if isinstance(split, Mapping) else getattr(split, part, None)
    return list(ids or [])


def _split_test_ids(model: Any, fit: FitRef) -> list[str]:
    test = _split_part(model, fit, "test")
    if not test:
        raise ValueError(f"{fit.directory}: the fit records no test tasks (split.json); refit it")
    return test


def _split_train_ids(model: Any, fit: FitRef) -> list[str]:
    return _split_part(model, fit, "train")


def _position_features(tasks: Mapping[str, Any], context_names: Sequence[str],
                       family: str | None) -> tuple[list[str], list[str]]:
    """The features a held-out task is "between" / "outside" the training tasks in: those varied in the dataset,
    and which of them are signed (a direction)."""
    all_contexts = [dict(t.context) for t in tasks.values()]
    varied = varying_features(all_contexts, context_names)
    return varied, signed_features(family, all_contexts, varied)


def _relabel_positions(fit_rows: list[ResultRow], fit: FitRef, tasks: Mapping[str, Any], varied: Sequence[str],
                       signed: Sequence[str]) -> list[ResultRow]:
    """Cached rows with their positions recomputed from the fit's split.json (none: as cached), so that a change of
    the rule relabels them without rolling anything out again."""
    from dataclasses import replace

    train_contexts = [dict(tasks[t].context) for t in _split_part(None, fit, "train") if t in tasks]
    if not train_contexts:
        return fit_rows
    return [replace(r, position=context_position(r.context, train_contexts, varied, signed)) if r.role == "test"
            else r for r in fit_rows]


def cloning_task_ids(train_ids: Sequence[str], split_seed: int, n: int) -> list[str]:
    """The training tasks a fit of split `split_seed` is rolled out on for the cloning score: `n` of the sorted
    `train_ids` drawn without replacement by a generator seeded with the split seed (all of them when there are
    no more than `n`; none when n = 0), returned sorted. Every method of one split gets the same tasks."""
    ids = sorted(train_ids)
    if n <= 0:
        return []
    if n >= len(ids):
        return ids
    rng = np.random.default_rng([CLONING_SALT, int(split_seed) % 2**32])
    return [ids[i] for i in sorted(rng.choice(len(ids), size=n, replace=False))]


def _cloning_ids_of(model: Any, fit: FitRef, n: int) -> list[str]:
    if n <= 0:
        return []
    train = _split_train_ids(model, fit)
    if not train:
        raise ValueError(f"{fit.directory}: the fit records no training tasks (split.json), so no cloning score can "
                         f"be computed; refit it, or pass --cloning-tasks 0 (EvalConfig.cloning_tasks=0)")
    return cloning_task_ids(train, fit.seed, n)


SOURCE_ROLLED = "rolled out"   # experts/<task>/expert.pt, on the evaluation episode seeds
SOURCE_MANIFEST = "manifest"   # the dataset manifest's ExpertInfo.return_mean
SOURCE_FILE = "file"           # EvalConfig.expert_returns (--expert-returns FILE)


def read_expert_returns(path: str | Path, task_ids: Sequence[str]) -> dict[str, float]:
    """A user's expert returns file: a JSON object {task_id: return} (a return may also be {"return_mean": R}).
    Every task must be one of `task_ids` and every return a finite number; a ValueError names the file and the
    problem."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ValueError(f"--expert-returns {path}: cannot read it ({e.strerror or e})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"--expert-returns {path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or not data:
        raise ValueError(f"--expert-returns {path}: must be a JSON object mapping task ids to expert returns, e.g. "
                         f'{{"{task_ids[0] if task_ids else "speed=2"}": 812.5}}')
    unknown = sorted(set(data) - set(task_ids))
    if unknown:
        raise ValueError(f"--expert-returns {path}: tasks {unknown[:5]}{' ...' if len(unknown) > 5 else ''} are not in "
                         f"the dataset; its tasks are {list(task_ids)[:8]}{' ...' if len(task_ids) > 8 else ''}")
    out = {}
    for task_id, value in data.items():
        if isinstance(value, dict):
            value = value.get("return_mean")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise ValueError(f"--expert-returns {path}: the return of task {task_id!r} must be a finite number (or "
                             f'{{"return_mean": R}}), got {data[task_id]!r}')
        out[task_id] = float(value)
    return out


def manifest_expert_returns(dataset) -> dict[str, float]:
    """task_id -> the expert return the dataset's manifest records (ExpertInfo.return_mean), where it records one."""
    return {t.task_id: float(t.expert.return_mean) for t in dataset.tasks
            if t.expert is not None and t.expert.return_mean is not None and np.isfinite(t.expert.return_mean)}


class ExpertReference:
    """Expert returns per (task, episode seeds), computed once and cached in `eval/expert_returns.json`.

    Where a task's reference comes from (`source`): `file_returns` (the user's --expert-returns file) first, else
    `experts/<task>/expert.pt` rolled out on the seeds (the default), else, when the run has no `experts/<task>/`
    folder at all (a dataset from another solver), `manifest_returns` (the dataset's ExpertInfo.return_mean).
    The do-nothing floor is always rolled out."""

    def __init__(self, run_dir: Path, family: str, load_expert: Callable[[Path], Any], cache_path: Path,
                 writes: bool = True, manifest_returns: Mapping[str, float] | None = None,
                 file_returns: Mapping[str, float] | None = None, file_path: str | None = None):
        self.run_dir, self.family, self.load_expert, self.cache_path = run_dir, family, load_expert, cache_path
        self.writes = writes  # evaluation workers read the cache; only the parent process writes it
        self.manifest_returns = dict(manifest_returns or {})
        self.file_returns = dict(file_returns or {})
        self.file_path = file_path
        self.cache: dict[str, Any] = {}
        if cache_path.exists():
            try:
                self.cache = read_json(cache_path)
            except (OSError, json.JSONDecodeError):
                self.cache = {}  # unreadable cache: recompute

    def _fingerprint(self, task_id: str) -> str:
        expert_file = self.run_dir / "experts" / task_id / "expert.pt"
        if not expert_file.exists():
            raise FileNotFoundError(
                f"{expert_file} is missing: the expert of task {task_id} is needed as the reference; train it "
                f"(`hyperzero run` resumes) before evaluating, or give its return: in the dataset manifest "
                f"(DatasetWriter.add_task(..., expert={{'return_mean': R}})) or in a JSON file "
                f"{{task_id: return}} passed as `hyperzero evaluate --expert-returns FILE`")
        return fingerprint(expert_file)[:16]  # content: a retrained expert is re-rolled

    def source(self, task_id: str) -> str | None:
        """Where the task's expert return comes from: SOURCE_FILE, SOURCE_ROLLED, SOURCE_MANIFEST, or None."""
        if task_id in self.file_returns:
            return SOURCE_FILE
        if (self.run_dir / "experts" / task_id / "expert.pt").exists():
            return SOURCE_ROLLED
        if task_id in self.manifest_returns and not (self.run_dir / "experts" / task_id).exists():
            return SOURCE_MANIFEST  # no expert of ours for the task (an expert folder without expert.pt is damage)
        return None

    def recorded_key(self, task_ids: Sequence[str]) -> str | None:
        """A digest of the recorded (not rolled-out) references of `task_ids` (None when there are none): a
        changed file or manifest value invalidates the cached rows."""
        used = {}
        for t in sorted(task_ids):
            source = self.source(t)
            if source == SOURCE_FILE:
                used[t] = ["file", self.file_returns[t]]
            elif source == SOURCE_MANIFEST:
                used[t] = ["manifest", self.manifest_returns[t]]
        if not used:
            return None
        return hashlib.sha256(json.dumps(used, sort_keys=True).encode()).hexdigest()[:16]

    def describe_sources(self, task_ids: Sequence[str]) -> dict[str, Any]:
        """{"rolled out": [...], "manifest": [...], "file": [...], "file_path": ..., "none": [...]} over `task_ids`."""
        out: dict[str, Any] = {SOURCE_ROLLED: [], SOURCE_MANIFEST: [], SOURCE_FILE: [], "none": []}
        for t in sorted(set(task_ids)):
            out[self.source(t) or "none"].append(t)
        out["file_path"] = self.file_path
        return out

    @staticmethod
    def _keys(task_id: str, seeds: Sequence[int]) -> tuple[str, str]:
        joined = ",".join(str(s) for s in seeds)
        return f"{task_id}|{joined}", f"floor|{task_id}|{joined}"

    def has(self, task_id: str, seeds: Sequence[int]) -> bool:
        """Both references of the task are cached (the expert's for its current expert.pt, if there is one)."""
        key, floor_key = self._keys(task_id, seeds)
        if floor_key not in self.cache:
            return False
        if self.source(task_id) in (SOURCE_FILE, SOURCE_MANIFEST):
            return True  # recorded, nothing to roll out
        try:
            return self.cache.get(key, {}).get("expert") == self._fingerprint(task_id)
        except FileNotFoundError:
            return True  # no expert to roll out (a flagged task's); `returns` raises for it as before

    def merge(self, entries: Mapping[str, Any]) -> None:
        """Add cache entries computed elsewhere (`_reference_entry` in a worker) and save the cache."""
        self.cache.update(entries)
        self._save()

    def _save(self) -> None:
        if self.writes:
            atomic_write_json(self.cache_path, self.cache)

    def returns(self, task_id: str, context: Mapping[str, float], seeds: Sequence[int]) -> np.ndarray:
        """The expert's returns on `seeds` (rolled out), or [R] with R the recorded return (file, manifest)."""
        source = self.source(task_id)
        if source == SOURCE_FILE:
            return np.asarray([self.file_returns[task_id]], dtype=np.float64)
        if source == SOURCE_MANIFEST:
            return np.asarray([self.manifest_returns[task_id]], dtype=np.float64)
        key = self._keys(task_id, seeds)[0]
        fingerprint = self._fingerprint(task_id)
        entry = self.cache.get(key)
        if entry and entry.get("expert") == fingerprint:
            return np.asarray(entry["returns"], dtype=np.float64)
        expert = self.load_expert(self.run_dir / "experts" / task_id)
        returns = rollout_returns(self.family, context, numpy_policy(expert), seeds)
        self.cache[key] = {"task_id": task_id, "seeds": list(seeds), "returns": returns.tolist(), "expert": fingerprint}
        self._save()
        return returns

    def floor_returns(self, task_id: str, context: Mapping[str, float], seeds: Sequence[int]) -> np.ndarray:
        """Returns of the do-nothing policy (a = 0) on the task, on the same seeds (cached like the expert's)."""
        from hyperzero.envs import get_family

        key = self._keys(task_id, seeds)[1]
        entry = self.cache.get(key)
        if entry:
            return np.asarray(entry["returns"], dtype=np.float64)
        returns = rollout_returns(self.family, context, zero_action_policy(get_family(self.family).act_dim), seeds)
        self.cache[key] = {"task_id": task_id, "seeds": list(seeds), "returns": returns.tolist(), "policy": "zero action"}
        self._save()
        return returns


def flagged_tasks(run_dir: Path, dataset) -> dict[str, str]:
    """task_id -> reason, for tasks whose expert was flagged by its quality check (summary.json or manifest)."""
    out = {}
    for task in dataset.tasks:
        summary_path = run_dir / "experts" / task.task_id / "summary.json"
        summary = {}
        if summary_path.exists():
            try:
                summary = read_json(summary_path)
            except (OSError, json.JSONDecodeError):
                summary = {}
        if summary.get("flagged") or getattr(task.expert, "flagged", False):
            out[task.task_id] = "flagged expert"
    return out


def mark_exclusions(rows: Sequence[ResultRow], flagged: Mapping[str, str]) -> list[ResultRow]:
    """Set each row's `excluded` reason: a flagged expert, or an expert no better than the do-nothing floor."""
    from dataclasses import replace

    out = []
    for r in rows:
        reason = flagged.get(r.task_id, "")
        if not reason and not r.expert_return > r.floor_return:
            reason = "expert not above the do-nothing floor"
        out.append(replace(r, excluded=reason))
    return out


def _default_load_fit(fit_dir: Path):
    from hyperzero.training import load_fit

    model = load_fit(fit_dir)
    model.allow_extrapolation = True  # test contexts come from the dataset, which may hold extrapolated tasks
    model.warn_outside_training = False  # held-out tasks outside the training range are the point here
    return model


def _default_load_expert(task_dir: Path):
    from hyperzero.experts import load_expert

    return load_expert(task_dir)


def evaluate(run_dir: str | Path, config: EvalConfig | None = None, *, load_fit: Callable[[Path], Any] | None = None,
             load_expert: Callable[[Path], Any] | None = None, progress: bool = True) -> EvalResult:
    """Evaluate every complete fit of `run_dir` on its held-out tasks; write `eval/`. See the module doc.

    The fits without current cached rows are rolled out by `config.num_workers` processes (default: one per core,
    never more than those fits), after the experts' and floors' reference returns, also in parallel. The rows are
    the same as one process computes (each rollout is seeded); `num_workers=1`, or injected loaders, keep it all
    in this process."""
    from tqdm.auto import tqdm

    from hyperzero.datasets import load_dataset

    config = config or EvalConfig()
    run_dir = Path(run_dir)
    in_process = load_fit is not None or load_expert is not None  # injected loaders need not pickle
    load_fit = load_fit or _default_load_fit
    load_expert = load_expert or _default_load_expert
    eval_dir = run_dir / "eval"
    dataset = load_dataset(run_dir / "dataset")
    seeds = config.episode_seeds
    check_seed_overlap(seeds, dataset)
    fits = find_fits(run_dir, config.methods, config.seeds)
    if not fits:
        raise ValueError(f"no complete fits under {run_dir / 'fits'} (a fit is complete when it has done.json); "
                         f"run the fit stage first (`hyperzero run` resumes it)")
    tasks = {t.task_id: t for t in dataset.tasks}
    references = reference_settings(dataset, config)
    experts = ExpertReference(run_dir, dataset.family, load_expert, eval_dir / "expert_returns.json", **references)
    settings = {"episode_seeds": seeds, "few_shot_k": list(config.few_shot_k), "dataset": _dataset_fingerprint(dataset),
                "cloning_tasks": config.cloning_tasks,
                "rows": "v3-roles"}  # rows carry the floor return since v2, role (test/train) and position since v3
    recorded = experts.recorded_key(list(tasks))
    if recorded is not None:  # only then: the rows cached by earlier versions stay valid
        settings["expert_returns"] = recorded
    flagged = flagged_tasks(run_dir, dataset)

    rows_of: dict[int, list[ResultRow]] = {}  # fit index -> its rows; the results keep the fits' order
    todo = []
    varied, signed = _position_features(tasks, dataset.context_names, dataset.family)
    for i, fit in enumerate(fits):
        cache_path = eval_dir / "rows" / fit.method / f"seed_{fit.seed}.json"
        key = {"fit": fit.fingerprint, **settings}
        cached = read_json(cache_path) if cache_path.exists() else None
        if cached and cached.get("key") == key:
            rows_of[i] = _relabel_positions([ResultRow(**r) for r in cached["rows"]], fit, tasks, varied, signed)
        else:
            todo.append((i, fit, cache_path, key))
    workers = 1 if in_process else min(config.num_workers or os.cpu_count() or 1, len(todo))
    bar = tqdm(total=len(fits), initial=len(rows_of), desc="evaluate fits", unit="fit", disable=not progress)

    def keep(i: int, fit: FitRef, cache_path: Path, key: dict, fit_rows: list[ResultRow]) -> None:
        atomic_write_json(cache_path, {"key": key, "rows": [asdict(r) for r in fit_rows]})
        rows_of[i] = fit_rows
        bar.set_postfix_str(f"{fit.method} seed {fit.seed} done")
        bar.update(1)

    if workers > 1:
        _evaluate_in_processes(run_dir, todo, tasks, dataset, experts, config, flagged, workers, keep, references)
    else:
        for i, fit, cache_path, key in todo:
            bar.set_postfix_str(f"{fit.method} seed {fit.seed}")
            keep(i, fit, cache_path, key, _evaluate_fit(fit, load_fit(fit.directory), tasks, dataset.context_names,
                                                        experts, config, progress, flagged))
    bar.close()
    rows = [r for i in sorted(rows_of) for r in rows_of[i]]

    rows = mark_exclusions(rows, flagged)
    sources = experts.describe_sources([r.task_id for r in rows])
    written = [write_results(eval_dir / "results.csv", rows, dataset.context_names)]
    # the held-out summary sees the test rows only (aggregate filters them), exactly as before cloning rows existed
    summary = aggregate(rows, reps=config.bootstrap_reps, seed=config.bootstrap_seed, baseline=config.baseline)
    cloning = group_aggregate(rows, "train", reps=config.bootstrap_reps, seed=config.bootstrap_seed)
    positions = [g for group in ("between", "outside")
                 for g in group_aggregate(rows, group, reps=config.bootstrap_reps, seed=config.bootstrap_seed)]
    written.append(atomic_write_text(eval_dir / "summary.csv", stats_to_csv_text(summary)))
    written.append(atomic_write_text(eval_dir / "summary.md", summary_markdown(summary, cloning, positions, rows)
                                     + sources_markdown(sources)))
    written.append(atomic_write_text(eval_dir / "cloning.csv", groups_to_csv_text(cloning)))
    written.append(atomic_write_text(eval_dir / "cloning.md", f"# {CLONING_HEADING}\n\n{CLONING_INTRO}\n"
                                     + cloning_to_markdown(cloning, summary, rows)))
    written.append(atomic_write_text(eval_dir / "positions.csv", groups_to_csv_text(positions)))
    if config.figures:
        from hyperzero.evaluation.figures import make_all_figures

        written += make_all_figures(rows, dataset.context_names, eval_dir / "figures", stats=summary,
                                    run_dir=run_dir, family=dataset.family)
    media: dict[str, Any] = {}
    if config.videos:
        from hyperzero.envs import get_family

        problem = get_family(dataset.family).render_problem()
        if problem is None:
            written += render_videos(run_dir, dataset, fits, config, load_fit, progress)
        else:
            media["videos_skipped"] = f"family {dataset.family!r} cannot render frames: {problem}"
            print(f"evaluate: videos skipped: {media['videos_skipped']}", file=sys.stderr, flush=True)
    atomic_write_json(eval_dir / "done.json", {"key": {**settings, "fits": {f"{f.method}/seed_{f.seed}": f.fingerprint
                                                                               for f in fits}},
                                              "n_rows": len(rows), "config": _jsonable_config(config),
                                              "expert_returns": sources, **media})
    return EvalResult(rows=rows, summary=summary, written=written, cloning=cloning, positions=positions)


CLONING_INTRO = ("The same score (R - R_floor) / (R_expert - R_floor), on fresh episode seeds, on a few training tasks "
                 "of each split (cloning: did the method learn to copy the experts it was fitted on?) and on the "
                 "split's held-out tasks (transfer). IQM with 95 % stratified-bootstrap intervals; returns are raw "
                 "episode returns; the last column is the experts' mean return on the scored tasks of each kind.\n")
POSITIONS_INTRO = ("A held-out task is between when its context lies in the convex hull of its split's training tasks "
                   "over the varied context features (one feature: training tasks on both sides of, or at, its "
                   "value), counting for a signed feature such as speed only training tasks of the same sign; "
                   "otherwise it is outside. Pairs (tasks): the scored (split seed, task) "
                   "pairs and their distinct tasks. Fewer than 4 pairs: their mean instead of an IQM.\n")
CLONING_HEADING = "Cloning (training tasks) vs transfer (held-out tasks)"
POSITIONS_HEADING = "Held-out tasks between vs outside the training tasks"


def summary_markdown(summary: Sequence, cloning: Sequence, positions: Sequence, rows: Sequence) -> str:
    """eval/summary.md: the held-out table (as before), then cloning vs transfer, then between vs outside."""
    return (stats_to_markdown(summary)
            + f"\n## {CLONING_HEADING}\n\n{CLONING_INTRO}\n" + cloning_to_markdown(cloning, summary, rows)
            + f"\n## {POSITIONS_HEADING}\n\n{POSITIONS_INTRO}\n" + positions_to_markdown(positions))


def reference_settings(dataset, config: EvalConfig) -> dict[str, Any]:
    """The ExpertReference keyword arguments for a dataset and an EvalConfig: the manifest's recorded expert
    returns and, with config.expert_returns, the user's file (read and checked here)."""
    out: dict[str, Any] = {"manifest_returns": manifest_expert_returns(dataset)}
    if config.expert_returns:
        out["file_returns"] = read_expert_returns(config.expert_returns, dataset.task_ids)
        out["file_path"] = str(config.expert_returns)
    return out


def references_digest(run_dir: str | Path, manifest: Mapping[str, Any], config: EvalConfig) -> str | None:
    """`ExpertReference.recorded_key` over every task of a dataset manifest, without loading the dataset: what
    `evaluate` stores in eval/done.json's key (None when every reference is rolled out)."""
    task_ids = [e["task_id"] for e in manifest["tasks"]]
    manifest_returns = {e["task_id"]: float(e["expert"]["return_mean"]) for e in manifest["tasks"]
                        if isinstance(e.get("expert"), Mapping) and e["expert"].get("return_mean") is not None
                        and np.isfinite(e["expert"]["return_mean"])}
    file_returns = read_expert_returns(config.expert_returns, task_ids) if config.expert_returns else {}
    reference = ExpertReference(Path(run_dir), manifest["family"], _default_load_expert,
                                Path(run_dir) / "eval" / ".no-cache", writes=False, manifest_returns=manifest_returns,
                                file_returns=file_returns)
    return reference.recorded_key(task_ids)


def sources_markdown(sources: Mapping[str, Any]) -> str:
    """Where R_expert came from, for summary.md: "" in the default case (every reference rolled out)."""
    text = expert_sources_sentence(sources)
    return "" if not (sources.get(SOURCE_MANIFEST) or sources.get(SOURCE_FILE)) else f"\n{text}\n"


def expert_sources_sentence(sources: Mapping[str, Any]) -> str:
    """One sentence saying where the expert returns (R_expert) of the scored tasks came from."""
    parts = []
    if sources.get(SOURCE_ROLLED):
        parts.append(f"rolled out from experts/<task>/expert.pt on the evaluation episode seeds "
                     f"({len(sources[SOURCE_ROLLED])} task(s))")
    if sources.get(SOURCE_MANIFEST):
        parts.append(f"from the dataset manifest (ExpertInfo.return_mean, the producer's own evaluation), not "
                     f"re-rolled ({len(sources[SOURCE_MANIFEST])} task(s): {', '.join(sources[SOURCE_MANIFEST][:6])}"
                     f"{' ...' if len(sources[SOURCE_MANIFEST]) > 6 else ''})")
    if sources.get(SOURCE_FILE):
        parts.append(f"from {sources.get('file_path') or 'the --expert-returns file'} (given with --expert-returns), "
                     f"not re-rolled ({len(sources[SOURCE_FILE])} task(s))")
    if sources.get("none"):
        parts.append(f"none for {len(sources['none'])} flagged task(s) without an expert")
    return "Expert returns: " + ("; ".join(parts) if parts else "none scored") + "."


def _evaluate_in_processes(run_dir: Path, todo: list, tasks: Mapping[str, Any], dataset, experts: ExpertReference,
                           config: EvalConfig, flagged: Mapping[str, str], workers: int, keep: Callable,
                           references: Mapping[str, Any] | None = None) -> None:
    """Reference returns of every task the fits are rolled out on (held-out tasks, and the training tasks of the
    cloning score), then the fits, each in `workers` processes (one pool for both).
    Only this process writes files: the references' cache before the fits start, each fit's rows as it ends."""
    from hyperzero.utils.workers import WorkerPool, default_threads

    seeds = config.episode_seeds
    needed = _reference_tasks(todo, tasks, experts, seeds, config.cloning_tasks)
    references = dict(references or {})
    with WorkerPool(workers, threads=default_threads(workers)) as pool:
        entries: dict[int, dict] = {}
        try:
            pool.map(_reference_entry, [(str(run_dir), dataset.family, t, dict(tasks[t].context), seeds, references)
                                        for t in needed],
                     describe=lambda i, job: f"rolling out the references of task {job[2]}",
                     on_result=entries.__setitem__)
        finally:  # merged in the tasks' order (the cache file does not depend on which worker ended first), and
            for i in sorted(entries):  # those that ended are kept when another failed
                experts.merge(entries[i])
        pool.map(_fit_rows_entry, [(str(run_dir), fit, list(dataset.context_names), config, dict(flagged), references)
                                   for _, fit, _, _ in todo],
                 describe=lambda i, job: f"evaluating {job[1].method} seed {job[1].seed}",
                 on_result=lambda i, fit_rows: keep(*todo[i], fit_rows))


def _reference_tasks(todo: list, tasks, experts: ExpertReference, seeds: Sequence[int],
                     cloning_tasks: int) -> list[str]:
    """The tasks whose references are not cached yet among those the fits in `todo` are rolled out on: the held-out
    tasks of their splits and the training tasks of the cloning score."""
    return sorted({t for _, fit, _, _ in todo if (fit.directory / "split.json").exists()
                   for t in _split_test_ids(None, fit) + _cloning_ids_of(None, fit, cloning_tasks)
                   if t in tasks and not experts.has(t, seeds)})


def _reference_entry(run_dir: str, family: str, task_id: str, context: Mapping[str, float], seeds: Sequence[int],
                     references: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Worker: the cache entries of the task's expert returns (if it has an expert.pt) and floor returns."""
    experts = ExpertReference(Path(run_dir), family, _default_load_expert,
                              Path(run_dir) / "eval" / "expert_returns.json", writes=False, **(references or {}))
    try:
        experts.returns(task_id, context, seeds)
    except FileNotFoundError:
        pass  # a flagged task's missing expert: the fit's rows mark it as before
    experts.floor_returns(task_id, context, seeds)
    return {k: experts.cache[k] for k in experts._keys(task_id, seeds) if k in experts.cache}


def _fit_rows_entry(run_dir: str, fit: FitRef, context_names: list[str], config: EvalConfig,
                    flagged: dict[str, str], references: Mapping[str, Any] | None = None) -> list[ResultRow]:
    """Worker: one fit's rows, with the references read from the cache the parent wrote."""
    family, tasks = _dataset_tasks(run_dir)
    experts = ExpertReference(Path(run_dir), family, _default_load_expert,
                              Path(run_dir) / "eval" / "expert_returns.json", writes=False, **(references or {}))
    return _evaluate_fit(fit, _default_load_fit(fit.directory), tasks, context_names, experts, config, False, flagged)


@functools.lru_cache(maxsize=1)
def _dataset_tasks(run_dir: str) -> tuple[str, dict[str, Any]]:
    """The run's dataset, loaded once per worker process (it serves every fit that worker evaluates)."""
    from hyperzero.datasets import load_dataset

    dataset = load_dataset(Path(run_dir) / "dataset")
    return dataset.family, {t.task_id: t for t in dataset.tasks}


def _jsonable_config(config: EvalConfig) -> dict:
    out = asdict(config)
    out["few_shot_k"] = list(config.few_shot_k)
    return out


def _dataset_fingerprint(dataset) -> str:
    entries = [(t.get("task_id"), t.get("sha256")) for t in dataset.manifest.get("tasks", [])]
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16]


def _evaluate_fit(fit: FitRef, model: Any, tasks: Mapping[str, Any], context_names: Sequence[str],
                  experts: ExpertReference, config: EvalConfig, progress: bool,
                  flagged: Mapping[str, str] | None = None) -> list[ResultRow]:
    from tqdm.auto import tqdm

    test_ids = _split_test_ids(model, fit)
    clone_ids = _cloning_ids_of(model, fit, config.cloning_tasks)
    for what, ids in (("test", test_ids), ("training", clone_ids)):
        unknown = sorted(set(ids) - set(tasks))
        if unknown:
            raise ValueError(f"{fit.directory}: {what} tasks {unknown} are not in the run's dataset; the fit belongs "
                             f"to a different dataset, refit it")
    varied, signed = _position_features(tasks, context_names, experts.family)
    train_contexts = [dict(tasks[t].context) for t in _split_train_ids(model, fit) if t in tasks]
    meta = is_meta(model, fit.method)
    seeds = config.episode_seeds
    rows = []
    # held-out tasks first, exactly as before; then the training tasks of the cloning score (zero-shot only)
    todo = [(t, "test") for t in test_ids] + [(t, "train") for t in clone_ids]
    for task_id, role in tqdm(todo, desc=f"  {fit.method} seed {fit.seed}", unit="task", leave=False,
                              disable=not progress):
        task = tasks[task_id]
        context = dict(task.context)
        try:
            expert_mean = float(experts.returns(task_id, context, seeds).mean())
        except FileNotFoundError:
            if task_id not in (flagged or {}):
                raise
            expert_mean = float("nan")  # a flagged expert may have no usable expert.pt; the task is excluded anyway
        floor_mean = float(experts.floor_returns(task_id, context, seeds).mean())
        shown_context = {n: float(context[n]) for n in context_names}
        position = "" if role == "train" or not train_contexts else context_position(context, train_contexts,
                                                                                     varied, signed)
        variants: list[tuple[str, Any]] = [(fit.method, lambda: model.policy(context))]
        if meta and role == "test":
            for k in config.few_shot_k:
                variants.append((f"{fit.method}@{k}shot",
                                 lambda k=k: model.adapt(context, few_shot_transitions(task, k, config.eval_seed))))
        for name, make_policy in variants:
            returns = rollout_returns(experts.family, context, numpy_policy(make_policy()), seeds)
            rows.append(ResultRow(method=name, seed=fit.seed, task_id=task_id, context=shown_context,
                                  n_episodes=len(seeds), return_mean=float(returns.mean()),
                                  return_std=float(returns.std()), expert_return=expert_mean,
                                  floor_return=floor_mean, role=role, position=position))
    return rows

