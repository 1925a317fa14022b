"""collect_dataset with real (tiny) TD3 experts trained by hyperzero.experts."""
import json
import shutil

import numpy as np
import pytest

from hyperzero.datasets import DATASET_SEED_RANGE, DatasetError, collect_dataset, load_dataset
from hyperzero.datasets.collect import default_context_names, expert_episode_seeds
from hyperzero.experts import TD3Config, load_expert, train_experts
from hyperzero.utils.io import atomic_write_json

FAMILY = "cheetah-run"
SPEEDS = (-2.0, 1.0, 3.0)


@pytest.fixture(scope="module")
def experts_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("experts")
    cfg = TD3Config(train_steps=200, seed_steps=100, random_steps=100, max_episode_steps=100, eval_every=0,
                    eval_episodes=1, checkpoint_every=0, hidden_sizes=(16,), batch_size=16, device="cpu",
                    torch_threads=1)
    train_experts(FAMILY, [{"speed": v} for v in SPEEDS], d, cfg, num_workers=1, progress=False, gate=None)
    # the quality gate flagged one expert (as train_experts does with --quality-threshold)
    summary_path = d / "speed=1_torso_length=0.5" / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["flagged"] = True
    atomic_write_json(summary_path, summary)  # through hyperzero's writer: a hand edit would fail its checksum
    (d / "speed=5_torso_length=0.5").mkdir()  # a task whose training never finished: no summary.json
    return d


