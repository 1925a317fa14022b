"""register_family, --plugin, and the env of a family of your own, with real environments (Gymnasium's Pendulum-v1,
dm_control's pendulum, Gymnasium's MuJoCo InvertedPendulum-v5); every test restores the registry."""
import dataclasses
import os
import textwrap

import gymnasium
import numpy as np
import pytest

from tests.plugins.conftest import DMC, PENDULUM


def _write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


# ------------------------------------------------------------------------------------------- a Gymnasium family
def test_gymnasium_family_env_rescales_actions_flattens_and_truncates(registry_guard):
    from hyperzero.envs import GymnasiumContextualEnv, get_family, load_plugin, make

    assert load_plugin(str(PENDULUM)) == ["pendulum-g"]
    fam = get_family("pendulum-g")
    assert (fam.kind, fam.obs_dim, fam.act_dim, fam.episode_steps) == ("gymnasium", 3, 1, 200)
    env = make("pendulum-g", {"g": 8.0}, seed=5)
    assert isinstance(env, GymnasiumContextualEnv)
    assert env.action_space == gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)
    assert env.unwrapped.env.unwrapped.g == 8.0
    # [-1, 1] -> the env's Box [-2, 2], affinely, after clipping
    for a, torque in ((-1.0, -2.0), (0.0, 0.0), (0.5, 1.0), (1.0, 2.0), (3.0, 2.0), (-7.0, -2.0)):
        assert env.env_action([a]) == pytest.approx([torque])
    obs, info = env.reset()
    assert obs.dtype == np.float32 and obs.shape == (3,) and info["context"] == {"g": 8.0}
    again = make("pendulum-g", {"g": 8.0}, seed=5).reset()[0]
    np.testing.assert_array_equal(obs, again)  # the constructor's seed reaches the env's first reset
    steps, last = 0, None
    while True:
        obs, reward, terminated, truncated, info = env.step(np.array([0.5], np.float32))
        steps += 1
        if terminated or truncated:
            last = (terminated, truncated)
            break
    assert steps == 200 and last == (False, True)
    # the torque actually applied was 1.0: Pendulum's reward has the 0.001 u^2 term
    env.reset(seed=3)
    inner = env.unwrapped.env.unwrapped
    th, thdot = inner.state
    env.step(np.array([0.5], np.float32))
    expected = thdot + (3 * 8.0 / 2 * np.sin(th) + 3.0 * 1.0) * inner.dt
    assert inner.state[1] == pytest.approx(np.clip(expected, -8, 8), rel=1e-5)
    # switching the task rebuilds the env
    obs, info = env.reset(seed=0, options={"context": {"g": 12.0}})
    assert info["context"] == {"g": 12.0} and env.unwrapped.env.unwrapped.g == 12.0
    with pytest.raises(ValueError, match="outside the nominal range"):
        make("pendulum-g", {"g": 20.0})
    # gymnasium.make of the registered id, and the context wrapper of SB3/CleanRL users
    from hyperzero.envs import ContextObservation

    wrapped = ContextObservation(gymnasium.make("hyperzero/pendulum-g-v0", context={"g": 14.0}))
    obs, _ = wrapped.reset(seed=1)
    assert obs.shape == (4,) and obs[-1] == pytest.approx(1.0)
    assert gymnasium.spec("hyperzero/pendulum-g-v0").max_episode_steps == 200


def test_dm_control_family_is_built_like_the_shipped_ones(registry_guard):
    from hyperzero.envs import ContextualEnv, get_family, load_plugin, make

    assert load_plugin(str(DMC)) == ["pendulum-target"]
    fam = get_family("pendulum-target")
    assert fam.kind == "dm_control" and fam.render_problem() is None
    env = make("pendulum-target", {"target_angle": 0.3, "pole_length": 0.6}, seed=1)
    assert isinstance(env, ContextualEnv)
    assert env.physics.named.model.geom_pos["mass"][2] == pytest.approx(0.6)  # edit_xml moved the mass
    env.reset()
    env.physics.named.data.qpos["hinge"] = 0.3
    env.physics.forward()
    assert env.dm_env.task.get_reward(env.physics) == pytest.approx(1.0)  # at the target angle
    env.physics.named.data.qpos["hinge"] = -0.5
    assert env.dm_env.task.get_reward(env.physics) < 1.0
    frame = make("pendulum-target", None, render_mode="rgb_array", width=32, height=24).render()
    assert frame.shape == (24, 32, 3)


