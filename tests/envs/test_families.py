"""Physics-level checks on real dm_control models: the context changes what it should."""
import numpy as np
import pytest
from dm_control import suite

from hyperzero.envs import FAMILIES, get_family, make
from hyperzero.envs.finger import hinge_velocity
from hyperzero.envs.rewards import directional_speed


def _actions(n, act_dim, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, act_dim))


def test_cheetah_reward_equals_dm_control_run_step_for_step():
    ours = get_family("cheetah-run").make_dmc({"speed": 10}, seed=7, value_at_margin=0.0)
    theirs = suite.load("cheetah", "run", task_kwargs={"random": 7})
    t1, t2 = ours.reset(), theirs.reset()
    np.testing.assert_array_equal(t1.observation["position"], t2.observation["position"])
    # a policy that makes the cheetah move, so the reward is not identically 0
    rewards = []
    for a in _actions(300, 6, seed=1):
        t1, t2 = ours.step(a), theirs.step(a)
        assert t1.reward == t2.reward
        rewards.append(t1.reward)
    assert max(rewards) > 0  # the comparison covered non-trivial rewards


def test_negative_speed_rewards_backward_motion_on_a_recorded_trajectory():
    env = get_family("cheetah-run").make_dmc({"speed": 3.0}, seed=0)
    env.reset()
    velocities = []
    for a in _actions(400, 6, seed=2):
        env.step(a)
        velocities.append(env.physics.speed())
    velocities = np.array(velocities)
    assert velocities.min() < -0.3 and velocities.max() > 0.3  # the trajectory moves both ways
    for m in (3.0, 1.0):
        fwd = np.array([directional_speed(v, m, 0.1) for v in velocities])
        bwd = np.array([directional_speed(v, -m, 0.1) for v in velocities])
        # the formula: f_m(v) = f_{-m}(-v); forward motion favours +m, backward motion favours -m
        np.testing.assert_allclose(bwd, [directional_speed(-v, m, 0.1) for v in velocities])
        assert np.all(fwd[velocities > 0.05] >= bwd[velocities > 0.05])
        assert np.all(bwd[velocities < -0.05] >= fwd[velocities < -0.05])
        assert np.any(fwd != bwd)
    # standing still earns value_at_margin, reaching |m| earns 1, -|m|/9 or worse earns 0
    assert directional_speed(0.0, -4.0, 0.1) == pytest.approx(0.1)
    assert directional_speed(-4.0, -4.0, 0.1) == 1.0
    assert directional_speed(0.5, -4.0, 0.1) == 0.0


def _model(family, **ctx):
    return get_family(family).make_physics(get_family(family).context_space.validate(ctx)).model


def test_cheetah_torso_length_edits_geometry_and_redistributes_mass():
    short, long_ = _model("cheetah-run", torso_length=0.3), _model("cheetah-run", torso_length=0.7)
    for m in (short, long_):
        assert m.body_mass.sum() == pytest.approx(14.0)  # settotalmass keeps the total
    import mujoco

    def bid(m, n):
        return mujoco.mj_name2id(m.ptr if hasattr(m, "ptr") else m, mujoco.mjtObj.mjOBJ_BODY, n)

    def gid(m, n):
        return mujoco.mj_name2id(m.ptr if hasattr(m, "ptr") else m, mujoco.mjtObj.mjOBJ_GEOM, n)

    assert long_.geom_size[gid(long_, "torso"), 1] == pytest.approx(0.7)
    assert short.geom_size[gid(short, "torso"), 1] == pytest.approx(0.3)
    assert long_.body_pos[bid(long_, "fthigh"), 0] == pytest.approx(0.7)
    assert long_.body_pos[bid(long_, "bthigh"), 0] == pytest.approx(-0.7)
    assert long_.geom_pos[gid(long_, "head"), 0] > short.geom_pos[gid(short, "head"), 0]
    torso = bid(long_, "torso")
    assert long_.body_mass[torso] > short.body_mass[torso]               # torso takes a bigger share...
    assert long_.body_mass[bid(long_, "bfoot")] < short.body_mass[bid(short, "bfoot")]  # ...legs get lighter
    assert long_.body_inertia[torso, 1] > short.body_inertia[torso, 1]   # pitch inertia grows


