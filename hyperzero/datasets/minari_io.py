"""Export hyperzero rollout datasets to Minari, and import Minari datasets back (docs/dataset-format.md).

    from hyperzero.datasets.minari_io import export_minari, import_minari
    export_minari("runs/x/dataset", "hyperzero/cheetah-run/expert-v0")   # -> minari.MinariDataset
    import_minari("hyperzero/cheetah-run/expert-v0", "copy_of_dataset")  # -> hyperzero dataset directory

Layout chosen (one Minari dataset for the whole hyperzero dataset, every task in it):

* the Minari dataset's env is the registered `hyperzero/<family>-v0` (default context); each episode
  stores its reset `seed` and `options={"context": {...}}` (the task's full context), so
  `env.reset(seed=ep_seed, options=ep_options)` on `dataset.recover_environment()` starts exactly that
  episode (`ContextualEnv` switches task through `options["context"]`);
* per episode (Minari's own fields): `observations` [T+1, S] (obs[0..T-1] then the final next_obs),
  `actions` [T, A] (the expert's action labels, hyperzero's `action`), `rewards`, `terminations`,
  `truncations` [T];
* per step in `infos` (T+1 entries, entry t belongs to observation t as a Minari DataCollector records
  them): `q` (float32 q*_t = Q1(s_t, a*_t) of the expert's critic, NaN at the final observation and
  wherever the producer had no critic) and `context/<feature>` (float64, constant within an episode);
* episode metadata: `seed`, `options/context/<feature>`, `task_id`, `task_index`;
* dataset metadata (metadata.json): key `hyperzero` with the manifest's family, context_names,
  context_bounds, gamma, collection, excluded_tasks and, per task, its context, episode indices,
  episode seeds and expert metadata (`ExpertInfo`: source, return_mean, return_std, train_steps,
  seed, flagged, sha256).

`import_minari` rebuilds the dataset through `DatasetWriter` from that metadata. It also reads a Minari
dataset recorded on a `hyperzero/<family>-v0` env by other tools (no `hyperzero` metadata): the family
comes from the env spec, each episode's context from its reset options (else its `infos["context"]`,
else the env spec's `context`), `q` from `infos["q"]` when present, and every episode must have a reset
seed. `return_to_go` is not exported; the writer recomputes it on import.
"""
from __future__ import annotations

import os
import re
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from hyperzero.datasets.format import DatasetError, Episodes, ExpertInfo, load_dataset

METADATA_KEY = "hyperzero"     # key of the dataset-level metadata that export_minari writes
EXPORT_FORMAT = "hyperzero-rollouts-in-minari"
EXPORT_VERSION = 1


def _minari():
    try:
        import minari
    except ImportError as e:  # RuntimeError: the CLI prints it as one line
        raise RuntimeError(f"the Minari export needs the `minari` package with a storage backend ({e}); install it "
                           f"with: pip install 'hyperzero[minari]'  (or: pip install 'minari[hdf5]')") from None
    return minari


@contextmanager
def minari_datasets_path(path: str | os.PathLike | None) -> Iterator[None]:
    """Within the block Minari reads and writes datasets under `path` (MINARI_DATASETS_PATH); None: unchanged."""
    if path is None:
        yield
        return
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(Path(path).expanduser().resolve())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def default_dataset_id(family: str, dataset_dir: str | os.PathLike) -> str:
    """`hyperzero/<family>/<directory name>-v0`, the directory name reduced to Minari's characters."""
    name = re.sub(r"[^-_A-Za-z0-9]+", "_", Path(dataset_dir).resolve().name).strip("_-") or "dataset"
    return f"hyperzero/{family}/{name}-v0"


def _check_dataset_id(dataset_id: str) -> None:
    from minari.dataset.minari_dataset import DATASET_ID_RE

    match = DATASET_ID_RE.fullmatch(dataset_id) if isinstance(dataset_id, str) else None
    if match is None:
        raise ValueError(f"Minari dataset id {dataset_id!r} is malformed: use (namespace/)name-v<version> with "
                         f"letters, digits, '-' and '_' only, e.g. hyperzero/cheetah-run/expert-v0")
    if match.group("version") is None:
        raise ValueError(f"Minari dataset id {dataset_id!r} has no version; end it with -v0 (e.g. {dataset_id}-v0)")


