"""Shared experience: members of one reward family learn from each other's transitions, relabelled."""
import numpy as np
import pytest

from hyperzero.envs import get_family, make
from hyperzero.experts.replay import StackedReplay
from hyperzero.experts.trainer import GroupTrainer, dynamics_key, experience_pools

from .helpers import task, tiny


@pytest.mark.parametrize("family,target", [("cheetah-run", 3.0), ("cheetah-run", -2.0), ("walker-walk", 1.5),
                                           ("walker-walk", -1.0), ("finger-spin", 10.0), ("finger-spin", -5.0)])
def test_relabelling_a_task_own_readings_gives_back_its_reward(family, target):
    env = make(family, context={"speed": target})
    reward_task, physics = env.dm_env.task, env.physics
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    rewards, readings = [], []
    for _ in range(300):  # random states, velocities on the scale of the target so every reward branch is hit
        with physics.reset_context():
            physics.data.qpos[:] += rng.normal(0, 0.05, physics.model.nq)
            physics.data.qvel[:] = rng.normal(0, 2 * abs(target), physics.model.nv)
        rewards.append(reward_task.get_reward(physics))
        readings.append(reward_task.reward_readings(physics))
    readings = np.asarray(readings, np.float32)  # as the replay stores them
    assert readings.shape == (300, len(reward_task.READINGS))
    assert min(rewards) < 0.5 < max(rewards)  # not a vacuous check on a constant reward
    np.testing.assert_allclose(reward_task.reward_from_readings(readings), rewards, atol=1e-5)


def test_readings_relabel_a_transition_for_another_target():
    """The same physics state scores differently for +2 and +6 m/s, exactly as each task's own reward says."""
    slow, fast = make("cheetah-run", context={"speed": 2.0}), make("cheetah-run", context={"speed": 6.0})
    for env in (slow, fast):
        env.reset(seed=3)
    for _ in range(200):  # the same actions: the same states in both (equal dynamics)
        a = np.full(6, 0.5, np.float32)
        _, r_slow, *_ = slow.step(a)
        _, r_fast, *_ = fast.step(a)
    readings = np.asarray([slow.dm_env.task.reward_readings(slow.physics)], np.float32)
    assert fast.dm_env.task.reward_from_readings(readings)[0] == pytest.approx(r_fast, abs=1e-5)
    assert slow.dm_env.task.reward_from_readings(readings)[0] == pytest.approx(r_slow, abs=1e-5)


def test_pools_join_only_members_with_equal_dynamics():
    space = get_family("cheetah-run").context_space
    contexts = [space.validate(c) for c in ({"speed": 1.0}, {"speed": -3.0}, {"speed": 1.0, "torso_length": 0.4},
                                            {"speed": 5.0, "torso_length": 0.4}, {"speed": 2.0, "torso_length": 0.6})]
    assert experience_pools("cheetah-run", contexts) == [[0, 1], [0, 1], [2, 3], [2, 3], [4]]


def test_a_speed_by_length_grid_is_packed_length_by_length(tmp_path):
    from hyperzero.experts.sweep import pack_groups, plan_tasks

    grid = [{"speed": s, "torso_length": length} for s in (1.0, 2.0, 3.0) for length in (0.4, 0.6)]  # speed-major
    tasks = plan_tasks("cheetah-run", grid, tmp_path, seed=0)
    groups = pack_groups(tasks, 3, dynamics_key("cheetah-run"))
    assert [[t.context["torso_length"] for t in g] for g in groups] == [[0.4] * 3, [0.6] * 3]
    assert [[t.context["speed"] for t in g] for g in groups] == [[1.0, 2.0, 3.0]] * 2
    assert [len(g) for g in pack_groups(tasks, 3)] == [3, 3]  # without the key: the grid's order


class FixedIndices:
    def __init__(self, idx):
        self.idx = np.asarray(idx)

    def integers(self, low, high, size):
        assert high == 2 * 4  # two members of 4 rows in the pool
        return self.idx[:size]


def test_a_member_samples_the_others_rows_with_its_own_reward():
    r = StackedReplay(2, 4, obs_dim=1, act_dim=1, n_readings=1)
    for t in range(4):
        r.add(np.array([[t], [10 + t]], np.float32), np.zeros((2, 1), np.float32), np.array([1.0, 2.0], np.float32),
              np.ones(2, np.float32), np.array([[t + 1], [11 + t]], np.float32), readings=np.array([[t], [10 + t]]))
    relabel = [lambda x: 100 + x[..., 0], lambda x: 200 + x[..., 0]]
    # flat index 0..3: member 0's rows, 4..7: member 1's rows
    b = r.sample(2, [FixedIndices([1, 5]), FixedIndices([1, 5])], gamma=0.5, n_step=1, pools=[[0, 1], [0, 1]],
                 relabel=relabel)
    np.testing.assert_allclose(b["obs"][:, :, 0], [[1, 11], [1, 11]])
    np.testing.assert_allclose(b["reward"], [[1.0, 100 + 11], [200 + 1, 2.0]])  # own rows keep the stored reward
    np.testing.assert_allclose(b["next_obs"][:, :, 0], [[2, 12], [2, 12]])


def test_shared_run_trains_and_resumes(tmp_path):
    tasks = [task(tmp_path, 0, speed=2.0), task(tmp_path, 1, speed=4.0)]
    cfg = tiny(share_experience=True, train_steps=200, eval_every=0)
    trainer = GroupTrainer("cheetah-run", tasks, cfg, progress=False)
    assert trainer.pools == [[0, 1], [0, 1]]
    trainer.train()
    assert trainer.replay.readings[:, : trainer.replay.size].std() > 0  # readings were stored
    more = GroupTrainer("cheetah-run", tasks, tiny(share_experience=True, train_steps=300, eval_every=0), progress=False)
    assert more.step == 200
    np.testing.assert_array_equal(more.replay.readings[:, :200], trainer.replay.readings[:, :200])
    with pytest.raises(ValueError, match="share_experience"):
        GroupTrainer("cheetah-run", tasks, tiny(share_experience=False, train_steps=300, eval_every=0), progress=False)


def test_cli_flag_turns_it_on_and_records_it(tmp_path):
    import json
    import os
    import subprocess
    import sys

    out = tmp_path / "experts"
    cmd = [sys.executable, "-m", "hyperzero", "experts", "train", "--family", "cheetah-run", "--contexts", "speed=2",
           "speed=4", "--out", str(out), "--train-steps", "200", "--max-episode-steps", "100", "--checkpoint-every", "100",
           "--eval-episodes", "1", "--hidden-sizes", "32,32", "--batch-size", "32", "--seed-steps", "100", "--random-steps",
           "50", "--num-workers", "1", "--torch-threads", "1", "--no-progress", "--gate.enabled", "false", "--share-experience"]
    subprocess.run(cmd, check=True, env={**os.environ, "MUJOCO_GL": "egl"}, capture_output=True, timeout=300)
    for task_id in ("speed=2_torso_length=0.5", "speed=4_torso_length=0.5"):
        assert json.loads((out / task_id / "summary.json").read_text())["config"]["share_experience"] is True
