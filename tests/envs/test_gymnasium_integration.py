"""The hyperzero envs as other libraries use them: ContextObservation, SB3 agents, vector envs, spec limits."""
import re
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import hyperzero.envs  # noqa: F401  (registers the ids)
from hyperzero.envs import FAMILIES, ContextObservation, get_family, gym_id, make, make_vector

ID = "hyperzero/cheetah-run-v0"


@pytest.mark.parametrize("family", list(FAMILIES))
def test_registered_specs_state_the_time_limit(family):
    assert gym.spec(gym_id(family)).max_episode_steps == get_family(family).episode_steps == 1000


def test_time_limit_of_the_spec_and_a_shorter_one():
    env = gym.make(ID, context={"speed": 3.0})
    assert env.spec.max_episode_steps == 1000
    env.reset(seed=0)
    for t in range(1000):
        _, _, terminated, truncated, _ = env.step(np.zeros(6, np.float32))
        assert not terminated and truncated == (t == 999)
    short = gym.make(ID, context={"speed": 3.0}, max_episode_steps=7)
    short.reset(seed=0)
    ends = [short.step(np.zeros(6, np.float32))[3] for _ in range(7)]
    assert ends == [False] * 6 + [True]
    obs, info = short.reset(seed=1)  # reset after the truncation starts a fresh episode
    assert info["context"]["speed"] == 3.0


# ---------------------------------------------------------------------------------------------- ContextObservation
def test_context_observation_appends_normalised_context():
    env = ContextObservation(gym.make(ID, context={"speed": -4, "torso_length": 0.6}))
    assert env.context_names == ["speed", "torso_length"]
    assert env.observation_space.shape == (19,) and env.observation_space.dtype == np.float32
    np.testing.assert_allclose(env.observation_space.low[-2:], [-3.0, -2.0])   # limits [-30, 30], [0.1, 1.5]
    np.testing.assert_allclose(env.observation_space.high[-2:], [3.0, 5.0])
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.float32 and env.observation_space.contains(obs)
    np.testing.assert_allclose(obs[env.context_slice], [-0.4, 0.5], atol=1e-6)
    base_obs, _ = make("cheetah-run", context={"speed": -4, "torso_length": 0.6}).reset(seed=0)
    np.testing.assert_array_equal(obs[:17], base_obs)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    np.testing.assert_allclose(obs[-2:], [-0.4, 0.5], atol=1e-6)
    # a switched task shows in the first observation of the new episode
    obs, info = env.reset(seed=1, options={"context": {"speed": 10.0, "torso_length": 0.3}})
    np.testing.assert_allclose(obs[-2:], [1.0, -1.0], atol=1e-6)


def test_context_observation_uses_the_models_normalisation():
    space = get_family("finger-spin").context_space
    names = ["speed", "finger_length", "friction_scale"]
    for ctx in space.sample(5, seed=0, names=names):
        env = ContextObservation(make("finger-spin", context=ctx), names=names)
        obs, _ = env.reset(seed=0)
        np.testing.assert_allclose(obs[env.context_slice], space.normalize(space.to_vector(ctx, names), names),
                                   atol=1e-6)


def test_context_observation_raw_values_and_optional_features():
    env = ContextObservation(make("walker-walk", context={"speed": 2.0}), names=["gravity", "speed"], normalize=False)
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(obs[env.context_slice], [9.81, 2.0], rtol=1e-6)
    np.testing.assert_allclose(env.observation_space.low[-2:], [0.0, -15.0])
    np.testing.assert_allclose(env.observation_space.high[-2:], [30.0, 15.0])
    obs, _ = env.reset(seed=0, options={"context": {"gravity": 4.0}})
    np.testing.assert_allclose(obs[-2:], [4.0, 2.0], rtol=1e-6)


