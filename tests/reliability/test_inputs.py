"""Bad input, as a new user types it: one clear line naming the key, the value and the allowed form;
never a traceback, never a file written for a refused command; contexts checked the same way everywhere."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hyperzero.cli import main
from hyperzero.envs import get_family, validate_context
from hyperzero.launchers.config import resolve_config
from hyperzero.launchers.config_files import load_config_source

TINY = load_config_source("tiny")[0]
SPACE = get_family("cheetah-run").context_space


def cli(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    cli.out = captured.out
    return code, captured.err


@pytest.mark.parametrize("override, words", [
    ("experts.train_steps=abc", ["experts.train_steps", "'abc'", "integer"]),
    ("experts.train_steps=1.5", ["experts.train_steps", "1.5", "integer"]),
    ("fit.steps=1.5", ["fit.steps", "1.5", "integer"]),
    ("experts.num_workers=0", ["experts.num_workers", "0", ">= 1"]),
    ("experts.seed=abc", ["experts.seed", "'abc'", "integer"]),
    ("experts.gamma=.nan", ["experts.gamma", "finite"]),
    ("dataset.exclude_flagged=3", ["dataset.exclude_flagged", "true or false"]),
    ("fit.model.hidden_dim=wide", ["fit.model.hidden_dim", "'wide'", "integer"]),
    ("contexts.grid.speed=[fast]", ["contexts.grid.speed", "'fast'", "number"]),
    ("contexts.grid.speed=-10:10:0", ["-10:10:0", "step > 0"]),
    ("contexts.grid.speed=[40]", ["speed", "40", "limits"]),
    ("fit.seeds=[0,0]", ["fit.seeds", "distinct"]),
    ("experts=3", ["experts", "mapping"]),
])
def test_refused_set_names_key_value_and_form_and_writes_nothing(tmp_path, capsys, override, words):
    out = tmp_path / "run"
    code, err = cli(capsys, "run", "tiny", "--out", str(out), "--set", override, "--no-progress")
    assert code == 2
    for word in words:
        assert word in err, (word, err)
    assert not out.exists()  # not even config.yaml: the corrected command is not refused as "a different config"


def test_lo_hi_step_and_exact_integers_through_set(capsys):
    config = resolve_config(TINY, ["contexts.grid.speed=-10:10:0.5", "experts.train_steps=1e3",
                                   "fit.steps=2000.0", "fit.lr=3e-4"])
    assert config["contexts"]["grid"]["speed"] == "-10:10:0.5"  # not YAML 1.1's base-60 -600.5
    assert config["experts"]["train_steps"] == 1000 and isinstance(config["experts"]["train_steps"], int)
    assert config["fit"]["steps"] == 2000 and isinstance(config["fit"]["steps"], int)
    assert config["fit"]["lr"] == 3e-4
    # setting another kind of task list replaces the preset's (contexts holds exactly one kind)
    assert resolve_config(TINY, ["contexts.list=[{speed: 3}, {speed: 2}]"])["contexts"] == {
        "list": [{"speed": 3}, {"speed": 2}]}
    code, _ = cli(capsys, "run", "tiny", "--show", "--set", "contexts.grid.speed=-10:10:0.5")
    assert code == 0 and "'-10:10:0.5'" in cli.out


def test_python_api_configs_check_types():
    from hyperzero.training import FitConfig

    with pytest.raises(ValueError, match=r"FitConfig.steps='10': must be an integer"):
        FitConfig(steps="10").check()
    with pytest.raises(ValueError, match=r"FitConfig.lr=True"):
        FitConfig(lr=True).check()


def test_fit_config_from_dict_refuses_unknown_keys():
    from hyperzero.training import FitConfig

    assert FitConfig.from_dict({"steps": 10, "model": {"hidden_dim": 8}}).model.hidden_dim == 8
    with pytest.raises(ValueError, match=r"unknown fit setting\(s\) \['stpes'\].*'steps'"):
        FitConfig.from_dict({"stpes": 10})
    with pytest.raises(ValueError, match=r"\['model.hiden_dim'\].*'model.hidden_dim'"):
        FitConfig.from_dict({"model": {"hiden_dim": 8}})


def test_load_fit_names_settings_from_another_version(tmp_path):
    import torch

    from hyperzero.training import load_fit

    torch.save({"config": {"steps": 10, "retired_knob": 1, "model": {"obs_norm": True}}}, tmp_path / "model.pt")
    with pytest.raises(ValueError, match=r"model.pt holds fit settings.*\['retired_knob'\].*refit it"):
        load_fit(tmp_path)


def test_out_below_a_regular_file_and_debug_traceback(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = cli(capsys, "run", "tiny", "--out", str(blocker / "run"))
    assert code == 2 and f"{blocker} (a parent of {blocker / 'run'}) is a regular file" in err
    with pytest.raises(ValueError, match="regular file"):  # --debug lets the exception (and its traceback) out
        main(["run", "tiny", "--out", str(blocker / "run"), "--debug"])


BAD_CONTEXTS = {
    "speed=nan": "not finite", "speed=0": "value 0 is not allowed", "speed=true": "'true' is not a number",
    "speed=fast": "'fast' is not a number", "speed=1e9": "outside its physical limits",
    "speed=12": "outside the nominal range", "wind=3": "unknown context feature", "speed": "name=value",
    # omitted features the model was trained on are not defaulted (was: a policy for speed 10, the default)
    "torso_length=0.6": "context lacks features ['speed']",
    # a feature the model does not vary, at another value than it was trained at
    "speed=3,torso_length=0.6": "'torso_length' = 0.6 is not varied by this model (hyperzero)",
    "speed=5e-324": "below the minimum 0.05 m/s",
}


@pytest.mark.parametrize("spec", list(BAD_CONTEXTS))
def test_export_policy_refuses_bad_contexts(tiny_run, tmp_path, capsys, spec):
    out = tmp_path / "policy.npz"
    code, err = cli(capsys, "export-policy", "--fit", str(tiny_run / "fits/hyperzero/seed_0"), "--context", spec,
                    "--out", str(out))
    assert code == 2 and BAD_CONTEXTS[spec] in err, err
    assert not out.exists()


def test_export_policy_writes_a_finite_policy(tiny_run, tmp_path, capsys):
    from hyperzero.models.export import NumpyPolicy

    out = tmp_path / "policy.npz"
    code, _ = cli(capsys, "export-policy", "--fit", str(tiny_run / "fits/hyperzero/seed_0"), "--context", "speed=3",
                  "--out", str(out))
    assert code == 0 and "policy for {'speed': 3.0, 'torso_length': 0.5}" in cli.out
    action = NumpyPolicy.load(out).act(np.zeros(get_family("cheetah-run").obs_dim, np.float32))
    assert np.isfinite(action).all()


def test_export_policy_warns_outside_the_training_range(tiny_run, tmp_path, capsys):
    code, err = cli(capsys, "export-policy", "--fit", str(tiny_run / "fits/hyperzero/seed_0"), "--context",
                    "speed=-9.5", "--out", str(tmp_path / "policy.npz"))
    assert code == 0 and "warning: context feature 'speed' = -9.5 is outside the range of the training tasks" in err


def test_python_api_refuses_a_feature_the_model_was_not_trained_on(fresh_tiny_model):
    with pytest.raises(ValueError, match=r"'gravity' = 5 is not varied by this model.*fixed at 9.81"):
        fresh_tiny_model.policy({"speed": 2.0, "gravity": 5})
    with pytest.raises(ValueError, match=r"context lacks features \['speed'\]"):
        fresh_tiny_model.policy({"gravity": 5})
    with pytest.raises(ValueError, match=r"context lacks features \['speed'\]"):
        fresh_tiny_model.adapt({"torso_length": 0.5}, {})
    with pytest.raises(ValueError, match=r"unknown context feature\(s\) \['wind'\]"):
        fresh_tiny_model.policy({"speed": 2.0, "wind": 1.0})
    with pytest.raises(ValueError, match="below the minimum 0.05 m/s"):
        fresh_tiny_model.policy({"speed": -1e-3})
    # the values it was trained at may be repeated
    assert fresh_tiny_model.check_context({"speed": 2.0, "torso_length": 0.5, "gravity": 9.81}) == {
        "speed": 2.0, "torso_length": 0.5}


def test_python_api_warns_once_per_feature_outside_the_training_range(fresh_tiny_model):
    import warnings

    from hyperzero.envs import ExtrapolationWarning

    fixed, ranges = fresh_tiny_model.training_facts()
    assert fixed == {"torso_length": 0.5}
    lo, hi = ranges["speed"]
    assert -4.0 <= lo <= hi <= 4.0  # the tiny preset's speeds are -4, 2, 4; some are held out
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fresh_tiny_model.policy({"speed": hi})
        fresh_tiny_model.policy({"speed": 9.0})
        fresh_tiny_model.policy({"speed": -9.0})
    found = [w for w in caught if issubclass(w.category, ExtrapolationWarning)]
    assert len(found) == 1, [str(w.message) for w in caught]
    assert "'speed' = 9 is outside the range of the training tasks" in str(found[0].message)
    assert f"[{lo:g}, {hi:g}]" in str(found[0].message)


def test_gym_make_with_a_string_context_says_what_to_pass():
    import gymnasium as gym

    import hyperzero.envs  # noqa: F401 - registers the ids

    with pytest.raises(ValueError, match=r"context must be a mapping \{feature: value\} such as \{'speed': 2.0\}"):
        gym.make("hyperzero/cheetah-run-v0", context="speed=3")
    with pytest.raises(ValueError, match="'speed': value True is a boolean"):
        gym.make("hyperzero/cheetah-run-v0", context={"speed": True})


def test_fit_into_a_directory_of_another_familys_fit_is_refused(run_copy, tmp_path, capsys):
    from hyperzero.datasets import DatasetWriter

    family = get_family("walker-walk")
    writer = DatasetWriter(tmp_path / "walker", "walker-walk", ["speed"])
    for speed in (1.0, 2.0, 3.0):
        E, T = 1, 4
        done = np.zeros((E, T), bool)
        done[:, -1] = True
        writer.add_task({"speed": speed}, {
            "obs": np.zeros((E, T, family.obs_dim)), "action": np.zeros((E, T, family.act_dim)),
            "reward": np.zeros((E, T)), "next_obs": np.zeros((E, T, family.obs_dim)),
            "terminated": np.zeros((E, T), bool), "truncated": done, "episode_seed": np.arange(E)})
    writer.finalize()
    code, err = cli(capsys, "fit", "--dataset", str(tmp_path / "walker"), "--method", "hyperzero", "--seeds", "0",
                    "--out", str(run_copy / "fits"), "--steps", "2", "--no-progress")
    assert code == 2 and "was fitted on a cheetah-run dataset" in err and "walker-walk" in err


# ---------------------------------------------------------------------------------------------- fuzz
KEYS = {  # dotted key -> the Python type a resolved config holds there
    "experts.train_steps": int, "experts.seed": int, "experts.num_workers": (int, type(None)),
    "experts.ensemble_size": (int, type(None)), "experts.gamma": float, "experts.hidden_sizes": list,
    "dataset.n_episodes": int, "dataset.exclude_flagged": bool, "fit.steps": int, "fit.lr": float,
    "fit.seeds": list, "fit.batch_size": int, "evaluate.episodes": int, "contexts.grid.speed": (list, str),
    "family": str, "name": str,
}
scalars = st.one_of(st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                    st.none(), st.text(max_size=12), st.sampled_from(["-10:10:0.5", "1:3:1", "1e3", "0x10", "yes", ""]))
values = st.one_of(scalars, st.lists(scalars, max_size=4))


def yaml_text(value) -> str:
    if isinstance(value, list):
        return "[" + ",".join(yaml_text(v) for v in value) + "]"
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(sorted(KEYS)), value=values)
def test_fuzz_set_either_resolves_to_the_declared_type_or_names_the_key(key, value):
    try:
        config = resolve_config(TINY, [f"{key}={yaml_text(value)}"])
    except ValueError as e:
        section = key.split(".")[0]
        assert key in str(e) or section in str(e) or "context feature" in str(e) or "grid" in str(e), (key, value, e)
        return
    node = config
    for part in key.split("."):
        node = node[part]
    assert isinstance(node, KEYS[key]) and not (isinstance(node, bool) and KEYS[key] is int), (key, value, node)
    if isinstance(node, float):
        assert math.isfinite(node)


context_values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-100, 100), st.booleans(),
                           st.text(max_size=6), st.none(), st.lists(st.floats(), max_size=2))
contexts = st.dictionaries(st.sampled_from(["speed", "torso_length", "gravity", "Speed", ""]), context_values,
                           max_size=3)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(context=contexts, extrapolate=st.booleans())
def test_fuzz_contexts_fail_the_same_way_in_envs_and_trained_models(tiny_model, context, extrapolate):
    """What an env refuses a model refuses too; a model also refuses what it cannot act on (a varied
    feature left out, another value of a fixed one); the model and the export command say the same."""
    try:
        model_error = None
        tiny_model.check_context(context, allow_extrapolation=extrapolate)
    except ValueError as e:
        model_error = str(e)
    try:
        validate_context("cheetah-run", context, extrapolate, names=["speed"], fixed={"torso_length": 0.5},
                         who="this model (hyperzero)")
        export_error = None
    except ValueError as e:
        export_error = str(e)
    assert model_error == export_error
    try:
        checked = SPACE.validate(context, allow_extrapolation=extrapolate)
    except ValueError:
        assert model_error is not None
        return
    acts_on = "speed" in context and all(v == SPACE.features[k].default for k, v in checked.items() if k != "speed")
    assert (model_error is None) == acts_on, (context, model_error)
    if model_error is not None:
        assert ("lacks features ['speed']" in model_error if "speed" not in context
                else "is not varied by this model" in model_error), model_error
        return
    for name, v in checked.items():
        feature = SPACE.features[name]
        assert math.isfinite(v) and feature.limits[0] <= v <= feature.limits[1]
        assert extrapolate or feature.bounds[0] <= v <= feature.bounds[1]
        assert abs(v) >= feature.minimum
    action = tiny_model.policy(context, allow_extrapolation=extrapolate).act(
        np.zeros((1, get_family("cheetah-run").obs_dim), np.float32))
    assert np.isfinite(np.asarray(action)).all()


@pytest.fixture(scope="module")
def tiny_model(tiny_run):
    from hyperzero.training import load_fit

    model = load_fit(tiny_run / "fits/hyperzero/seed_0")
    model.warn_outside_training = False  # fuzzed speeds leave the training range all the time
    return model


@pytest.fixture
def fresh_tiny_model(tiny_run):
    from hyperzero.training import load_fit

    return load_fit(tiny_run / "fits/hyperzero/seed_0")
