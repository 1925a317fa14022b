"""The Ray executor (a real local Ray instance on loopback) writes the same files as the local executor."""
import os

import pytest

from hyperzero.experts import train_experts

from .helpers import tiny

ray = pytest.importorskip("ray")
CONTEXTS = [{"speed": 2.0}, {"speed": -3.0}, {"speed": 5.0}]
FILES = {"expert.pt", "checkpoint.pt", "progress.csv", "tb", "summary.json",
         "expert.pt.sha256", "checkpoint.pt.sha256", "summary.json.sha256"}  # checksums of what a rerun trusts


def test_ray_sweep_makes_the_same_files_as_local(tmp_path):
    cfg = tiny(train_steps=200, eval_every=0)
    local = train_experts("cheetah-run", CONTEXTS, tmp_path / "local", cfg, ensemble_size=2, num_workers=1,
                          progress=False, gate=None)
    remote = train_experts("cheetah-run", CONTEXTS, tmp_path / "ray", cfg, ensemble_size=2, num_workers=2,
                           executor="ray", progress=False, gate=None)
    assert not ray.is_initialized()  # we started it, so we shut it down
    assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    for a, b in zip(local, remote):
        assert a["task_id"] == b["task_id"] and b["finished"] and b["train_steps"] == 200
        assert {p.name for p in (tmp_path / "ray" / b["task_id"]).iterdir()} == FILES
        # same seeds, single-threaded torch in both: the same expert, whichever executor trained it
        assert a["eval_return_mean"] == pytest.approx(b["eval_return_mean"], abs=1e-3)
    assert (tmp_path / "ray" / "run_info.json").exists()
