"""Chains along the context grid: anchors from scratch, then waves of experts warm-started from their nearest
finished expert of the same direction; recorded, reproducible on a redo, resumable after a kill mid-wave."""
import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from hyperzero.envs import context_id, get_family
from hyperzero.experts import ChainConfig, train_experts
from hyperzero.experts.chain import CHAIN, choose_anchors, grid_neighbours, plan_chain
from hyperzero.experts.gate import GateConfig
from hyperzero.experts.sweep import PLAN, plan_tasks
from hyperzero.experts.trainer import CHECKPOINT, GroupTrainer
from hyperzero.utils.io import read_json

from .helpers import tiny

# 4 forward speeds and 2 backward ones; -1's nearest task overall is +1, a forward gait it must never start from
SPEEDS = [-4.0, -1.0, 1.0, 2.0, 3.0, 4.0]
CONTEXTS = [{"speed": s} for s in SPEEDS]
CFG = tiny(train_steps=300, eval_every=0)
CHAIN_CFG = ChainConfig(enabled=True, anchors=1, steps=200)


def tid(speed: float) -> str:
    return context_id(get_family("cheetah-run").context_space.validate({"speed": speed}))


def _train(out: Path, **kw):
    return train_experts("cheetah-run", CONTEXTS, out, CFG, ensemble_size=2, num_workers=1,
                         gate=GateConfig(max_retries=0), chain=CHAIN_CFG, progress=False, **kw)


