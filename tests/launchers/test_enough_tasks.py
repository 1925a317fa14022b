"""A dataset too small for the split protocol is refused before any fit starts, naming the gate's exclusions."""
import pytest

from hyperzero.launchers.config import fit_config
from hyperzero.training.outputs import check_enough_tasks as check_configs

FIT = {"methods": ["hyperzero"], "seeds": [0, 1], "lr_sweep": [3e-4, 1e-3]}


def check_enough_tasks(run_dir, section, manifest):
    """As the fit stage calls it: one FitConfig per split seed."""
    configs = [fit_config(section, section["methods"][0], seed) for seed in section["seeds"]]
    check_configs(run_dir, configs, manifest)


def manifest(n_tasks: int, excluded=()):
    return {"tasks": [{"task_id": f"speed={-(k + 1)}"} for k in range(n_tasks)],
            "excluded_tasks": [{"task_id": t} for t in excluded]}


def test_four_tasks_left_by_the_gate_are_refused_with_the_cause_and_the_fix(tmp_path):
    with pytest.raises(ValueError) as err:
        check_enough_tasks(tmp_path, FIT, manifest(4, excluded=["speed=1", "speed=2"]))
    message = str(err.value)
    assert "4 usable task(s)" in message and "speed=1, speed=2" in message and "gate.json" in message
    assert "lr_sweep" in message and "experts.train_steps" in message and "exclude_flagged=false" in message


def test_enough_tasks_or_no_need_for_validation_pass(tmp_path):
    check_enough_tasks(tmp_path, FIT, manifest(8))  # 3 test, 1 validation, 4 train
    # selection=auto without lr_sweep falls back to the last checkpoint: 4 tasks are fine
    check_enough_tasks(tmp_path, {"methods": ["hyperzero"], "seeds": [0]}, manifest(4))
    with pytest.raises(ValueError, match="selection=return"):
        check_enough_tasks(tmp_path, {"methods": ["hyperzero"], "seeds": [0], "selection": "return"}, manifest(4))
