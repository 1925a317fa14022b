"""What the explore page needs from a run directory, read once at start and checked.

    <run>/config.yaml                         name and description (optional)
    <run>/dataset/manifest.json               family, varied features, tasks, gamma, episode length
    <run>/experts/<task_id>/summary.json      each task's expert return (optional)
    <run>/fits/<method>/seed_<k>/             complete fits: model.pt, split.json, done.json

Any problem that makes the page useless (no run directory, no finalized dataset, no complete fit,
a fit of another family) raises ValueError / FileNotFoundError naming the path and the fix, so
`hyperzero explore` stops at start with a clear message instead of serving a broken page.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from hyperzero.datasets.format import read_manifest
from hyperzero.datasets.splits import Split
from hyperzero.envs import get_family
from hyperzero.evaluation.evaluate import find_fits, is_meta
from hyperzero.utils.io import read_json

PREFERRED_METHOD = "hyperzero"
SAME_VALUE_RTOL = 1e-6  # a requested context equals a dataset task when every varied feature agrees to this


class FitLoadError(ValueError):
    """A fit's model.pt cannot be loaded (damaged, or removed since the page started)."""

    def __init__(self, path: Path, reason: str, run_dir: Path):
        self.path = Path(path)
        fit_dir = self.path.parent
        super().__init__(f"{self.path} cannot be loaded ({reason}); the fit is damaged: delete {fit_dir} and refit "
                         f"it (`hyperzero run <preset> --out {run_dir}` refits what is missing, or `hyperzero fit`). "
                         f"The other fits still work")


@dataclass
class FitInfo:
    method: str
    seed: int
    directory: Path
    split: Split


@dataclass
class TaskInfo:
    task_id: str
    context: dict[str, float]     # full context (every feature of the family)
    values: list[float]           # the varied features, in context_names order
    episode_return: float | None  # the expert's mean return on the dataset's own episodes
    expert: dict[str, Any] | None  # return of the expert as recorded in experts/<task_id>/summary.json


