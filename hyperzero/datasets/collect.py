"""`collect_dataset`: roll every finished expert of an experts directory into a dataset."""
from __future__ import annotations

import contextlib
import functools
import json
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

from hyperzero.datasets.format import DatasetError, ExpertInfo
from hyperzero.datasets.record import dataset_episode_seeds, record_episodes
from hyperzero.datasets.writer import DatasetWriter
from hyperzero.utils.integrity import fingerprint
from hyperzero.utils.io import read_json

log = logging.getLogger(__name__)

EXPERT_SOURCE = "hyperzero-td3"
_SUMMARY_KEYS = ("task_id", "family", "context", "finished")


def default_context_names(family: str, contexts: Sequence[dict]) -> list[str]:
    """The features whose value differs across `contexts`, in the family's declaration order.

    If none differ (a single task, or identical contexts), every non-optional reward and dynamics
    feature, plus any optional feature that the contexts set.
    """
    from hyperzero.envs import get_family

    space = get_family(family).context_space
    full = [{**space.defaults(), **c} for c in contexts]
    varied = [n for n in space.names if len({c[n] for c in full}) > 1]
    if varied:
        return varied
    used = set().union(*(c.keys() for c in contexts)) if contexts else set()
    return [n for n, f in space.features.items()
            if f.kind in ("reward", "dynamics") and (not f.optional or n in used)]


def _read_summaries(experts_dir: Path) -> tuple[list[tuple[Path, dict]], list[str]]:
    if not experts_dir.is_dir():
        raise DatasetError(f"{experts_dir}: experts directory does not exist; train experts first "
                           f"(`hyperzero experts train`)")
    finished, unfinished = [], []
    for task_dir in sorted(p for p in experts_dir.iterdir() if p.is_dir()):
        path = task_dir / "summary.json"
        if not path.is_file():
            unfinished.append(task_dir.name)
            continue
        try:
            summary = read_json(path)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DatasetError(f"{path}: not valid JSON ({e}); retrain this expert or delete its folder") from e
        missing = [k for k in _SUMMARY_KEYS if k not in summary]
        if missing:
            raise DatasetError(f"{path}: expert summary lacks {missing}; it was not written by hyperzero.experts")
        if summary["finished"]:
            finished.append((task_dir, summary))
        else:
            unfinished.append(task_dir.name)
    return finished, unfinished


def expert_episode_seeds(summary: dict, episode_steps: int) -> set[int]:
    """Every env seed the expert saw: its own seed, its training episodes' and its evaluation episodes'.

    Reproduces `hyperzero.experts.trainer.episode_seed` streams from the summary (train_steps,
    eval_episodes, config.max_episode_steps), so dataset seeds can be made disjoint from them.
    """
    seed = summary.get("seed")
    if seed is None:
        return set()
    out = {int(seed)}
    config = summary.get("config") or {}
    length = int(config.get("max_episode_steps") or episode_steps)
    n_train = int(summary.get("train_steps") or 0) // max(1, length) + 2
    n_eval = max(int(summary.get("eval_episodes") or 0), int(config.get("eval_episodes") or 0), 10)
    return out | _seed_streams(int(seed), n_train, n_eval)


@functools.lru_cache(maxsize=16)
def _seed_streams(seed: int, n_train: int, n_eval: int) -> frozenset[int]:
    from hyperzero.experts.trainer import _EVAL_EPISODE, _TRAIN_EPISODE, episode_seed

    return frozenset({episode_seed(seed, _TRAIN_EPISODE, i) for i in range(n_train)}
                     | {episode_seed(seed, _EVAL_EPISODE, k) for k in range(n_eval)})