def export_minari(dataset_dir: str | os.PathLike, dataset_id: str | None = None, *, data_format: str = "hdf5",
                  author: str | None = None, author_email: str | None = None, code_permalink: str | None = None,
                  description: str | None = None, algorithm_name: str | None = None, overwrite: bool = False,
                  allow_unfinalized: bool = False, minari_path: str | os.PathLike | None = None):
    """Write the hyperzero dataset at `dataset_dir` as ONE Minari dataset `dataset_id`; returns the MinariDataset.

    Every task and episode goes in (layout: this module's docstring, docs/dataset-format.md). The dataset is
    validated by `load_dataset` first. `dataset_id` defaults to `hyperzero/<family>/<directory name>-v0`.
    It is written under MINARI_DATASETS_PATH (default ~/.minari/datasets), or under `minari_path` if given.
    An existing Minari dataset of that id is refused unless `overwrite=True` (then it is deleted first).
    A failed export deletes what it wrote. `data_format`: Minari's storage, "hdf5" (needs h5py) or "arrow"
    (needs pyarrow). `algorithm_name` defaults to the experts' source(s), e.g. "hyperzero-td3"; author,
    author_email, code_permalink and description go into Minari's metadata as given.
    """
    minari = _minari()
    from minari.data_collector import EpisodeBuffer

    from hyperzero import __version__
    from hyperzero.envs import gym_id

    ds = load_dataset(dataset_dir, allow_unfinalized=allow_unfinalized)
    dataset_id = dataset_id or default_dataset_id(ds.family, dataset_dir)
    if algorithm_name is None:  # who produced the actions, e.g. "hyperzero-td3"
        algorithm_name = "+".join(sorted({t.expert.source for t in ds.tasks}))
    _check_dataset_id(dataset_id)
    with minari_datasets_path(minari_path):
        from minari.storage.datasets_root_dir import get_dataset_path

        if get_dataset_path(dataset_id).exists():
            if not overwrite:
                raise ValueError(f"a Minari dataset {dataset_id!r} already exists at {get_dataset_path(dataset_id)}; "
                                 f"pass overwrite=True (CLI: --overwrite) to replace it, or choose another id/version")
            minari.delete_dataset(dataset_id)
        try:
            with warnings.catch_warnings():  # Minari nags about a missing author / code link; they are optional here
                warnings.filterwarnings("ignore", message=r"`(code_permalink|author|author_email|algorithm_name|"
                                                          r"eval_env)` is set to None")
                out = minari.create_dataset_from_buffers(
                    dataset_id, [], env=gym_id(ds.family), algorithm_name=algorithm_name, author=author,
                    author_email=author_email, code_permalink=code_permalink,
                    description=description or (f"hyperzero rollouts of {ds.family} over {len(ds.tasks)} contexts "
                                                f"(varied: {', '.join(ds.context_names)}); per-episode context in the "
                                                f"reset options, expert metadata under metadata['{METADATA_KEY}']"),
                    data_format=data_format, requirements=[f"hyperzero>={__version__}"])
            tasks_meta = []
            index = 0
            for k, task in enumerate(ds.tasks):
                E, T = task.n_episodes, task.episode_length
                q_ext = np.full((E, T + 1), np.nan, dtype=np.float32)
                q_ext[:, :T] = task.q
                buffers = []
                for e in range(E):
                    buffers.append(EpisodeBuffer(
                        seed=int(task.episode_seed[e]),
                        options={"context": {n: float(v) for n, v in task.context.items()}},
                        observations=np.concatenate([task.obs[e], task.next_obs[e, -1:]], axis=0),
                        actions=np.ascontiguousarray(task.action[e]),
                        rewards=np.ascontiguousarray(task.reward[e]),
                        terminations=np.ascontiguousarray(task.terminated[e]),
                        truncations=np.ascontiguousarray(task.truncated[e]),
                        infos={"q": q_ext[e], "context": {n: np.full(T + 1, float(v), dtype=np.float64)
                                                          for n, v in task.context.items()}}))
                out.update_dataset_from_buffer(buffers)
                indices = list(range(index, index + E))
                out.storage.update_episode_metadata([{"task_id": task.task_id, "task_index": k} for _ in indices],
                                                    indices)
                index += E
                tasks_meta.append({
                    "task_id": task.task_id, "context": {n: float(v) for n, v in task.context.items()},
                    "context_vector": [float(v) for v in task.context_vector], "episode_indices": indices,
                    "episode_seeds": [int(s) for s in task.episode_seed], "episode_length": T,
                    "has_q": task.has_q, "expert": task.expert.to_dict()})
            m = ds.manifest
            out.storage.update_metadata({METADATA_KEY: {
                "format": EXPORT_FORMAT, "export_version": EXPORT_VERSION, "format_version": m["format_version"],
                "hyperzero_version": __version__, "family": ds.family, "gym_id": gym_id(ds.family),
                "context_names": list(ds.context_names), "context_bounds": m.get("context_bounds"),
                "gamma": ds.gamma, "obs_dim": ds.obs_dim, "act_dim": ds.act_dim,
                "finalized": bool(m.get("finalized", False)), "collection": m.get("collection", {}),
                "excluded_tasks": m.get("excluded_tasks", []), "source_versions": m.get("versions", {}),
                "tasks": tasks_meta}})
        except BaseException:  # leave no half-written Minari dataset behind
            shutil.rmtree(get_dataset_path(dataset_id), ignore_errors=True)
            raise
        return minari.load_dataset(dataset_id)


