import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import hyperzero.envs  # noqa: F401  (registers the ids)
from hyperzero.envs import make, make_vector


def test_registered_id_with_context_kwarg():
    env = gym.make("hyperzero/cheetah-run-v0", context={"speed": -4, "torso_length": 0.6})
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (17,)
    assert info["context"] == {"speed": -4.0, "torso_length": 0.6}
    assert env.action_space.low.min() == -1 and env.action_space.high.max() == 1
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert info["context"]["speed"] == -4.0 and isinstance(reward, float)


@pytest.mark.parametrize("family", ["cheetah-run", "walker-walk", "finger-spin"])
def test_passes_gymnasium_env_checker(family):
    check_env(make(family, context={"speed": 2.0}), skip_render_check=True)


def test_time_limit_is_truncation_not_termination():
    env = make("finger-spin")
    env.reset(seed=0)
    for t in range(1000):
        _, _, terminated, truncated, _ = env.step(np.zeros(2))
        assert not terminated
        if t < 999:
            assert not truncated
    assert truncated and t == 999


def test_vector_env_has_one_context_per_sub_env():
    contexts = [{"speed": 3.0}, {"speed": -3.0, "torso_length": 0.6}]
    venv = make_vector("cheetah-run", contexts, seed=0)
    obs, info = venv.reset(seed=0)
    assert obs.shape == (2, 17)
    np.testing.assert_array_equal(info["context"]["speed"], [3.0, -3.0])
    np.testing.assert_array_equal(info["context"]["torso_length"], [0.5, 0.6])
    # the same actions earn different rewards under opposite target speeds
    rewards = np.zeros(2)
    rng = np.random.default_rng(0)
    for _ in range(100):
        _, r, _, _, info = venv.step(rng.uniform(-1, 1, (2, 6)))
        rewards += r
    assert rewards[0] != rewards[1]
    venv.close()


def test_reset_can_switch_context():
    env = make("walker-walk", context={"speed": 1.0})
    _, info = env.reset(seed=0, options={"context": {"speed": -2.0, "torso_length": 0.4}})
    assert info["context"] == {"speed": -2.0, "torso_length": 0.4}


def test_bad_input_to_make():
    with pytest.raises(ValueError, match="unknown family"):
        make("hopper-hop")
    with pytest.raises(ValueError, match="speed"):
        make("cheetah-run", context={"speed": 0.0})
    with pytest.raises(ValueError, match="value_at_margin"):
        make("cheetah-run", value_at_margin=1.5)
