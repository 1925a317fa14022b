import json

import numpy as np

import pytest

from hyperzero.datasets.splits import Split, make_split

TASKS = [f"speed={v:g}_torso_length=0.5" for v in range(-10, 11) if v != 0]  # 20 tasks


@pytest.mark.parametrize("protocol,n_test", [("paper", 3), ("hypogen", 16)])
def test_split_sizes_disjoint_and_complete(protocol, n_test):
    split = make_split(TASKS, seed=0, protocol=protocol)
    assert len(split.test) == n_test  # int(0.15 * 20) = 3, int(0.8 * 20) = 16
    train, val, test = set(split.train), set(split.val), set(split.test)
    assert not (test & train) and not (test & val) and not (train & val)
    assert train | val | test == set(TASKS)
    assert len(split.train) >= 1


def test_val_is_carved_from_train_and_never_from_test():
    for seed in range(20):
        with_val = make_split(TASKS, seed, val_fraction=0.15)
        without = make_split(TASKS, seed, val_fraction=0.0)
        assert with_val.test == without.test  # validation never changes the test set
        assert set(with_val.train) | set(with_val.val) == set(without.train)
        assert len(with_val.val) >= 1 and without.val == []


def test_deterministic_per_seed_and_different_across_seeds():
    assert make_split(TASKS, 3) == make_split(list(reversed(TASKS)), 3)  # input order is irrelevant
    tests = {tuple(make_split(TASKS, s).test) for s in range(10)}
    assert len(tests) > 5


def test_every_seed_holds_out_some_task_and_never_leaks():
    for protocol in ("paper", "hypogen"):
        for seed in range(30):
            s = make_split(TASKS, seed, protocol)
            s.check()
            assert not set(s.test) & (set(s.train) | set(s.val))


def test_small_task_sets():
    s = make_split(["a", "b"], 0)
    assert len(s.test) == 1 and len(s.train) == 1 and s.val == []
    s = make_split(["a", "b", "c", "d"], 0, "hypogen")  # 80 % of 4 -> 3 test, 1 train, no room for val
    assert (len(s.train), len(s.val), len(s.test)) == (1, 0, 3)
    with pytest.raises(ValueError, match="at least 2 tasks"):
        make_split(["a"], 0)
    with pytest.raises(ValueError, match="unknown split protocol"):
        make_split(TASKS, 0, protocol="random")
    with pytest.raises(ValueError, match="val_fraction"):
        make_split(TASKS, 0, val_fraction=1.0)


def test_json_round_trip(tmp_path):
    s = make_split(TASKS, 4, "paper")
    path = tmp_path / "split.json"
    text = s.to_json(path)
    assert Split.from_json(path) == s
    assert Split.from_json(text) == s
    obj = json.loads(text)
    obj["test"].append(obj["train"][0])
    (tmp_path / "bad.json").write_text(json.dumps(obj))
    with pytest.raises(ValueError, match="overlaps"):
        Split.from_json(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="broken.json"):
        Split.from_json(tmp_path / "broken.json")


@pytest.mark.parametrize("n, n_test", [(2, 1), (3, 1), (4, 2), (5, 3), (8, 3), (12, 3), (20, 3), (40, 6)])
def test_paper_protocol_holds_out_at_least_three_tasks_when_enough_remain(n, n_test):
    ids = [f"t{i:02d}" for i in range(n)]
    for seed in range(5):
        split = make_split(ids, seed)
        assert len(split.test) == n_test
        assert len(split.train) >= 1 and set(split.train) | set(split.val) | set(split.test) == set(ids)


def test_test_fraction_and_floor_are_configurable():
    assert len(make_split(TASKS, 0, test_fraction=0.5).test) == 10
    assert len(make_split(TASKS, 0, min_test_tasks=1).test) == 3                  # the authors' int(0.15 * 20)
    assert len(make_split(TASKS[:8], 0, min_test_tasks=1).test) == 1              # int(0.15 * 8) = 1
    assert len(make_split(TASKS[:8], 0, min_test_tasks=5).test) == 5
    split = make_split(TASKS, 2, test_fraction=0.5)
    assert Split.from_json(split.to_json()) == split and split.test_fraction == 0.5
    with pytest.raises(ValueError, match="test_fraction"):
        make_split(TASKS, 0, test_fraction=1.0)
    with pytest.raises(ValueError, match="min_test_tasks"):
        make_split(TASKS, 0, min_test_tasks=0)


def test_hypogen_protocol_takes_the_first_80_percent_of_the_same_shuffle_as_test():
    for seed in range(5):
        paper, hypogen = make_split(TASKS, seed), make_split(TASKS, seed, "hypogen")
        order = list(np.random.default_rng(seed).permutation(sorted(TASKS)))  # HyPoGen: rng.shuffle(sorted ids)
        assert hypogen.test == sorted(order[:16]) and paper.test == sorted(order[:3])
        assert len(hypogen.train) + len(hypogen.val) == 4


def test_never_test_tasks_are_held_out_only_when_nothing_else_is_left():
    for seed in range(10):
        plain = make_split(TASKS, seed)
        avoid = plain.test[:2]
        split = make_split(TASKS, seed, never_test=avoid)
        assert not set(avoid) & set(split.test) and len(split.test) == len(plain.test)
        assert set(plain.test) - set(avoid) <= set(split.test)     # the other test tasks stay
    few = make_split(["a", "b", "c"], 0, never_test=["a", "b", "c"])
    assert len(few.test) == 1


@pytest.mark.parametrize("n", [21, 22, 24, 25, 49])
def test_without_val_tasks_every_non_test_task_trains_and_the_test_tasks_are_those_of_the_default(n):
    """What FitConfig.validation="train" asks of make_split (val_fraction 0): the dense grids keep every
    non-test task for training, and hold out exactly the tasks the default rule holds out (>= 3)."""
    ids = [f"t{i:02d}" for i in range(n)]
    for seed in range(5):
        default, kept = make_split(ids, seed), make_split(ids, seed, val_fraction=0.0)
        assert default.val and not kept.val and kept.test == default.test and len(kept.test) >= 3
        assert sorted(kept.train) == sorted(set(ids) - set(kept.test))