# ----------------------------------------------------------------------------------------------------------------
def _open(dataset: Any):
    minari = _minari()
    if isinstance(dataset, minari.MinariDataset):
        return dataset
    if isinstance(dataset, (str, os.PathLike)):
        path = Path(dataset)
        if path.is_dir():  # a dataset folder itself (its data/ holds metadata.json)
            data = path / "data" if (path / "data" / "metadata.json").is_file() else path
            return minari.MinariDataset(data)
        try:
            return minari.load_dataset(str(dataset))
        except FileNotFoundError as e:
            raise ValueError(f"no local Minari dataset {str(dataset)!r} ({e}); check the id and MINARI_DATASETS_PATH "
                             f"(list them with `minari list local`)") from None
    raise TypeError(f"dataset must be a Minari dataset id, a path or a minari.MinariDataset, got {type(dataset).__name__}")


def _family_from_spec(spec) -> str | None:
    if spec is None:
        return None
    if isinstance(spec.kwargs, Mapping) and isinstance(spec.kwargs.get("family"), str):
        return spec.kwargs["family"]
    m = re.fullmatch(r"hyperzero/(.+)-v\d+", spec.id or "")
    return m.group(1) if m else None


def _scalar_context(value: Any) -> dict[str, float] | None:
    """A context from reset options / infos: {name: number or per-step array}; arrays give their first entry."""
    if not isinstance(value, Mapping) or not value:
        return None
    return {str(k): float(np.asarray(v).reshape(-1)[0]) for k, v in value.items()}


