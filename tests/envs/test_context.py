import numpy as np
import pytest

from hyperzero.envs import get_family, make
from hyperzero.envs.context import context_id, parse_values


@pytest.fixture
def space():
    return get_family("cheetah-run").context_space


def test_defaults_and_validation_fill_core_features(space):
    assert space.validate({"speed": -4}) == {"speed": -4.0, "torso_length": 0.5}
    # optional extra features appear only when set
    assert space.validate({"gravity": 5.0})["gravity"] == 5.0


@pytest.mark.parametrize("ctx, words", [
    ({"speed": 0}, ["speed", "0", "direction"]),
    ({"speed": float("nan")}, ["speed", "nan", "not finite"]),
    ({"speed": float("inf")}, ["speed", "inf"]),
    ({"torso_length": 5.0}, ["torso_length", "5.0", "[0.1, 1.5]"]),
    ({"torso_length": -0.2}, ["torso_length", "-0.2"]),
    ({"tail_length": 1.0}, ["tail_length", "unknown", "speed"]),
    ({"speed": "fast"}, ["speed", "fast", "not a number"]),
])
def test_bad_context_raises_clear_error(space, ctx, words):
    with pytest.raises(ValueError) as e:
        space.validate(ctx)
    for w in words:
        assert w in str(e.value)


def test_extrapolation_is_possible_but_explicit(space):
    with pytest.raises(ValueError, match="allow_extrapolation"):
        space.validate({"speed": 12.0})
    assert space.validate({"speed": 12.0}, allow_extrapolation=True)["speed"] == 12.0
    with pytest.raises(ValueError, match="allow_extrapolation"):
        make("cheetah-run", context={"torso_length": 0.9})
    assert make("cheetah-run", context={"torso_length": 0.9}, allow_extrapolation=True).context["torso_length"] == 0.9


def test_grids_match_the_authors_sweeps(space):
    speeds = space.grid(speed="-10:10:0.5")
    values = sorted(c["speed"] for c in speeds)
    assert len(values) == 40 and 0.0 not in values and values[0] == -10 and values[-1] == 10
    grid = space.grid(speed=[1, 2, 3, 4, 5], torso_length="0.3:0.7:0.05")
    assert len(grid) == 45
    assert sorted({c["torso_length"] for c in grid}) == pytest.approx([0.3 + 0.05 * i for i in range(9)])
    assert parse_values("0.3:0.7:0.05")[-1] == 0.7


def test_sampling_is_seeded_and_in_bounds(space):
    a = space.sample(20, seed=3, names=["speed", "torso_length"])
    b = space.sample(20, seed=3, names=["speed", "torso_length"])
    c = space.sample(20, seed=4, names=["speed", "torso_length"])
    assert a == b and a != c
    assert all(-10 <= x["speed"] <= 10 and 0.3 <= x["torso_length"] <= 0.7 for x in a)


def test_normalisation_maps_bounds_to_unit_interval(space):
    names = ["speed", "torso_length"]
    v = space.to_vector({"speed": -10, "torso_length": 0.7}, names)
    assert v.dtype == np.float32
    np.testing.assert_allclose(space.normalize(v, names), [-1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(space.normalize(space.to_vector({"speed": 0.5}, names), names), [0.05, 0.0], atol=1e-6)
    np.testing.assert_allclose(space.denormalize(space.normalize(v, names), names), v, atol=1e-6)
    # extrapolation leaves [-1, 1] rather than being clipped
    assert space.normalize(np.array([20.0]), ["speed"])[0] == pytest.approx(2.0)


def test_context_id_is_readable_and_distinct():
    assert context_id({"speed": -4.0, "torso_length": 0.6}) == "speed=-4_torso_length=0.6"
    assert context_id({"speed": 0.5}) != context_id({"speed": -0.5})


@pytest.mark.parametrize("speed", [5e-324, 0.01, -0.049])
def test_speed_below_the_stated_minimum_is_refused(space, speed):
    from hyperzero.envs import MIN_ABS_SPEED

    with pytest.raises(ValueError, match=r"'speed': \|value\| .* is below the minimum 0.05 m/s"):
        space.validate({"speed": speed}, allow_extrapolation=True)
    assert space.validate({"speed": -MIN_ABS_SPEED})["speed"] == -0.05
    with pytest.raises(ValueError, match=r"'speed'.*minimum 0.05 rad/s"):
        get_family("finger-spin").context_space.validate({"speed": 0.001})
    samples = space.sample(500, seed=0, names=["speed"])
    assert min(abs(c["speed"]) for c in samples) >= MIN_ABS_SPEED


def test_validate_for_defaults_nothing_the_model_varies(space):
    with pytest.raises(ValueError, match=r"context lacks features \['speed'\]: this model varies \['speed'\]"):
        space.validate_for({"torso_length": 0.6}, ["speed"])
    with pytest.raises(ValueError, match=r"unknown context feature\(s\) \['wind'\].*this model varies \['speed'\]"):
        space.validate_for({"speed": 2.0, "wind": 1.0}, ["speed"])


def test_validate_for_fixes_the_other_features_at_the_built_value(space):
    # another value of a feature the model does not vary is refused, naming it and its fixed value
    with pytest.raises(ValueError, match=r"'torso_length' = 0.6 is not varied by this model.*fixed at 0.5 m"):
        space.validate_for({"speed": 2.0, "torso_length": 0.6}, ["speed"])
    with pytest.raises(ValueError, match=r"'gravity' = 5 is not varied by this model.*fixed at 9.81"):
        space.validate_for({"speed": 2.0, "gravity": 5.0}, ["speed"])
    # the built value itself (given or left out) is accepted, and the result holds what the model was built at
    assert space.validate_for({"speed": 2.0, "gravity": 9.81}, ["speed"]) == {"speed": 2.0, "torso_length": 0.5}
    built = {"speed": 1.0, "torso_length": 0.6, "gravity": 5.0}
    assert space.validate_for({"speed": 2.0}, ["speed"], fixed=built) == {"speed": 2.0, "torso_length": 0.6,
                                                                          "gravity": 5.0}
    with pytest.raises(ValueError, match="fixed at 0.6"):
        space.validate_for({"speed": 2.0, "torso_length": 0.5}, ["speed"], fixed=built)