def _hashes(out: Path) -> dict[str, str]:
    return {p.parent.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*/expert.pt"))}


def test_anchors_and_waves_follow_the_grid_within_each_direction(tmp_path):
    tasks = plan_tasks("cheetah-run", CONTEXTS, tmp_path, seed=2)
    plan = plan_chain("cheetah-run", tasks, CHAIN_CFG)
    # the centre of each direction (ties: the first task): +2 of 1..4 (centre 2.5), -4 of {-4, -1}
    assert plan["anchors"] == [tid(-4), tid(2)]
    waves = [{m["task_id"]: m["source"] for m in w} for w in plan["waves"]]
    assert waves == [{tid(-4): None, tid(2): None},
                     {tid(-1): tid(-4), tid(1): tid(2), tid(3): tid(2)},  # nearest task finished in wave 0
                     {tid(4): tid(3)}]  # its nearest task, +3, finished in wave 1
    two = plan_chain("cheetah-run", tasks, ChainConfig(enabled=True, anchors=2))
    assert set(two["anchors"]) == {tid(-4), tid(-1), tid(2), tid(4)}  # centre, then the farthest from it
    # +3 lies halfway between the anchors +2 and +4: the tie goes to the earlier task
    assert two["waves"][1:] == [[{"task_id": tid(1), "source": tid(2)}, {"task_id": tid(3), "source": tid(2)}]]


def test_farthest_point_anchors_cover_a_two_dimensional_grid():
    import numpy as np

    grid = np.array([[x, y] for x in range(5) for y in range(5)], float)
    chosen = choose_anchors(grid, 5)
    assert chosen[0] == 12  # the centre
    assert {tuple(grid[i]) for i in chosen[1:]} == {(0, 0), (0, 4), (4, 0), (4, 4)}  # then the corners


def _preset_plan(name: str, tmp_path: Path):
    from hyperzero.launchers.config import resolve_contexts, resolve_pipeline_config
    from hyperzero.launchers.config_files import load_config_source

    config = resolve_pipeline_config(load_config_source(name)[0])
    contexts = resolve_contexts(config.family, config.contexts)
    tasks = plan_tasks(config.family, contexts, tmp_path, seed=2)
    return {t.task_id: t.context for t in tasks}, plan_chain(config.family, tasks, config.experts.settings.chain)


def test_a_dense_line_grows_from_every_anchor_at_once(tmp_path):
    """Speeds 0.5 apart are equally near in float32 normalised units only up to rounding: both neighbours of a task
    count, so -3.5 starts from the anchor -3 in wave 1 instead of waiting for a chain from -6 (17 waves before)."""
    contexts, plan = _preset_plan("cheetah-run-reward-dense", tmp_path)
    speeds = {t: c["speed"] for t, c in contexts.items()}
    assert sorted(speeds[t] for t in plan["anchors"]) == [-6, -3, 0.5, 3.5]
    wave = {m["task_id"]: k for k, w in enumerate(plan["waves"]) for m in w}
    for w in plan["waves"][1:]:
        for m in w:  # every source a grid neighbour of the same direction, finished in an earlier wave
            assert abs(speeds[m["task_id"]] - speeds[m["source"]]) == 0.5 and wave[m["source"]] < wave[m["task_id"]]
    # each task's wave is its number of grid steps to the nearest anchor of its direction
    for t, s in speeds.items():
        assert wave[t] == min(abs(s - speeds[a]) / 0.5 for a in plan["anchors"] if (speeds[a] > 0) == (s > 0))
    assert len(plan["waves"]) == 6


def test_a_lattice_chains_along_each_axis_whatever_its_spacings(tmp_path):
    import numpy as np

    grid = np.array([[x * 0.1, y * 0.03] for x in range(4) for y in range(3)])  # unequal spacings
    neighbours = grid_neighbours(grid, [(1,)] * len(grid))
    for i, js in enumerate(neighbours):  # one step along one axis, never a diagonal
        steps = np.abs(grid[js] - grid[i]) / [0.1, 0.03]
        assert np.allclose(np.sort(steps, axis=1), [[0, 1]] * len(js))
        assert len(js) == sum(np.isclose(np.abs(grid - grid[i]) / [0.1, 0.03], [[0, 1]]).all(1)
                              | np.isclose(np.abs(grid - grid[i]) / [0.1, 0.03], [[1, 0]]).all(1))
    assert grid_neighbours(grid, [(1,)] * 6 + [(-1,)] * 6)[5] == [2, 4]  # only tasks of its own direction
    # a real 7 x 7 grid: each task's wave is its lattice (Manhattan) distance to the nearest anchor
    contexts, plan = _preset_plan("cheetah-run-both-dense", tmp_path)
    index = {t: (round(c["speed"] / 0.5), round(c["torso_length"] / 0.05)) for t, c in contexts.items()}
    wave = {m["task_id"]: k for k, w in enumerate(plan["waves"]) for m in w}
    for t, (a, b) in index.items():
        assert wave[t] == min(abs(a - index[x][0]) + abs(b - index[x][1]) for x in plan["anchors"])
    assert len(plan["waves"]) == 7


def test_chain_settings_are_validated():
    with pytest.raises(ValueError, match="anchors >= 1"):
        ChainConfig(enabled=True, anchors=0).validate(100)
    with pytest.raises(ValueError, match="shorter than one episode"):
        ChainConfig(enabled=True, steps=50).validate(100)
    assert ChainConfig().chained_steps(40000, 1000) == 14000  # a third, rounded up to whole episodes
    with pytest.raises(ValueError, match="no update happens before seed_steps=4000"):
        ChainConfig(enabled=True, steps=3000).validate(1000, seed_steps=4000, train_steps=40000)
    with pytest.raises(ValueError, match="shorter than one episode"):
        train_experts("cheetah-run", CONTEXTS, "unused", CFG, chain=ChainConfig(enabled=True, steps=50))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("chain") / "experts"
    _train(out)
    return out


def test_summaries_record_the_source_and_the_steps(reference):
    plan = read_json(reference / CHAIN)
    sources = {m["task_id"]: m["source"] for w in plan["waves"] for m in w}
    for speed in SPEEDS:
        s = read_json(reference / tid(speed) / "summary.json")
        source = sources[tid(speed)]
        assert s["chain"]["source"] == source and "gate" in s  # chained experts are judged by the gate too
        if source is None:
            assert s["chain"] == {"wave": 0, "source": None, "steps": 300} and s["warm_start"] is None
        else:
            assert s["chain"]["steps"] == s["train_steps"] == 200
            assert Path(s["warm_start"]) == reference / source / CHECKPOINT
            assert s["config"]["random_steps"] == 0  # acts with its source's policy from the first step
    assert read_json(reference / tid(-1) / "summary.json")["chain"]["source"] == tid(-4)
    stages = read_json(reference / PLAN)["stages"]
    assert sorted(stages) == ["chain-wave-0", "chain-wave-1", "chain-wave-2"]


def test_a_chained_member_starts_from_its_source_networks_and_moments(reference, tmp_path):
    from hyperzero.experts.trainer import TaskSpec

    source = torch.load(reference / tid(2) / CHECKPOINT, weights_only=True)
    spec = TaskSpec(tid(3), {"speed": 3.0, "torso_length": 0.5}, 2, tmp_path / "t",
                    warm_start=reference / tid(2) / CHECKPOINT)
    trainer = GroupTrainer("cheetah-run", [spec], tiny(train_steps=200, random_steps=0), progress=False, fresh=True)
    state = trainer.agent.member_state(0)
    for name in ("actor", "critic", "actor_target", "critic_target"):
        for k, v in source["agent"]["nets"][name].items():
            assert torch.equal(state["nets"][name][k], v), (name, k)
    for name in ("actor", "critic"):
        for pid, st in source["agent"]["optim"][name]["state"].items():
            assert torch.equal(state["optim"][name]["state"][pid]["exp_avg_sq"], st["exp_avg_sq"])
            assert float(state["optim"][name]["state"][pid]["step"]) == float(st["step"])
    assert state["seed"] == 2  # its own seed and RNG streams, not the source's


def test_a_chained_sac_member_starts_from_its_source_temperature_and_moments(tmp_path):
    from hyperzero.experts import SACConfig
    from hyperzero.experts.trainer import TaskSpec, train_group

    cfg = SACConfig(train_steps=200, seed_steps=100, random_steps=50, max_episode_steps=100, eval_every=0,
                    eval_episodes=1, checkpoint_every=100, hidden_sizes=(32, 32), batch_size=32, torch_threads=1)
    source = TaskSpec(tid(2), {"speed": 2.0, "torso_length": 0.5}, 2, tmp_path / "source")
    train_group("cheetah-run", [source], cfg, progress=False)
    saved = torch.load(source.dir / CHECKPOINT, weights_only=True)["agent"]
    spec = TaskSpec(tid(3), {"speed": 3.0, "torso_length": 0.5}, 3, tmp_path / "t", warm_start=source.dir / CHECKPOINT)
    state = GroupTrainer("cheetah-run", [spec], cfg, progress=False, fresh=True).agent.member_state(0)
    for name in ("actor", "critic", "critic_target", "alpha"):
        for k, v in saved["nets"][name].items():
            assert torch.equal(state["nets"][name][k], v), (name, k)
    for pid, st in saved["optim"]["alpha"]["state"].items():
        assert torch.equal(state["optim"]["alpha"]["state"][pid]["exp_avg"], st["exp_avg"])


def test_a_redone_chained_expert_is_bit_for_bit_the_one_it_replaces(reference, tmp_path):
    out = tmp_path / "experts"
    shutil.copytree(reference, out)
    for speed in (1.0, 2.0):  # a wave-1 expert, then an anchor: each re-simulates its ensemble mate
        shutil.rmtree(out / tid(speed))
        _train(out)
        assert _hashes(out) == _hashes(reference)


def test_a_run_killed_mid_wave_resumes_and_matches(reference, tmp_path, monkeypatch):
    out = tmp_path / "experts"
    original = GroupTrainer.save_checkpoint

    def killed(self):
        original(self)
        if self.tasks[0].warm_start is not None and self.step == 100:
            raise KeyboardInterrupt("killed mid-wave")

    monkeypatch.setattr(GroupTrainer, "save_checkpoint", killed)
    with pytest.raises(KeyboardInterrupt):
        _train(out)
    anchors = [tid(-4), tid(2)]
    assert all((out / a / "summary.json").exists() for a in anchors)  # wave 0 finished and stays
    assert not (out / tid(-1) / "summary.json").exists()
    assert torch.load(out / tid(-1) / CHECKPOINT, weights_only=True)["step"] == 100
    before = {a: (out / a / "expert.pt").stat().st_mtime_ns for a in anchors}
    monkeypatch.setattr(GroupTrainer, "save_checkpoint", original)
    _train(out)
    assert {a: (out / a / "expert.pt").stat().st_mtime_ns for a in anchors} == before  # not retrained
    assert _hashes(out) == _hashes(reference)


def test_a_changed_grid_is_refused_once_its_chain_started(reference, tmp_path):
    out = tmp_path / "experts"
    shutil.copytree(reference, out)
    with pytest.raises(ValueError, match="records another chain"):
        train_experts("cheetah-run", CONTEXTS[:-1], out, CFG, ensemble_size=2, num_workers=1, gate=None,
                      chain=CHAIN_CFG, progress=False)


def test_neighbour_action_distance_pairs_grid_neighbours_of_one_direction(reference):
    from hyperzero.experts.smoothness import grid_neighbours, neighbour_action_distances

    assert grid_neighbours("cheetah-run", CONTEXTS) == [(0, 1), (2, 3), (3, 4), (4, 5)]  # never -1 with +1
    rows = neighbour_action_distances(reference, episodes=1, max_steps=20)
    assert {(r["a"], r["b"]) for r in rows} == {tuple(sorted((tid(a), tid(b))))
                                                for a, b in ((-4, -1), (1, 2), (2, 3), (3, 4))}
    assert all(0.0 < r["distance"] <= 2.0 and r["states"] == 40 for r in rows)
    same = neighbour_action_distances(reference, [tid(2), tid(2)], episodes=1, max_steps=20)
    assert [r["distance"] for r in same] == [0.0]  # an expert beside itself: no difference