def test_registration_is_checked_and_refusals_leave_nothing(registry_guard, tmp_path):
    from hyperzero.envs import FAMILIES, Family, GymnasiumFamily, PluginError, get_family, load_plugin, register_family

    before = dict(FAMILIES)
    gym_before = set(gymnasium.registry)
    # a module that is not importable, a file that does not exist
    with pytest.raises(PluginError, match=r"plugin module 'no_such_families_module' cannot be imported"):
        load_plugin("no_such_families_module")
    with pytest.raises(PluginError, match=r"no such file"):
        load_plugin(str(tmp_path / "missing.py"))
    # a module that registers nothing
    empty = _write(tmp_path / "plugin_empty.py", "X = 1\n")
    with pytest.raises(PluginError, match=r"plugin_empty\.py' registered no family: when imported it must call "
                                          r"hyperzero\.envs\.register_family"):
        load_plugin(str(empty))
    # a family object missing a required attribute (a duck-typed Gymnasium family without episode_steps)
    missing = _write(tmp_path / "plugin_missing.py", """
        import gymnasium
        from types import SimpleNamespace
        from hyperzero.envs import ContextFeature, register_family
        register_family(SimpleNamespace(name="pend-x", features=(ContextFeature("g", "dynamics", "", 10.0, (6, 14),
                        (1, 30), "g"),), factory=lambda c: gymnasium.make("Pendulum-v1")))
        """)
    with pytest.raises(PluginError, match=r"plugin_missing\.py.*family 'pend-x' \(from module plugin_missing\) is "
                                          r"missing required attribute\(s\) \['episode_steps'\]"):
        load_plugin(str(missing))
    # a name clash with a shipped family, without replace=True; and a module that half-succeeds: its first family
    # is removed again
    clash = _write(tmp_path / "plugin_clash.py", """
        import dataclasses
        import gymnasium
        from hyperzero.envs import ContextFeature, GymnasiumFamily, register_family
        ok = GymnasiumFamily("pend-ok", (ContextFeature("g", "dynamics", "", 10.0, (6, 14), (1, 30), "g"),),
                             lambda c: gymnasium.make("Pendulum-v1", g=c["g"]), 200)
        register_family(ok)
        register_family(dataclasses.replace(ok, name="cheetah-run"))
        """)
    with pytest.raises(PluginError, match=r"family name 'cheetah-run' \(from module plugin_clash\) clashes with a "
                                          r"shipped family; choose another name, or pass replace=True"):
        load_plugin(str(clash))
    assert dict(FAMILIES) == before and "pend-ok" not in FAMILIES
    assert set(gymnasium.registry) == gym_before and "hyperzero/pend-ok-v0" not in gymnasium.registry
    assert get_family("cheetah-run").kind == "dm_control"
    # spaces that do not fit are named
    bad_dims = GymnasiumFamily("pend-bad", (ContextFeature_g(),), lambda c: gymnasium.make("Pendulum-v1"), 200,
                               obs_dim=4)
    with pytest.raises(PluginError, match=r"^family 'pend-bad' \(from module tests\.plugins\.test_registry\): "
                                          r"obs_dim=4 but the env has 3"):
        register_family(bad_dims)
    failing = dataclasses.replace(bad_dims, obs_dim=None, factory=lambda c: gymnasium.make("Pendulum-v1", h=1))
    with pytest.raises(PluginError, match=r"family 'pend-bad' \(from module tests\.plugins\.test_registry\): its "
                                          r"factory failed at the default context \{'g': 10\.0\}: TypeError"):
        register_family(failing)
    too_long = dataclasses.replace(bad_dims, obs_dim=None, episode_steps=500)
    with pytest.raises(PluginError, match=r"episode_steps=500 but the env's own time limit ends episodes after 200"):
        register_family(too_long)
    unbounded = GymnasiumFamily("pend-inf", (ContextFeature_g(),), lambda c: UnboundedActions(), 10)
    with pytest.raises(PluginError, match=r"family 'pend-inf'.*action bounds .* must be finite with low < high"):
        register_family(unbounded)
    assert load_plugin(str(DMC)) == ["pendulum-target"]
    dmc = get_family("pendulum-target")
    with pytest.raises(PluginError, match=r"obs_dim=5 but the env's observation has 3 values"):
        register_family(dataclasses.replace(dmc, name="pendulum-five", obs_dim=5))
    with pytest.raises(PluginError, match=r"episode_steps=999 but time_limit 20.0 s at 0.02 s per step gives 1000"):
        register_family(dataclasses.replace(dmc, name="pendulum-999", episode_steps=999))
    with pytest.raises(PluginError, match=r"expected a family object"):
        register_family("pendulum-g")
    # replace=True replaces a shipped family (and restoring puts it back)
    shipped = get_family("walker-walk")
    register_family(dataclasses.replace(get_family("cheetah-run"), name="walker-walk", doc="mine"), replace=True)
    assert get_family("walker-walk").doc == "mine"
    register_family(shipped, replace=True)
    assert get_family("walker-walk") is shipped
    assert isinstance(shipped, Family)


