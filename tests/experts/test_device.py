"""Devices: CUDA where it is asked for and present, a clear refusal where it is not.

The CUDA tests run only on a machine with a GPU (`torch.cuda.is_available()`); on CPU-only machines they are
skipped and pytest's summary says so. docs/experts.md says which of them have run on a GPU.
"""
import numpy as np
import pytest
import torch

from hyperzero.experts import load_expert, train_group

from .helpers import task, tiny

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_refused_before_anything_is_written(tmp_path):
    spec = task(tmp_path, 1, speed=2.0)
    with pytest.raises(ValueError, match="CUDA is not available; use --device cpu or auto"):
        train_group("cheetah-run", [spec], tiny(device="cuda"), progress=False)
    assert not any(tmp_path.iterdir())


@cuda
def test_an_expert_trained_on_cuda_acts_on_the_cpu_as_on_the_gpu(tmp_path):
    specs = [task(tmp_path, 3, speed=2.0), task(tmp_path, 4, speed=-3.0)]
    summaries = train_group("cheetah-run", specs, tiny(device="cuda", train_steps=400), progress=False)
    assert [s["task_id"] for s in summaries] == [t.task_id for t in specs]
    assert all(np.isfinite(s["eval_return_mean"]) for s in summaries)
    obs = np.random.default_rng(0).normal(size=(64, 17)).astype(np.float32)
    for spec in specs:
        on_cpu, on_gpu = load_expert(spec.dir, "cpu"), load_expert(spec.dir, "cuda")
        # one fp32 network on two devices: equal up to the kernels' rounding (TF32 would be far coarser)
        np.testing.assert_allclose(on_gpu.act(obs), on_cpu.act(obs), rtol=1e-4, atol=1e-4)
        act = on_cpu.act(obs)
        np.testing.assert_allclose(on_gpu.q(obs, act), on_cpu.q(obs, act), rtol=1e-4, atol=1e-3)


@cuda
def test_a_cuda_run_resumes_from_its_checkpoint_and_finishes(tmp_path):
    spec = task(tmp_path, 5, speed=3.0)
    train_group("cheetah-run", [spec], tiny(device="cuda", train_steps=200, replay_capacity=1000), progress=False)
    summary = train_group("cheetah-run", [spec], tiny(device="cuda", train_steps=400, replay_capacity=1000),
                          progress=False)[0]
    assert summary["train_steps"] == 400 and (spec.dir / "expert.pt").exists()
    assert load_expert(spec.dir).act(np.zeros((1, 17), np.float32)).shape == (1, 6)


def test_a_gpu_is_shared_by_at_most_four_workers_running_larger_ensembles():
    from hyperzero.experts.sweep import default_packing

    assert default_packing(32, cores=16, on_gpu=False) == (16, 2)  # CPU: one worker per core, <= 8 members
    assert default_packing(200, cores=16, on_gpu=False) == (16, 8)
    assert default_packing(32, cores=16, on_gpu=True) == (4, 8)  # 16 x 2 on one GPU was the slowest measured
    assert default_packing(200, cores=16, on_gpu=True) == (4, 32)
    assert default_packing(3, cores=16, on_gpu=True) == (3, 1)
    assert default_packing(32, cores=16, on_gpu=True, num_workers=16, ensemble_size=2) == (16, 2)  # asked for