def experts_gamma(experts_dir: Path, summaries: Sequence[dict], requested: float | None) -> float:
    """The discount the experts were trained with (summary.json `config.gamma`), checked against `requested`."""
    found = {s["task_id"]: (s.get("config") or {}).get("gamma") for s in summaries}
    known = {tid: float(g) for tid, g in found.items() if g is not None}
    values = sorted(set(known.values()))
    if len(values) > 1:
        by_value = {v: sorted(t for t, g in known.items() if g == v) for v in values}
        raise DatasetError(f"{experts_dir}: experts were trained with different discounts {by_value}; q* from their "
                           f"critics would not share one TD relation. Retrain them with one experts.gamma")
    if requested is not None:
        if values and abs(float(requested) - values[0]) > 1e-12:
            raise DatasetError(f"{experts_dir}: gamma={requested} was requested but the experts were trained with "
                               f"gamma={values[0]} (summary.json config.gamma); q* and the TD loss would disagree. "
                               f"Leave gamma unset to use the experts' discount")
        return float(requested)
    if not values:
        raise DatasetError(f"{experts_dir}: no expert summary.json records config.gamma (tasks "
                           f"{sorted(found)[:3]}...); pass gamma explicitly (the discount the experts were trained with)")
    missing = sorted(t for t, g in found.items() if g is None)
    if missing:
        log.warning("%s: experts %s do not record config.gamma; assuming the others' %g", experts_dir, missing,
                    values[0])
    return values[0]