def import_minari(dataset: Any, out_dir: str | os.PathLike, *, family: str | None = None,
                  context_names: Sequence[str] | None = None, gamma: float | None = None,
                  expert_source: str = "minari", overwrite: bool = False,
                  minari_path: str | os.PathLike | None = None) -> Path:
    """Write the Minari dataset `dataset` (an id, a dataset folder, or a MinariDataset) as a hyperzero dataset.

    A dataset written by `export_minari` comes back exactly: the same tasks in the same order, arrays, contexts,
    context_names, gamma, episode seeds, expert metadata, collection info and excluded tasks. Any other Minari
    dataset of a `hyperzero/<family>-v0` env is read as described in this module's docstring; `family`,
    `context_names` (default: the features that differ across its contexts) and `gamma` (default 0.99) then
    fill what it lacks, and each task's expert is `ExpertInfo(source=expert_source)`.
    The write goes through `DatasetWriter` (validated, atomic, resumable: rerunning an interrupted import keeps
    the tasks already written). Returns `out_dir`.
    """
    from hyperzero.datasets.collect import default_context_names
    from hyperzero.datasets.writer import DatasetWriter
    from hyperzero.envs import get_family
    from hyperzero.envs.context import context_id

    with minari_datasets_path(minari_path):
        mds = _open(dataset)
        storage = mds.storage
        meta = storage.metadata
        hz = meta.get(METADATA_KEY)
        where = f"Minari dataset {meta.get('dataset_id', dataset)!r}"
        indices = [int(i) for i in mds.episode_indices]
        ep_meta = dict(zip(indices, storage.get_episode_metadata(indices)))

        if isinstance(hz, Mapping):
            fam_name = hz["family"]
            if family is not None and family != fam_name:
                raise ValueError(f"{where} holds family {fam_name!r}, not {family!r}")
            names = list(hz["context_names"]) if context_names is None else list(context_names)
            gamma = float(hz["gamma"]) if gamma is None else float(gamma)
            groups = [(t["task_id"], dict(t["context"]), [int(i) for i in t["episode_indices"]],
                       ExpertInfo.from_dict(t["expert"])) for t in hz["tasks"]]
            collection, excluded = dict(hz.get("collection") or {}), list(hz.get("excluded_tasks") or [])
        else:
            fam_name = family or _family_from_spec(mds.env_spec)
            if fam_name is None:
                raise ValueError(f"{where} was not recorded on a hyperzero env (its env spec is {mds.env_spec}); "
                                 f"pass family= (CLI: --family) to say which hyperzero family its data come from")
            space = get_family(fam_name).context_space
            spec_ctx = mds.env_spec.kwargs.get("context") if mds.env_spec is not None else None
            by_task: dict[str, tuple[dict, list[int]]] = {}
            for i, episode in zip(indices, mds.iterate_episodes(indices)):
                options = ep_meta[i].get("options") or {}
                ctx = (_scalar_context(options.get("context")) or _scalar_context((episode.infos or {}).get("context"))
                       or _scalar_context(spec_ctx) or {})
                try:
                    full = space.validate(ctx, allow_extrapolation=True)
                except ValueError as e:
                    raise ValueError(f"{where}: episode {i}: {e}") from None
                by_task.setdefault(context_id(full), (full, []))[1].append(i)
            names = list(context_names) if context_names is not None else default_context_names(
                fam_name, [c for c, _ in by_task.values()])
            gamma = 0.99 if gamma is None else float(gamma)
            groups = [(tid, c, idx, ExpertInfo(source=expert_source)) for tid, (c, idx) in by_task.items()]
            collection, excluded = {}, []

        fam = get_family(fam_name)
        S, A = int(fam.obs_dim), int(fam.act_dim)
        if tuple(mds.observation_space.shape or ()) != (S,) or tuple(mds.action_space.shape or ()) != (A,):
            raise DatasetError(f"{where}: observation/action spaces {mds.observation_space} / {mds.action_space} are "
                               f"not {fam_name}'s flat ({S},) / ({A},) boxes")
        writer = DatasetWriter(out_dir, fam_name, names, gamma, overwrite=overwrite)
        try:
            if collection:
                writer.set_collection_info(**collection)
            for tid, ctx, idx, expert in groups:
                if writer.has_task(tid):  # an interrupted import, rerun: the task is already written
                    continue
                writer.add_task(ctx, _episodes(mds, idx, ep_meta, where), expert)
            for e in excluded:
                writer.record_excluded(e["task_id"], e.get("context", {}), e.get("reason", ""))
            writer.finalize()
        finally:
            writer.close()
    return Path(out_dir)


def _episodes(mds, idx: list[int], ep_meta: Mapping[int, dict], where: str) -> Episodes:
    obs, act, rew, term, trunc, q, seeds = [], [], [], [], [], [], []
    for i, ep in zip(idx, mds.iterate_episodes(idx)):
        o = np.asarray(ep.observations, dtype=np.float32)
        T = len(ep.rewards)
        if o.ndim != 2 or o.shape[0] != T + 1:
            raise DatasetError(f"{where}: episode {i} has observations of shape {o.shape} for {T} steps; a Minari "
                               f"episode stores T+1 observations (the last is the final next observation)")
        seed = ep_meta[i].get("seed")
        if seed is None:
            raise DatasetError(f"{where}: episode {i} has no reset seed; a hyperzero dataset stores the seed each "
                               f"episode was reset with (record them: env.reset(seed=...) under the DataCollector)")
        seeds.append(int(seed))
        obs.append(o)
        act.append(np.asarray(ep.actions, dtype=np.float32))
        rew.append(np.asarray(ep.rewards, dtype=np.float32))
        term.append(np.asarray(ep.terminations, dtype=bool))
        trunc.append(np.asarray(ep.truncations, dtype=bool))
        qi = (ep.infos or {}).get("q")
        q.append(None if qi is None else np.asarray(qi, dtype=np.float32).reshape(-1)[:T])
    lengths = sorted({len(r) for r in rew})
    if len(lengths) > 1:
        raise DatasetError(f"{where}: the episodes of one context have different lengths {lengths}; a hyperzero "
                           f"task stores equal-length episodes (the dm_control families end only at the time limit)")
    o = np.stack(obs)
    return Episodes(obs=o[:, :-1].copy(), action=np.stack(act), reward=np.stack(rew), next_obs=o[:, 1:].copy(),
                    terminated=np.stack(term), truncated=np.stack(trunc), episode_seed=np.asarray(seeds, np.int64),
                    q=None if any(x is None for x in q) else np.stack(q))