@pytest.fixture(scope="module")
def collected(experts_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("collected") / "dataset"
    assert collect_dataset(experts_dir, out, n_episodes=2, seed=5, progress=False) == out
    return out


def test_collect_stores_the_experts_actions_and_q(experts_dir, collected):
    ds = load_dataset(collected)
    assert ds.family == FAMILY and ds.context_names == ["speed"] and ds.gamma == 0.99
    assert sorted(ds.task_ids) == sorted(f"speed={v:g}_torso_length=0.5" for v in SPEEDS)  # unfinished skipped
    assert ds.has_q
    for task in ds.tasks:
        expert = load_expert(experts_dir / task.task_id)
        flat = task.transitions()
        # the dataset's actions came from single-row forward passes, these from one batched matmul: kernels
        # may sum in another order (seen: 1.6e-6 apart on AVX2), so the tolerance allows fp32 reassociation
        np.testing.assert_allclose(flat["action"], expert.act(flat["obs"]), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(flat["q"], expert.q(flat["obs"], flat["action"]), rtol=1e-5, atol=1e-5)
        assert task.n_episodes == 2 and task.episode_length == 1000  # the family's full episodes
        assert task.truncated[:, -1].all() and not task.terminated.any()
        np.testing.assert_array_equal(task.context_vector, [task.context["speed"]])
        summary = json.loads((experts_dir / task.task_id / "summary.json").read_text())
        assert task.expert.source == "hyperzero-td3" and task.expert.seed == summary["seed"] == 2
        assert task.expert.return_mean == summary["eval_return_mean"]
        assert task.expert.train_steps == 200 and task.expert.flagged == summary["flagged"]
        # fresh seeds: in the dataset range, distinct, never one the expert trained or was evaluated on
        seeds = task.episode_seed.tolist()
        assert len(set(seeds)) == 2 and all(DATASET_SEED_RANGE[0] <= s < DATASET_SEED_RANGE[1] for s in seeds)
        assert not set(seeds) & expert_episode_seeds(summary, 1000)
        assert ds.manifest["tasks"][ds.task_ids.index(task.task_id)]["episode_seeds"] == seeds
    all_seeds = np.concatenate([t.episode_seed for t in ds.tasks])
    assert len(set(all_seeds.tolist())) == len(all_seeds)  # tasks do not share start states
    flagged = [t.task_id for t in ds.tasks if t.expert.flagged]
    assert flagged == ["speed=1_torso_length=0.5"]
    assert ds.manifest["collection"]["skipped_unfinished"] == ["speed=5_torso_length=0.5"]
    assert ds.manifest["collection"]["seed"] == 5


def test_collect_is_deterministic_and_resumes(experts_dir, collected, tmp_path):
    out = tmp_path / "ds"
    calls = []

    def crashing_loader(task_dir):
        calls.append(task_dir.name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user pressed Ctrl-C while the second task was being collected
        return load_expert(task_dir)

    with pytest.raises(KeyboardInterrupt):
        collect_dataset(experts_dir, out, n_episodes=2, seed=5, progress=False, expert_loader=crashing_loader)
    partial = load_dataset(out, allow_unfinalized=True)
    assert partial.task_ids == [calls[0]]
    calls.clear()
    collect_dataset(experts_dir, out, n_episodes=2, seed=5, progress=False,
                    expert_loader=lambda d: calls.append(d.name) or load_expert(d))
    assert len(calls) == 2 and partial.task_ids[0] not in calls  # the finished task was not redone
    # the resumed dataset is byte-identical to the uninterrupted one
    sha = {e["task_id"]: e["sha256"] for e in json.loads((out / "manifest.json").read_text())["tasks"]}
    ref = {e["task_id"]: e["sha256"] for e in json.loads((collected / "manifest.json").read_text())["tasks"]}
    assert sha == ref
    # a complete dataset is not recollected; other settings are refused instead of mixed in
    calls.clear()
    collect_dataset(experts_dir, out, n_episodes=2, seed=5, progress=False,
                    expert_loader=lambda d: calls.append(d.name) or load_expert(d))
    assert calls == []
    with pytest.raises(DatasetError, match="collected with .*'seed': 5.*not .*'seed': 6"):
        collect_dataset(experts_dir, out, n_episodes=2, seed=6, progress=False)
    with pytest.raises(DatasetError, match="'exclude_flagged': True"):
        collect_dataset(experts_dir, out, n_episodes=2, seed=5, exclude_flagged=True, progress=False)
    assert load_dataset(out).task_ids == list(ref)  # a refused rerun leaves the dataset as it was


def test_another_seed_gives_other_episodes(experts_dir, collected, tmp_path):
    collect_dataset(experts_dir, tmp_path / "ds", n_episodes=1, seed=6, progress=False)
    a, b = load_dataset(collected), load_dataset(tmp_path / "ds")
    ta, tb = a.task(a.task_ids[0]), b.task(a.task_ids[0])
    assert ta.episode_seed[0] != tb.episode_seed[0]
    assert not np.allclose(ta.obs[0, 0], tb.obs[0, 0])


def test_exclude_flagged_and_context_names(experts_dir, tmp_path):
    out = tmp_path / "ds"
    collect_dataset(experts_dir, out, n_episodes=1, seed=5, progress=False, exclude_flagged=True,
                    context_names=["speed", "torso_length"])
    ds = load_dataset(out)
    assert "speed=1_torso_length=0.5" not in ds.task_ids and len(ds) == 2
    assert ds.context_names == ["speed", "torso_length"] and ds.tasks[0].context_vector.shape == (2,)
    excluded = ds.manifest["excluded_tasks"]
    assert [e["task_id"] for e in excluded] == ["speed=1_torso_length=0.5"] and "flagged" in excluded[0]["reason"]


def test_default_context_names():
    assert default_context_names(FAMILY, [{"speed": 1.0}, {"speed": 2.0}]) == ["speed"]
    assert default_context_names(FAMILY, [{"speed": 1.0, "torso_length": 0.3},
                                          {"speed": 1.0, "torso_length": 0.6}]) == ["torso_length"]
    assert default_context_names(FAMILY, [{"speed": 1.0}]) == ["speed", "torso_length"]  # nothing varies
    assert default_context_names(FAMILY, [{"speed": 1.0, "gravity": 9.0}]) == ["speed", "torso_length", "gravity"]


def test_collect_errors(experts_dir, tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        collect_dataset(tmp_path / "nope", tmp_path / "ds", progress=False)
    broken = tmp_path / "experts"
    shutil.copytree(experts_dir / "speed=3_torso_length=0.5", broken / "speed=3_torso_length=0.5")
    (broken / "speed=3_torso_length=0.5" / "summary.json").write_text("{")
    with pytest.raises(DatasetError, match=r"speed=3_torso_length=0.5/summary.json: not valid JSON"):
        collect_dataset(broken, tmp_path / "ds", progress=False)
    atomic_write_json(broken / "speed=3_torso_length=0.5" / "summary.json",
                      {"task_id": "speed=3_torso_length=0.5", "family": FAMILY, "context": {"speed": 4.0}, "finished": True})
    with pytest.raises(DatasetError, match="does not match its context"):
        collect_dataset(broken, tmp_path / "ds", progress=False)


def test_action_noise_leaves_the_expert_path_but_keeps_its_labels(experts_dir, collected, tmp_path):
    """DART-style data: executed actions are perturbed, stored actions and q* are the expert's clean ones."""
    out = tmp_path / "noisy"
    collect_dataset(experts_dir, out, n_episodes=2, seed=5, progress=False, action_noise=0.3)
    clean, noisy = load_dataset(collected), load_dataset(out)
    assert noisy.manifest["collection"]["action_noise"] == 0.3
    for task in noisy.tasks:
        expert = load_expert(experts_dir / task.task_id)
        flat = task.transitions()
        np.testing.assert_allclose(flat["action"], expert.act(flat["obs"]), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(flat["q"], expert.q(flat["obs"], flat["action"]), rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(task.next_obs[:, :-1], task.obs[:, 1:])  # still one trajectory per episode
        ref = clean.task(task.task_id)
        np.testing.assert_array_equal(task.episode_seed, ref.episode_seed)  # same start states ...
        np.testing.assert_array_equal(task.obs[:, 0], ref.obs[:, 0])
        assert not np.allclose(task.obs[:, 1:], ref.obs[:, 1:])          # ... then off the expert's path
    again = tmp_path / "again"
    collect_dataset(experts_dir, again, n_episodes=2, seed=5, progress=False, action_noise=0.3)
    assert ([e["sha256"] for e in json.loads((again / "manifest.json").read_text())["tasks"]]
            == [e["sha256"] for e in json.loads((out / "manifest.json").read_text())["tasks"]])  # reproducible
    with pytest.raises(DatasetError, match="'action_noise': 0.3.*not .*'action_noise': 0.1"):
        collect_dataset(experts_dir, out, n_episodes=2, seed=5, progress=False, action_noise=0.1)
    with pytest.raises(ValueError, match="action_noise must be in"):
        collect_dataset(experts_dir, tmp_path / "bad", n_episodes=1, action_noise=-0.1, progress=False)
