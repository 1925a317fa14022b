"""`hyperzero run --device`: the whole pipeline on CUDA where there is a GPU; refused up front where there is not."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hyperzero.utils.io import read_json

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "MUJOCO_GL": "egl", "PYTHONUNBUFFERED": "1"}


def run(out: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hyperzero", "run", "tiny", "--no-progress", "--out", str(out),
                           "--set", "evaluate.videos=false", *extra],
                          cwd=REPO, env={**ENV, **(env or {})}, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("ask, named, fix", [(["--device", "cuda"], "--device cuda", "--device cpu"),
                                             (["--set", "fit.device=cuda"], "fit.device=cuda",
                                              "--set fit.device=auto")])
def test_a_device_this_machine_lacks_is_refused_before_the_run_directory_exists(tmp_path, ask, named, fix):
    out = tmp_path / "run"
    proc = run(out, *ask)
    assert proc.returncode == 2
    assert f"{named} was asked for, but CUDA is not available" in proc.stderr and fix in proc.stderr
    assert not out.exists()


def test_an_experts_bf16_the_cpu_would_only_emulate_is_refused_before_the_run_directory_exists(tmp_path):
    # capping oneDNN at AVX2 makes any x86 CPU one without native bf16, as an AMD EPYC Zen 3 is
    out = tmp_path / "run"
    proc = run(out, "--device", "cpu", "--set", "experts.precision=bf16", env={"ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert proc.returncode == 2
    assert "experts.precision=bf16 was asked for" in proc.stderr and "capped at AVX2" in proc.stderr
    assert "--set experts.precision=auto" in proc.stderr
    assert not out.exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_whole_pipeline_runs_on_cuda(tmp_path):
    # with the imitation settings the presets use: perturbed data, normalised observations, context noise
    out = tmp_path / "run"
    proc = run(out, "--device", "cuda", "--set", "dataset.action_noise=0.2", "--set", "fit.model.obs_norm=true",
               "--set", "fit.context_noise=0.4")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fits = sorted(out.glob("fits/*/seed_*"))
    assert len(fits) == 4
    for fit in fits:
        effective = read_json(fit / "run_info.json")["effective"]
        assert effective["device"].startswith("cuda")
        if "hyperzero" in fit.parts:
            assert effective["context_noise_std"]["speed"] > 0 and effective["context_noise_keeps_sign"] == ["speed"]
    assert (out / "eval" / "results.csv").exists() and (out / "report.md").exists()
