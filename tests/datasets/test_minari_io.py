"""Minari export/import of rollout datasets, with the real `minari` package (hyperzero.datasets.minari_io)."""
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

minari = pytest.importorskip("minari")
pytest.importorskip("h5py")

from hyperzero.cli import main  # noqa: E402
from hyperzero.datasets import DatasetWriter, load_dataset, record_episodes  # noqa: E402
from hyperzero.datasets.minari_io import METADATA_KEY, export_minari, import_minari  # noqa: E402

FAMILY = "cheetah-run"
CONTEXTS = [{"speed": 2.0, "torso_length": 0.6}, {"speed": -3.0, "torso_length": 0.6}]
EXPERTS = [
    {"source": "stable-baselines3", "return_mean": 512.5, "return_std": 3.25, "train_steps": 100_000, "seed": 7,
     "flagged": False, "sha256": "ab" * 32},
    {"source": "stable-baselines3", "return_mean": 40.0, "return_std": None, "train_steps": 5_000, "seed": None,
     "flagged": True, "sha256": None},
]
ARRAYS = ("obs", "action", "reward", "next_obs", "terminated", "truncated", "return_to_go", "episode_seed",
          "context_vector")


def _policy(seed):
    rng = np.random.default_rng(seed)
    return lambda obs: rng.uniform(-1, 1, 6)


def write_small_dataset(path: Path) -> Path:
    """2 cheetah-run tasks x 2 whole episodes (1000 steps) of a random policy; task 0 with a q, task 1 without."""
    writer = DatasetWriter(path, FAMILY, context_names=["speed"], gamma=0.98)
    writer.set_collection_info(seed=5, n_episodes=2, experts_dir="experts", exclude_flagged=False)
    for i, (ctx, expert) in enumerate(zip(CONTEXTS, EXPERTS)):
        q_fn = (lambda o, a: o.sum(-1) + a.sum(-1)) if i == 0 else None
        eps = record_episodes(FAMILY, ctx, _policy(i), n_episodes=2, seeds=[1_000 + 2 * i, 1_001 + 2 * i], q_fn=q_fn)
        writer.add_task(ctx, eps, expert)
    writer.record_excluded("speed=5_torso_length=0.6", {"speed": 5.0, "torso_length": 0.6}, "flagged expert")
    writer.finalize()
    return path


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    return write_small_dataset(tmp_path_factory.mktemp("hz") / "dataset")


@pytest.fixture(autouse=True)
def minari_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path / "minari"


def assert_same_dataset(a_dir, b_dir):
    a, b = load_dataset(a_dir), load_dataset(b_dir)
    assert (a.family, a.context_names, a.gamma, a.obs_dim, a.act_dim) == (b.family, b.context_names, b.gamma,
                                                                           b.obs_dim, b.act_dim)
    assert a.task_ids == b.task_ids
    for ta, tb in zip(a.tasks, b.tasks):
        for name in ARRAYS:
            x, y = getattr(ta, name), getattr(tb, name)
            assert x.dtype == y.dtype and np.array_equal(x, y), (ta.task_id, name)
        assert np.array_equal(ta.q, tb.q, equal_nan=True)
        assert ta.context == tb.context and ta.expert == tb.expert
    ma, mb = a.manifest, b.manifest
    for key in ("context_names", "context_bounds", "gamma", "obs_dim", "act_dim", "finalized", "collection",
                "excluded_tasks", "n_tasks", "format_version"):
        assert ma[key] == mb[key], key
    for ea, eb in zip(ma["tasks"], mb["tasks"]):  # the file's sha256 differs only by the zip timestamps
        assert {k: v for k, v in ea.items() if k != "sha256"} == {k: v for k, v in eb.items() if k != "sha256"}