@contextlib.contextmanager
def _single_torch_thread():
    """Experts act on batches of ~10 rows: intra-op threads only add overhead (measured 5x slower with 2
    threads on a busy 2-core machine). The caller's setting is restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _default_loader(task_dir: Path):
    try:
        from hyperzero.experts import load_expert
    except ImportError as e:  # pragma: no cover - only before the experts package is complete
        raise ImportError("hyperzero.experts.load_expert is not available; pass expert_loader=...") from e
    return load_expert(task_dir)


def collect_dataset(experts_dir: str | Path, out_dir: str | Path, n_episodes: int = 10, seed: int = 0,
                    context_names: Sequence[str] | None = None, exclude_flagged: bool = False, progress: bool = True,
                    gamma: float | None = None, expert_loader: Callable[[Path], Any] | None = None,
                    action_noise: float = 0.0) -> Path:
    """Fill the dataset `out_dir` with `n_episodes` deterministic episodes of every finished expert.

    With `action_noise` σ > 0 the executed actions carry Gaussian noise of std σ while the stored actions stay
    the expert's clean a* (and q* = Q(s, a*)): episodes that cover how the expert recovers from small errors
    (`record_episodes` says what this does to the TD relation).

    Episode seeds are fresh: `dataset_episode_seeds(seed, task_id, n_episodes)`, in a range disjoint
    from expert training/evaluation seeds, and recorded per task. Stored per step: obs, the expert's
    action a* = expert.act(obs), reward, next_obs, terminated, truncated, q* = expert.q(obs, a*)
    (Q1 of the online critic) and the truncated discounted return-to-go (with `gamma`).

    `gamma` defaults to the experts' own discount (`config.gamma` in their summary.json): q* comes from
    their critics, so the dataset's γ (and with it the TD loss of every fit) must be theirs. Experts
    with different discounts, or a `gamma` that differs from theirs, raise a DatasetError.

    Resumable: tasks already in `out_dir`'s manifest with an intact file are skipped, so rerunning
    after an interruption only collects the missing ones. Rerunning with another n_episodes, seed,
    exclude_flagged or context_names raises (use a new out_dir). Flagged experts are collected and marked, or, with
    `exclude_flagged=True`, listed in manifest["excluded_tasks"] and left out. Experts without
    `finished: true` are skipped with a warning. `expert_loader(task_dir)` defaults to
    `hyperzero.experts.load_expert`. Returns the dataset directory.
    """
    from hyperzero.envs import get_family
    from hyperzero.envs.context import context_id

    experts_dir, out_dir = Path(experts_dir), Path(out_dir)
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    if not 0.0 <= float(action_noise) <= 1.0:
        raise ValueError(f"action_noise must be in [0, 1] (a std on actions in [-1, 1]), got {action_noise}")
    loader = expert_loader or _default_loader
    finished, unfinished = _read_summaries(experts_dir)
    if unfinished:
        log.warning("%s: skipping %d unfinished expert(s): %s", experts_dir, len(unfinished), unfinished)
    if not finished:
        raise DatasetError(f"{experts_dir}: no finished experts (summary.json with finished: true); train them first")
    families = sorted({s["family"] for _, s in finished})
    if len(families) != 1:
        raise DatasetError(f"{experts_dir}: experts of several families {families}; a dataset holds one family")
    family = families[0]
    fam = get_family(family)
    space = fam.context_space
    tasks = []
    for task_dir, summary in finished:
        ctx = space.validate(summary["context"], allow_extrapolation=True)
        if context_id(ctx) != summary["task_id"]:
            raise DatasetError(f"{task_dir / 'summary.json'}: task_id {summary['task_id']!r} does not match its context "
                               f"{summary['context']} (id {context_id(ctx)!r})")
        tasks.append((task_dir, summary, ctx))
    names = list(context_names) if context_names else default_context_names(family, [t[2] for t in tasks])
    gamma = experts_gamma(experts_dir, [s for _, s, _ in tasks], gamma)

    writer = DatasetWriter(out_dir, family, names, gamma=gamma, overwrite=False)
    try:
        wanted = {"seed": int(seed), "n_episodes": int(n_episodes), "exclude_flagged": bool(exclude_flagged),
                  "action_noise": float(action_noise)}
        # datasets written before action_noise existed were collected without noise
        previous = {k: writer.manifest["collection"].get(k, 0.0 if k == "action_noise" else None) for k in wanted}
        if writer.task_ids and previous != wanted:
            raise DatasetError(f"{out_dir / 'manifest.json'}: this dataset was collected with {previous}, not {wanted}; "
                               f"rerun with the same values or collect into a new directory")
        writer.set_collection_info(**wanted, experts_dir=str(experts_dir), skipped_unfinished=unfinished)
        todo = []
        for task_dir, summary, ctx in tasks:
            if exclude_flagged and summary.get("flagged", False):
                writer.record_excluded(summary["task_id"], ctx, "flagged expert (exclude_flagged=True)")
            elif not writer.has_task(summary["task_id"]):
                todo.append((task_dir, summary, ctx))
        done_before = len(tasks) - len(todo)
        if done_before:
            log.info("%s: %d task(s) already collected or excluded, %d to go", out_dir, done_before, len(todo))
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc=f"collect {family}", unit="task")
        threads = _single_torch_thread() if todo else contextlib.nullcontext()
        with threads:
            _collect_tasks(todo, writer, loader, family, fam, space, seed, n_episodes, bar, float(action_noise))
        if bar is not None:
            bar.close()
        writer.finalize()
    finally:
        writer.close()
    return out_dir


def _collect_tasks(todo, writer: DatasetWriter, loader, family: str, fam, space, seed: int, n_episodes: int,
                   bar, action_noise: float = 0.0) -> None:
    """Roll each pending expert and add its task (one atomic task file + manifest update per task)."""
    for task_dir, summary, ctx in todo:
        task_id = summary["task_id"]
        if bar is not None:
            bar.set_postfix_str(task_id)
        expert = loader(task_dir)
        if getattr(expert, "family", family) != family or (
                getattr(expert, "context", None) is not None
                and space.validate(expert.context, allow_extrapolation=True) != ctx):
            raise DatasetError(f"{task_dir}: the loaded expert is for {getattr(expert, 'family', '?')} "
                               f"{getattr(expert, 'context', '?')}, but summary.json says {family} {ctx}")
        expert_seed = summary.get("seed")
        seeds = dataset_episode_seeds(seed, task_id, n_episodes,
                                      exclude=expert_episode_seeds(summary, fam.episode_steps))
        episodes = record_episodes(family, ctx, expert.act, n_episodes, seeds, q_fn=expert.q, batched=True,
                                   action_noise=action_noise)
        info = ExpertInfo(source=EXPERT_SOURCE, return_mean=summary.get("eval_return_mean"),
                          return_std=summary.get("eval_return_std"), train_steps=summary.get("train_steps"),
                          seed=expert_seed, flagged=bool(summary.get("flagged", False)),
                          sha256=fingerprint(task_dir / "expert.pt") if (task_dir / "expert.pt").is_file() else None)
        writer.add_task(ctx, episodes, ExpertInfo.from_dict(info.to_dict()))
        if bar is not None:
            bar.update(1)