def test_walker_torso_length_scales_capsule_mass():
    import mujoco

    short, long_ = _model("walker-walk", torso_length=0.2), _model("walker-walk", torso_length=0.5)
    t = mujoco.mj_name2id(long_.ptr if hasattr(long_, "ptr") else long_, mujoco.mjtObj.mjOBJ_BODY, "torso")
    g = mujoco.mj_name2id(long_.ptr if hasattr(long_, "ptr") else long_, mujoco.mjtObj.mjOBJ_GEOM, "torso")
    assert long_.geom_size[g, 1] == pytest.approx(0.5) and short.geom_size[g, 1] == pytest.approx(0.2)
    assert long_.body_mass[t] > short.body_mass[t]
    assert long_.body_mass.sum() > short.body_mass.sum()  # no settotalmass here
    assert long_.body_inertia[t, 1] > short.body_inertia[t, 1]


def test_finger_length_moves_tip_and_spinner():
    import mujoco

    short, long_ = _model("finger-spin", finger_length=0.12), _model("finger-spin", finger_length=0.2)

    def ids(m, kind, n):
        return mujoco.mj_name2id(m.ptr if hasattr(m, "ptr") else m, kind, n)

    G, B = mujoco.mjtObj.mjOBJ_GEOM, mujoco.mjtObj.mjOBJ_BODY
    assert long_.geom_size[ids(long_, G, "distal"), 1] > short.geom_size[ids(short, G, "distal"), 1]
    assert long_.body_pos[ids(long_, B, "spinner"), 0] == pytest.approx(0.24)
    assert short.body_pos[ids(short, B, "spinner"), 0] == pytest.approx(0.16)
    assert long_.geom_size[ids(long_, G, "cap1"), 1] == pytest.approx(0.13)
    assert long_.body_mass[ids(long_, B, "distal")] > short.body_mass[ids(short, B, "distal")]


def test_finger_reward_is_dense_and_signed():
    env = get_family("finger-spin").make_dmc({"speed": 5.0}, seed=0)
    env.reset()
    for a in _actions(200, 2, seed=3):
        ts = env.step(a)
        w = hinge_velocity(env.physics)
        assert ts.reward == pytest.approx(directional_speed(w, 5.0, 0.1))
    assert isinstance(hinge_velocity(env.physics), float)


@pytest.mark.parametrize("family, ctx_a, ctx_b", [
    ("cheetah-run", {"torso_length": 0.3}, {"torso_length": 0.7}),
    ("walker-walk", {"torso_length": 0.2}, {"torso_length": 0.5}),
    ("finger-spin", {"finger_length": 0.12}, {"finger_length": 0.2}),
    ("cheetah-run", {}, {"gravity": 5.0}),
])
def test_same_actions_different_dynamics_give_different_trajectories(family, ctx_a, ctx_b):
    def run(ctx):
        env = make(family, context=ctx)
        obs, _ = env.reset(seed=11)
        traj = [obs]
        for a in _actions(100, env.action_space.shape[0], seed=4):
            traj.append(env.step(a)[0])
        return np.array(traj)

    a, b = run(ctx_a), run(ctx_b)
    assert a.shape == b.shape and not np.allclose(a[1:], b[1:])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_same_seed_and_context_give_identical_trajectories(family):
    def run(seed):
        env = make(family, context={"speed": -2.0})
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for a in _actions(50, env.action_space.shape[0], seed=5):
            out.append(env.step(a)[0])
        return np.array(out)

    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


def test_finger_fast_observation_equals_dm_control_observation():
    env = get_family("finger-spin").make_dmc({"finger_length": 0.2}, seed=0)
    env.reset()
    reference = suite.finger.Spin(random=0)
    for a in _actions(100, 2, seed=6):
        env.step(a)
        ours, theirs = env.task.get_observation(env.physics), reference.get_observation(env.physics)
        assert list(ours) == list(theirs)
        for k in ours:
            np.testing.assert_array_equal(ours[k], theirs[k])