def test_round_trip_equals_the_original(small_dataset, tmp_path):
    mds = export_minari(small_dataset, "hyperzero/cheetah-run/test-v0")
    original = load_dataset(small_dataset)
    assert mds.total_episodes == 4 and mds.total_steps == 4000
    assert mds.env_spec.id == "hyperzero/cheetah-run-v0" and mds.env_spec.max_episode_steps == 1000
    assert mds.storage.metadata["algorithm_name"] == "stable-baselines3"

    # Minari's own view: T+1 observations, the expert's labels as actions, q* and the context in infos
    task = original.tasks[0]
    ep = mds[1]
    assert ep.observations.shape == (1001, 17) and ep.actions.shape == (1000, 6)
    np.testing.assert_array_equal(ep.observations[:-1], task.obs[1])
    np.testing.assert_array_equal(ep.observations[-1], task.next_obs[1, -1])
    np.testing.assert_array_equal(ep.actions, task.action[1])
    np.testing.assert_array_equal(ep.rewards, task.reward[1])
    assert ep.truncations[-1] and not ep.terminations.any() and not ep.truncations[:-1].any()
    np.testing.assert_array_equal(ep.infos["q"][:-1], task.q[1])
    assert np.isnan(ep.infos["q"][-1]) and np.isnan(mds[2].infos["q"]).all()  # task 1 had no critic
    np.testing.assert_array_equal(ep.infos["context"]["speed"], np.full(1001, 2.0))
    metas = list(mds.storage.get_episode_metadata(range(4)))
    assert [m["seed"] for m in metas] == [1000, 1001, 1002, 1003]
    assert [m["task_id"] for m in metas] == [original.tasks[0].task_id] * 2 + [original.tasks[1].task_id] * 2
    assert {k: float(v) for k, v in metas[2]["options"]["context"].items()} == CONTEXTS[1]
    hz = mds.storage.metadata[METADATA_KEY]
    assert hz["family"] == FAMILY and hz["context_names"] == ["speed"] and hz["gamma"] == 0.98
    assert [t["expert"] for t in hz["tasks"]] == EXPERTS
    assert [t["episode_indices"] for t in hz["tasks"]] == [[0, 1], [2, 3]]

    # the recovered env replays an episode from its stored seed and options
    env = mds.recover_environment()
    obs, info = env.reset(seed=metas[2]["seed"], options=metas[2]["options"])
    assert info["context"] == CONTEXTS[1]
    np.testing.assert_array_equal(obs, mds[2].observations[0])
    obs, reward, *_ = env.step(mds[2].actions[0])
    np.testing.assert_array_equal(obs, mds[2].observations[1])
    assert reward == pytest.approx(float(mds[2].rewards[0]), abs=1e-6)

    out = import_minari("hyperzero/cheetah-run/test-v0", tmp_path / "back")
    assert_same_dataset(small_dataset, out)


def test_existing_id_is_refused_then_overwritten(small_dataset):
    export_minari(small_dataset, "hz-small-v1")
    with pytest.raises(ValueError, match="already exists.*overwrite"):
        export_minari(small_dataset, "hz-small-v1")
    assert export_minari(small_dataset, "hz-small-v1", overwrite=True).total_episodes == 4
    with pytest.raises(ValueError, match="no version"):
        export_minari(small_dataset, "hz-small")
    with pytest.raises(ValueError, match="malformed"):
        export_minari(small_dataset, "speed=2-v0")