class ExploreRun:
    """A run directory opened for exploration: dataset facts, fits (loaded lazily, cached), experts."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise ValueError(f"run directory {self.run_dir} does not exist; pass the --out directory of "
                             f"`hyperzero run` (e.g. `hyperzero run tiny --out runs/tiny`)")
        if not (self.run_dir / "dataset").is_dir():
            raise ValueError(f"{self.run_dir} has no dataset/ folder; pass a run directory as `hyperzero run --out` "
                             f"makes it (it holds dataset/ and fits/), not one of its sub-folders")
        manifest = read_manifest(self.run_dir / "dataset")
        if not manifest.get("finalized", False):
            raise ValueError(f"{self.run_dir / 'dataset' / 'manifest.json'}: the dataset was never finalized "
                             f"(interrupted collection); rerun `hyperzero run` with the same --out to finish it")
        if not manifest["tasks"]:
            raise ValueError(f"{self.run_dir / 'dataset' / 'manifest.json'}: the dataset has no tasks")
        self.manifest = manifest
        self.family_name: str = manifest["family"]
        self.family = get_family(self.family_name)
        self.space = self.family.context_space
        self.context_names: list[str] = list(manifest["context_names"])
        self.gamma = float(manifest["gamma"])
        self.episode_length = int(max(int(t.get("episode_length") or self.family.episode_steps)
                                      for t in manifest["tasks"]))
        self.config = self._read_config()
        self.tasks = [self._task(t) for t in manifest["tasks"]]
        self.fits = self._find_fits()
        self._models: dict[tuple[str, int], Any] = {}
        self._models_lock = threading.Lock()

    # --- reading ---
    def _read_config(self) -> dict:
        path = self.run_dir / "config.yaml"
        if not path.is_file():
            return {}
        import yaml

        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{path} is not valid YAML ({e}); restore it or delete it (it only names the run)") from e
        return data if isinstance(data, dict) else {}

    def _task(self, entry: Mapping[str, Any]) -> TaskInfo:
        context = self.space.validate(entry["context"], allow_extrapolation=True)
        summary_path = self.run_dir / "experts" / entry["task_id"] / "summary.json"
        expert = None
        if summary_path.is_file():
            summary = read_json(summary_path)
            horizon = (summary.get("config") or {}).get("max_episode_steps") or self.family.episode_steps
            if summary.get("eval_return_mean") is not None:
                expert = {"return_mean": float(summary["eval_return_mean"]),
                          "return_std": float(summary.get("eval_return_std") or 0.0),
                          "episodes": int(summary.get("eval_episodes") or len(summary.get("eval_returns") or [])
                                          or 0),
                          "episode_steps": int(horizon), "train_steps": summary.get("train_steps"),
                          "source": str(summary_path.relative_to(self.run_dir))}
        if expert is None and (entry.get("expert") or {}).get("return_mean") is not None:
            info = entry["expert"]
            expert = {"return_mean": float(info["return_mean"]), "return_std": float(info.get("return_std") or 0.0),
                      "episodes": None, "episode_steps": None, "train_steps": info.get("train_steps"),
                      "source": "dataset/manifest.json"}
        ret = entry.get("episode_return_mean")
        return TaskInfo(entry["task_id"], context, [float(context[n]) for n in self.context_names],
                        None if ret is None else float(ret), expert)

    def _find_fits(self) -> list[FitInfo]:
        fits_dir = self.run_dir / "fits"
        refs = find_fits(self.run_dir)
        if not refs:
            raise ValueError(f"no complete fit under {fits_dir} (a fit is complete when it has done.json); finish "
                             f"the run with `hyperzero run <preset> --out {self.run_dir}` or `hyperzero fit`")
        out = []
        for ref in refs:
            split_path = ref.directory / "split.json"
            if not (ref.directory / "model.pt").is_file():
                raise ValueError(f"{ref.directory} has done.json but no model.pt (copied partially?); "
                                 f"delete that fit directory and rerun the fit")
            if not split_path.is_file():
                raise ValueError(f"{split_path} is missing; delete {ref.directory} and rerun the fit")
            split = Split.from_json(split_path)
            out.append(FitInfo(ref.method, ref.seed, ref.directory, split))
        return out

    # --- facts for the page ---
    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.run_dir.name)

    @property
    def methods(self) -> list[str]:
        return sorted({f.method for f in self.fits}, key=lambda m: (m != PREFERRED_METHOD, m))

    def seeds(self, method: str) -> list[int]:
        return sorted(f.seed for f in self.fits if f.method == method)

    def fit(self, method: str, seed: int) -> FitInfo:
        for f in self.fits:
            if f.method == method and f.seed == seed:
                return f
        if method not in self.methods:
            raise ValueError(f"method {method!r} has no complete fit in {self.run_dir / 'fits'}; "
                             f"fitted methods: {self.methods}")
        raise ValueError(f"method {method!r} has no complete fit for split seed {seed}; "
                         f"its fitted seeds: {self.seeds(method)}")

    def default_fit(self, method: str | None = None, seed: int | None = None) -> FitInfo:
        method = method or self.methods[0]
        if method not in self.methods:
            raise ValueError(f"--method {method!r} has no complete fit in {self.run_dir / 'fits'}; "
                             f"choose one of {self.methods}")
        return self.fit(method, self.seeds(method)[0] if seed is None else seed)

    def task_values(self, name: str) -> list[float]:
        return sorted({float(t.context[name]) for t in self.tasks})

    def fixed_context(self) -> dict[str, float]:
        """Values of the features this run does not vary (the same in every task)."""
        first = self.tasks[0].context
        return {k: v for k, v in first.items() if k not in self.context_names}

    def default_context(self) -> dict[str, float]:
        """The varied features at the middle training task (a task the model has seen)."""
        return dict(zip(self.context_names, self.tasks[len(self.tasks) // 2].values))

    def slider_range(self, name: str) -> tuple[float, float]:
        """The dataset's range of `name` widened by half its span each side (room to extrapolate),
        within the feature's physical limits; the number box accepts anything within the limits."""
        feature = self.space.features[name]
        values = self.task_values(name)
        lo, hi = values[0], values[-1]
        span = hi - lo if hi > lo else (feature.bounds[1] - feature.bounds[0]) / 2
        plo, phi = feature.limits
        return max(plo, lo - span / 2), min(phi, hi + span / 2)

    def task_for(self, values: Mapping[str, float]) -> TaskInfo | None:
        for task in self.tasks:
            if all(math.isclose(values[n], v, rel_tol=SAME_VALUE_RTOL, abs_tol=1e-9)
                   for n, v in zip(self.context_names, task.values)):
                return task
        return None

    def train_range(self, split: Split, name: str) -> tuple[float, float]:
        i = self.context_names.index(name)
        values = [t.values[i] for t in self.tasks if t.task_id in set(split.train)]
        values = values or [t.values[i] for t in self.tasks]
        return min(values), max(values)

    def role(self, split: Split, task_id: str) -> str:
        for role in ("train", "val", "test"):
            if task_id in getattr(split, role):
                return role
        return "unused"

    # --- contexts ---
    def resolve_context(self, values: Mapping[str, Any]) -> dict[str, float]:
        """The full context for the page's values of the varied features, checked by the family's
        ContextSpace (extrapolation beyond the nominal range allowed, physical limits and the minimum
        |speed| enforced). Every varied feature must be given; a feature the run does not vary may
        only be given at the run's fixed value; unknown features are refused."""
        return self.space.validate_for(values, self.context_names, self.fixed_context(), allow_extrapolation=True,
                                       who="this run")

    def beyond(self, context: Mapping[str, float], split: Split) -> dict[str, dict[str, bool]]:
        """Per varied feature: outside the split's training tasks, and outside the family's nominal range."""
        out = {}
        for name in self.context_names:
            lo, hi = self.train_range(split, name)
            blo, bhi = self.space.features[name].bounds
            v = float(context[name])
            out[name] = {"extrapolation": not lo <= v <= hi, "beyond_nominal": not blo <= v <= bhi}
        return out

    # --- models ---
    def model(self, method: str, seed: int):
        """`hyperzero.training.load_fit` of that fit, loaded once."""
        fit = self.fit(method, seed)
        with self._models_lock:
            if (method, seed) not in self._models:
                from hyperzero.training import load_fit

                try:
                    trained = load_fit(fit.directory)
                except Exception as e:  # noqa: BLE001 - whatever a damaged fit raises, name the file and the fix
                    raise FitLoadError(fit.directory / "model.pt", getattr(e, "reason", None)
                                       or f"{type(e).__name__}: {e}", self.run_dir) from None
                if trained.family != self.family_name or list(trained.context_names) != self.context_names:
                    raise ValueError(f"{fit.directory} was fitted on family {trained.family!r} with context "
                                     f"{list(trained.context_names)}, but the run's dataset is {self.family_name!r} "
                                     f"with {self.context_names}; refit it on this run's dataset")
                # The page checks contexts itself (physical limits) and extrapolating is its purpose: it
                # marks contexts beyond the training tasks on the page (`beyond`) instead of warning.
                trained.allow_extrapolation = True
                trained.warn_outside_training = False
                trained.set_training_facts(self.fixed_context(), {n: self.train_range(fit.split, n)
                                                                  for n in self.context_names})
                self._models[(method, seed)] = trained
            return self._models[(method, seed)]

    def describe(self) -> dict[str, Any]:
        """Everything the page shows before the first rollout (JSON-ready)."""
        features = []
        for name in self.context_names:
            f = self.space.features[name]
            lo, hi = self.slider_range(name)
            features.append({"name": name, "unit": f.unit, "doc": f.doc, "kind": f.kind, "nominal": list(f.bounds),
                             "limits": list(f.limits), "nonzero": f.nonzero, "slider": [lo, hi],
                             "step": _slider_step(lo, hi)})
        methods = []
        for m in self.methods:
            fits = [f for f in self.fits if f.method == m]
            methods.append({"name": m, "seeds": [f.seed for f in fits], "meta": is_meta(None, m),
                            "splits": {str(f.seed): {"train": f.split.train, "val": f.split.val, "test": f.split.test}
                                       for f in fits}})
        return {
            "run": self.name, "run_dir": str(self.run_dir), "description": str(self.config.get("description") or ""),
            "family": self.family_name, "context_names": self.context_names, "fixed_context": self.fixed_context(),
            "features": features, "gamma": self.gamma, "episode_length": self.episode_length,
            "tasks": [{"task_id": t.task_id, "values": t.values, "expert": t.expert,
                       "dataset_return": t.episode_return} for t in self.tasks],
            "methods": methods, "default_context": self.default_context(),
        }


def _slider_step(lo: float, hi: float) -> float:
    """A round step giving a few hundred slider positions."""
    raw = (hi - lo) / 400
    if raw <= 0:
        return 0.01
    p = 10 ** math.floor(math.log10(raw))
    return float(min((m * p for m in (1, 2, 5, 10) if m * p >= raw), default=p))

