"""`fit_inputs_check`: whether a fit directory was made from this dataset, as an OutputCheck."""
from hyperzero.training.outputs import FIT_INPUTS, fit_inputs_check
from hyperzero.utils.io import atomic_write_json

TASKS = {"a": "1" * 64, "b": "2" * 64, "c": "3" * 64}


def test_a_fit_of_this_dataset_passes_and_nothing_recorded_is_not_a_mismatch(tmp_path):
    assert fit_inputs_check(tmp_path, "cheetah-run", ["speed"], TASKS).ok
    atomic_write_json(tmp_path / FIT_INPUTS, {"family": "cheetah-run", "context_names": ["speed"], "tasks": TASKS})
    assert fit_inputs_check(tmp_path, "cheetah-run", ["speed"], TASKS).ok


def test_another_family_or_a_changed_task_is_changed_and_names_it(tmp_path):
    atomic_write_json(tmp_path / FIT_INPUTS, {"family": "cheetah-run", "context_names": ["speed"], "tasks": TASKS})
    check = fit_inputs_check(tmp_path, "walker-walk", ["speed"], TASKS)
    assert check.state == "changed" and "cheetah-run" in check.reason and check.bucket == "stale"
    atomic_write_json(tmp_path / "split.json", {"train": ["a"], "val": ["b"], "test": ["c"]})
    assert fit_inputs_check(tmp_path, "cheetah-run", ["speed"], {**TASKS, "c": "9" * 64}).ok  # a test task: unused
    check = fit_inputs_check(tmp_path, "cheetah-run", ["speed"], {**TASKS, "b": "9" * 64})
    assert check.state == "changed" and "(b)" in check.reason


def test_a_damaged_record_is_damaged(tmp_path):
    atomic_write_json(tmp_path / FIT_INPUTS, {"family": "cheetah-run", "context_names": ["speed"], "tasks": TASKS})
    (tmp_path / FIT_INPUTS).write_text("{garbled")
    check = fit_inputs_check(tmp_path, "cheetah-run", ["speed"], TASKS)
    assert check.state == "damaged" and check.bucket == "corrupt"
