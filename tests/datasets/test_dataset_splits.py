import json

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