def test_context_observation_extrapolated_context_stays_in_the_space():
    env = ContextObservation(gym.make(ID, context={"speed": 25.0}, allow_extrapolation=True))
    obs, _ = env.reset(seed=0)
    assert obs[-2] == pytest.approx(2.5) and env.observation_space.contains(obs)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_context_observation_passes_the_env_checkers(family):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*different from the unwrapped version")  # it is a wrapper
        check_env(ContextObservation(make(family, context={"speed": 2.0})), skip_render_check=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SB3 suggests a symmetric, normalised Box: dm_control's is unbounded
        sb3_check_env(ContextObservation(gym.make(gym_id(family), context={"speed": 2.0})), warn=False)


def test_context_observation_refuses_bad_input():
    with pytest.raises(TypeError, match="hyperzero env"):
        ContextObservation(gym.make("CartPole-v1"))
    with pytest.raises(ValueError, match="unknown context feature"):
        ContextObservation(gym.make(ID), names=["speed", "wingspan"])
    with pytest.raises(ValueError, match="distinct"):
        ContextObservation(gym.make(ID), names=["speed", "speed"])


# ------------------------------------------------------------------------------------------- Stable-Baselines3
def test_sb3_ppo_learns_on_per_context_sub_envs():
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    contexts = [{"speed": 2.0}, {"speed": -5.0, "torso_length": 0.4}]
    venv = DummyVecEnv([lambda c=c: ContextObservation(gym.make(ID, context=c, max_episode_steps=50))
                        for c in contexts])
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu",
                policy_kwargs={"net_arch": [32, 32]})
    model.learn(total_timesteps=256)
    assert model.num_timesteps >= 256
    assert model.observation_space.shape == (19,)
    obs = venv.reset()
    np.testing.assert_allclose(obs[:, -2:], [[0.2, 0.0], [-0.5, -0.5]], atol=1e-6)
    actions, _ = model.predict(obs, deterministic=True)
    assert actions.shape == (2, 6) and np.abs(actions).max() <= 1.0
    assert venv.envs[0].spec.max_episode_steps == 50  # the shortened TimeLimit reached the sub-envs


def test_sb3_sac_learns_on_one_wrapped_env():
    from stable_baselines3 import SAC

    env = ContextObservation(gym.make(ID, context={"speed": 4.0}, max_episode_steps=60))
    model = SAC("MlpPolicy", env, learning_starts=64, batch_size=32, buffer_size=1_000, seed=0, device="cpu",
                policy_kwargs={"net_arch": [32, 32]})
    model.learn(total_timesteps=200)
    assert model.num_timesteps == 200 and model.replay_buffer.observations.shape[-1] == 19


# ------------------------------------------------------------------------------------------------- vector envs
def test_make_vec_sync_gives_every_sub_env_the_same_context():
    venv = gym.make_vec(ID, num_envs=2, vectorization_mode="sync", context={"speed": 3.0})
    _, info = venv.reset(seed=0)
    np.testing.assert_array_equal(info["context"]["speed"], [3.0, 3.0])
    venv.close()
    # vector_kwargs go to SyncVectorEnv itself, not to the sub-envs: no per-env contexts through them
    with pytest.raises(TypeError, match="contexts"):
        gym.make_vec(ID, num_envs=2, vectorization_mode="sync", vector_kwargs={"contexts": [{"speed": 1.0}] * 2})


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_per_env_contexts_through_make_vector_and_sync_vector_env(mode):
    contexts = [{"speed": 3.0}, {"speed": -3.0, "torso_length": 0.6}]
    venv = make_vector("cheetah-run", contexts, seed=0, vectorization_mode=mode)
    obs, info = venv.reset(seed=0)
    np.testing.assert_array_equal(info["context"]["speed"], [3.0, -3.0])
    venv.close()
    cls = gym.vector.SyncVectorEnv if mode == "sync" else gym.vector.AsyncVectorEnv
    venv = cls([lambda c=c: ContextObservation(gym.make(ID, context=c, max_episode_steps=5)) for c in contexts])
    obs, info = venv.reset(seed=0)
    assert obs.shape == (2, 19)
    np.testing.assert_allclose(obs[:, -2:], [[0.3, 0.0], [-0.3, 0.5]], atol=1e-6)
    for _ in range(5):
        obs, reward, terminated, truncated, info = venv.step(np.zeros((2, 6), np.float32))
    assert truncated.all() and not terminated.any()
    np.testing.assert_array_equal(info["context"]["speed"], [3.0, -3.0])
    venv.close()


# ------------------------------------------------------------------------------------------------------- docs
def test_docs_gymnasium_snippets_run(tmp_path, monkeypatch, capsys):
    """Every python block of docs/gymnasium.md runs as written."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "gymnasium.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/gymnasium.md[{i}]", "exec"), {"__name__": "__docs__"})
    out = capsys.readouterr().out
    assert "(17,) {'speed': -4.0, 'torso_length': 0.6}" in out and "(3, 19)" in out