def test_default_id_and_minari_path(small_dataset, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    mds = export_minari(small_dataset, minari_path=elsewhere)
    assert mds.id == "hyperzero/cheetah-run/dataset-v0"
    assert (elsewhere / "hyperzero" / "cheetah-run" / "dataset-v0" / "data" / "metadata.json").is_file()
    # a dataset folder can be imported by its path, wherever it is
    out = import_minari(elsewhere / "hyperzero" / "cheetah-run" / "dataset-v0", tmp_path / "back")
    assert_same_dataset(small_dataset, out)


def test_import_resumes_an_interrupted_import(small_dataset, tmp_path):
    export_minari(small_dataset, "hz-resume-v0")
    out = tmp_path / "back"
    original = load_dataset(small_dataset)
    writer = DatasetWriter(out, FAMILY, ["speed"], gamma=0.98)  # as if killed after the first task
    t = original.tasks[0]
    writer.add_task(t.context, {k: getattr(t, k) for k in ("obs", "action", "reward", "next_obs", "terminated",
                                                           "truncated", "episode_seed", "q")}, t.expert)
    writer.close()
    import_minari("hz-resume-v0", out)
    assert_same_dataset(small_dataset, out)


def _foreign_dataset(dataset_id, seeds=True):
    """A Minari dataset as another tool would record it on hyperzero envs: no hyperzero metadata, no q."""
    import gymnasium as gym
    from minari.data_collector import EpisodeBuffer

    import hyperzero.envs  # noqa: F401

    env = gym.make("hyperzero/cheetah-run-v0", max_episode_steps=50)
    buffers = []
    for k, ctx in enumerate([{"speed": 4.0}, {"speed": 4.0}, {"speed": -1.5}]):
        obs, _ = env.reset(seed=100 + k, options={"context": ctx})
        rng = np.random.default_rng(k)
        o, a, r, te, tr = [obs], [], [], [], []
        for _ in range(50):
            act = rng.uniform(-1, 1, 6).astype(np.float32)
            obs, rew, term, trunc, _ = env.step(act)
            o.append(obs), a.append(act), r.append(rew), te.append(term), tr.append(trunc)
        buffers.append(EpisodeBuffer(seed=100 + k if seeds else None, options={"context": ctx},
                                     observations=np.stack(o), actions=np.stack(a), rewards=np.asarray(r),
                                     terminations=np.asarray(te), truncations=np.asarray(tr)))
    return minari.create_dataset_from_buffers(dataset_id, buffers, env=env.spec, eval_env=env.spec,
                                              algorithm_name="random", author="someone", author_email="a@b.c",
                                              code_permalink="https://example.org", description="random rollouts")


def test_import_a_dataset_recorded_by_another_tool(tmp_path):
    mds = _foreign_dataset("other/cheetah-random-v0")
    out = import_minari("other/cheetah-random-v0", tmp_path / "imported")
    ds = load_dataset(out)
    assert ds.family == FAMILY and ds.context_names == ["speed"] and ds.gamma == 0.99
    assert [t.context["speed"] for t in ds.tasks] == [4.0, -1.5]
    first = ds.tasks[0]
    assert first.obs.shape == (2, 50, 17) and first.episode_seed.tolist() == [100, 101]
    assert np.isnan(first.q).all() and first.expert.source == "minari"
    np.testing.assert_array_equal(first.action[1], mds[1].actions)
    np.testing.assert_array_equal(first.next_obs[1, -1], mds[1].observations[-1])
    assert first.truncated[:, -1].all()  # the TimeLimit of max_episode_steps=50


def test_import_refuses_episodes_without_a_seed(tmp_path):
    _foreign_dataset("other/no-seeds-v0", seeds=False)
    with pytest.raises(ValueError, match="no reset seed"):
        import_minari("other/no-seeds-v0", tmp_path / "imported")
    with pytest.raises(ValueError, match="no local Minari dataset"):
        import_minari("other/absent-v0", tmp_path / "x")


def test_cli_export_and_import(small_dataset, tmp_path, capsys):
    store = tmp_path / "store"
    assert main(["dataset", "export-minari", str(small_dataset), "--dataset-id", "hz/cli-v0",
                 "--minari-path", str(store), "--author", "me"]) == 0
    assert "exported 2 tasks, 4 episodes, 4000 steps" in capsys.readouterr().out
    assert main(["dataset", "export-minari", str(small_dataset), "--dataset-id", "hz/cli-v0",
                 "--minari-path", str(store)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["dataset", "import-minari", "hz/cli-v0", "--out", str(tmp_path / "back"),
                 "--minari-path", str(store)]) == 0
    assert "imported 2 tasks of cheetah-run" in capsys.readouterr().out
    assert_same_dataset(small_dataset, tmp_path / "back")


def test_cli_options_have_help():
    from hyperzero.cli import build_parser

    parser = build_parser()
    group = parser._subparsers._group_actions[0].choices["dataset"]
    for name, sub in group._subparsers._group_actions[0].choices.items():
        for action in sub._actions:
            if action.dest not in ("help",):
                assert action.help, f"dataset {name}: {action.dest} has no help"


def _doc_section(text: str, heading: str) -> str:
    start = text.index(heading)
    nxt = re.search(r"^## ", text[start + len(heading):], flags=re.M)
    return text[start: start + len(heading) + nxt.start()] if nxt else text[start:]


def test_docs_minari_section_runs(small_dataset, tmp_path, monkeypatch, capsys):
    """Every command of the Minari section of docs/dataset-format.md, as written there."""
    import shutil

    doc = (Path(__file__).resolve().parents[2] / "docs" / "dataset-format.md").read_text()
    section = _doc_section(doc, "## Minari export and import")
    monkeypatch.chdir(tmp_path)
    shutil.copytree(small_dataset, tmp_path / "my_dataset")
    blocks = re.findall(r"```(python|bash)\n(.*?)```", section, flags=re.S)
    assert [kind for kind, _ in blocks].count("python") >= 1 and [kind for kind, _ in blocks].count("bash") >= 1
    for kind, code in blocks:  # relative paths: everything lands in tmp_path
        if kind == "python":
            exec(compile(code, "docs/dataset-format.md", "exec"), {"__name__": "__docs__"})
            continue
        for line in code.strip().splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            argv = shlex.split(line, comments=True)
            assert argv[0] == "hyperzero", line
            assert main(argv[1:]) == 0, line
    capsys.readouterr()
    assert_same_dataset(tmp_path / "my_dataset", tmp_path / "my_dataset_again")
    assert_same_dataset(tmp_path / "my_dataset", tmp_path / "my_dataset_copy")