class UnboundedActions(gymnasium.Env):
    """An env whose action space has no bounds (hyperzero cannot map [-1, 1] onto it)."""

    observation_space = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gymnasium.spaces.Box(-np.inf, np.inf, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, False, False, {}


def ContextFeature_g():
    from hyperzero.envs import ContextFeature

    return ContextFeature("g", "dynamics", "m/s^2", 10.0, (6.0, 14.0), (1.0, 30.0), "gravity")


def test_unknown_family_says_how_to_add_one(registry_guard):
    from hyperzero.envs import get_family
    from hyperzero.launchers.config import resolve_config

    with pytest.raises(ValueError, match=r"unknown family 'hopper-hop'; choose one of: cheetah-run, walker-walk, "
                                         r"finger-spin; add your own with `hyperzero --plugin MODULE"):
        get_family("hopper-hop")
    with pytest.raises(ValueError, match=r"family='hopper-hop': must be one of .*docs/own-environment\.md"):
        resolve_config({"family": "hopper-hop", "contexts": {"list": [{"x": 1}]}})


def test_cli_plugin_option_errors_are_one_line(registry_guard, tmp_path, capsys):
    from hyperzero.cli import main

    assert main(["--plugin", "no_such_families_module", "envs"]) == 2
    err = capsys.readouterr().err
    assert "hyperzero: error: plugin module 'no_such_families_module' cannot be imported" in err
    assert "Traceback" not in err
    broken = _write(tmp_path / "plugin_broken.py", "raise RuntimeError('no licence server')\n")
    assert main(["envs", "--plugin", str(broken)]) == 2
    err = capsys.readouterr().err
    assert f"plugin '{broken}': importing it failed: RuntimeError: no licence server" in err
    # both places of --plugin add up, and the families are listed with their origin
    assert main(["--plugin", str(PENDULUM), "envs", "--plugin", str(DMC)]) == 0
    out = capsys.readouterr().out
    assert ("pendulum-g  (hyperzero/pendulum-g-v0; obs 3, act 1, 200 steps, gymnasium, from module "
            "pendulum_family)") in out
    assert "pendulum-target  (hyperzero/pendulum-target-v0; obs 3, act 1, 1000 steps, dm_control" in out
    assert str(PENDULUM) in os.environ["HYPERZERO_PLUGINS"] and str(DMC) in os.environ["HYPERZERO_PLUGINS"]


def test_plugins_listed_in_the_environment_load_lazily(registry_guard, monkeypatch):
    from hyperzero.envs import FAMILIES, get_family, has_family

    monkeypatch.setenv("HYPERZERO_PLUGINS", str(PENDULUM))
    registry_guard._ENV_LOADED.discard(str(PENDULUM))
    assert "pendulum-g" not in FAMILIES
    assert has_family("pendulum-g") and get_family("pendulum-g").act_dim == 1


# ------------------------------------------------------------------------------------------- the pipeline's parts
def test_gate_uses_the_family_reward_scale(registry_guard):
    from hyperzero.envs import get_family, load_plugin, register_family
    from hyperzero.experts.gate import GateConfig, judge

    load_plugin(str(PENDULUM))
    summaries = [{"task_id": f"g={g}", "context": {"g": float(g)}, "eval_return_mean": r, "floor_return": -1200.0}
                 for g, r in ((6, -200.0), (8, -300.0), (10, -1100.0), (12, -250.0))]
    verdicts = judge("pendulum-g", summaries, GateConfig())
    # scale [-3254.7, 0]: 0.9 of the way is -325.5
    assert [v.passed for v in verdicts] == [True, True, False, True]
    assert "0.9 of the way from -3255 to the ceiling 0" in verdicts[0].reason
    register_family(dataclasses.replace(get_family("pendulum-g"), max_reward=None), replace=True)
    verdicts = judge("pendulum-g", summaries, GateConfig())
    assert all(v.passed for v in verdicts) and "declares no max_reward" in verdicts[2].reason


def test_share_experience_is_refused_for_a_gymnasium_family(registry_guard, tmp_path):
    from hyperzero.envs import load_plugin
    from hyperzero.experts.config import TD3Config
    from hyperzero.experts.trainer import GroupTrainer, TaskSpec

    load_plugin(str(PENDULUM))
    spec = TaskSpec("g=8", {"g": 8.0}, 2, tmp_path / "g=8")
    with pytest.raises(ValueError, match="share_experience relabels rewards from dm_control physics readings, but "
                                         "family 'pendulum-g' is built from a Gymnasium env"):
        GroupTrainer("pendulum-g", [spec], TD3Config(train_steps=10, share_experience=True), progress=False)


def test_a_rendering_gymnasium_family_feeds_the_explore_page(registry_guard):
    """InvertedPendulum-v5 (Gymnasium's MuJoCo env) renders headless: the page's renderer takes its frames."""
    from hyperzero.envs import ContextFeature, GymnasiumFamily, get_family, load_plugin, register_family
    from hyperzero.explore.rollout import EnvFrameRenderer, Panel, clip_events, make_renderer

    def factory(context, render_mode=None):
        return gymnasium.make("InvertedPendulum-v5", reset_noise_scale=context["noise"], render_mode=render_mode,
                              width=64, height=48)

    fam = register_family(GymnasiumFamily(
        "inverted-noise", (ContextFeature("noise", "dynamics", "rad", 0.01, (0.0, 0.1), (0.0, 0.5), "start noise"),),
        factory, episode_steps=1000))
    assert fam.render_problem() is None
    renderer = make_renderer(fam, width=32, height=24)
    assert isinstance(renderer, EnvFrameRenderer)
    panel = Panel("zero", 0, lambda obs: np.zeros(1, np.float32), None)
    events = list(clip_events("inverted-noise", {"noise": 0.05}, [panel], renderer, episode_seed=3, clip_steps=4,
                              episode_steps=6, gamma=0.99, frame_every=2))
    frames = [e for e in events if e["type"] == "frame"]
    assert len(frames) == 3 and all(e["jpeg"] for e in frames)
    assert events[0]["control_dt"] == pytest.approx(0.04)
    done = events[-1]
    assert done["type"] == "done" and done["panels"][0]["steps"] == 6
    # a family that cannot render is refused by name (its factory takes no render_mode)
    blind = register_family(dataclasses.replace(fam, name="inverted-blind",
                                                factory=lambda context: factory(context)))
    assert blind.render_problem() == "its factory takes no render_mode argument"
    with pytest.raises(ValueError, match=r"family 'inverted-blind' cannot render frames \(its factory takes no "
                                         r"render_mode argument\); the explore page"):
        make_renderer(blind)
    load_plugin(str(PENDULUM))
    try:
        import pygame  # noqa: F401
    except ImportError:
        assert "pygame is not installed" in get_family("pendulum-g").render_problem()


# ------------------------------------------------------------------------------------------- run_pipeline(mapping)
def test_run_pipeline_takes_a_mapping_and_dict_overrides(tmp_path, monkeypatch):
    import numpy as np

    from hyperzero.launchers.config import resolve_config
    from hyperzero.launchers.config_files import load_config_source, plain_config
    from hyperzero.launchers.pipeline import override_items, run_dir_for

    raw, where = load_config_source({"family": "cheetah-run", "contexts": {"grid": {"speed": (np.float32(2), 4)}},
                                     "fit": {"seeds": np.arange(2)}, "dataset": {"n_episodes": np.int64(3)}})
    assert where == "a Python mapping (run_pipeline)"
    assert raw["contexts"]["grid"]["speed"] == [2.0, 4] and raw["dataset"]["n_episodes"] == 3
    overrides = override_items({"fit.seeds": [0, 1, 2], "experts.gate": {"enabled": False}, "name": "a b"})
    assert overrides == ["fit.seeds=[0, 1, 2]", "experts.gate={enabled: false}", "name=a b"]
    config = resolve_config(raw, overrides)
    assert config["fit"]["seeds"] == [0, 1, 2] and config["experts"]["gate"] == {"enabled": False}
    assert run_dir_for({"family": "cheetah-run", "name": ""}, {"family": "cheetah-run"}, None).as_posix() == \
        "runs/cheetah-run"
    with pytest.raises(ValueError, match=r"experts\.device=.*not object"):
        plain_config({"experts": {"device": object()}})
    with pytest.raises(ValueError, match="give the family's name"):
        from hyperzero.envs import get_family

        plain_config({"family": get_family("cheetah-run")})
