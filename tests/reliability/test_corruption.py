"""Every artifact a rerun trusts x {garble, truncate, empty}: named, moved aside, its unit redone; never used.

The matrix runs the pipeline's own checks (the ones each stage runs before it skips or resumes work)
on a damaged copy of a finished `tiny` run; two end-to-end reruns then show that the redone units give
the numbers of the undamaged run, and that a retrained expert invalidates what was made from it.
"""
import math
import shutil
from pathlib import Path

import pytest

from tests.reliability.conftest import DAMAGE, TINY_OVERRIDES, read_results

EXPERT = "experts/speed=2_torso_length=0.5"
FIT = "fits/hyperzero/seed_0"


def _unfinish_expert(run: Path) -> None:
    for name in ("summary.json", "expert.pt"):
        for p in (run / EXPERT / name, run / EXPERT / (name + ".sha256")):
            p.unlink()


def _unfinish_fit(run: Path) -> None:
    for name in ("done.json", "model.pt"):
        for p in (run / FIT / name, run / FIT / (name + ".sha256")):
            p.unlink()


# artifact kind -> (path in the run, what has to happen first, where it ends up: the unit that is redone)
ARTIFACTS = {
    "expert.pt": (f"{EXPERT}/expert.pt", None, EXPERT),
    "expert summary.json": (f"{EXPERT}/summary.json", None, EXPERT),
    "experts packing.json": ("experts/packing.json", None, "experts/packing.json"),
    "expert checkpoint (finished)": (f"{EXPERT}/checkpoint.pt", None, f"{EXPERT}/checkpoint.pt"),
    "expert checkpoint (unfinished)": (f"{EXPERT}/checkpoint.pt", _unfinish_expert, EXPERT),
    "dataset manifest.json": ("dataset/manifest.json", None, "dataset"),
    "dataset task file": ("dataset/tasks/speed=2_torso_length=0.5.npz", None,
                          "dataset/tasks/speed=2_torso_length=0.5.npz"),
    "fit model.pt": (f"{FIT}/model.pt", None, FIT),
    "fit done.json": (f"{FIT}/done.json", None, FIT),
    "fit split.json": (f"{FIT}/split.json", None, FIT),
    "fit run_info.json": (f"{FIT}/run_info.json", None, FIT),
    "fit inputs.json": (f"{FIT}/inputs.json", None, FIT),
    "fit checkpoint (finished)": (f"{FIT}/checkpoint.pt", None, f"{FIT}/checkpoint.pt"),
    "fit checkpoint (unfinished)": (f"{FIT}/checkpoint.pt", _unfinish_fit, FIT),
    "eval row": ("eval/rows/hyperzero/seed_0.json", None, "eval/rows/hyperzero/seed_0.json"),
    "eval results.csv": ("eval/results.csv", None, "eval/results.csv"),
    "eval done.json": ("eval/done.json", None, "eval/done.json"),
    "eval expert_returns.json": ("eval/expert_returns.json", None, "eval/expert_returns.json"),
    "config.yaml": ("config.yaml", None, "config.yaml"),
}


def run_checks(run: Path) -> None:
    """Every check the stages run before they trust their outputs (no training, no rollouts)."""
    from hyperzero.envs import context_id
    from hyperzero.launchers.config import resolve_config, resolve_contexts
    from hyperzero.launchers.config_files import load_config_source
    from hyperzero.datasets.outputs import dataset_check, dataset_task_checksums
    from hyperzero.evaluation.outputs import check_eval
    from hyperzero.experts.outputs import check_expert, check_packing
    from hyperzero.launchers.pipeline import previous_config
    from hyperzero.training.outputs import check_fit

    previous_config(run)
    check_packing(run)
    config = resolve_config(load_config_source("tiny")[0], TINY_OVERRIDES)
    contexts = resolve_contexts(config["family"], config["contexts"])
    for ctx in contexts:
        check_expert(run, run / "experts" / context_id(ctx))
    expected = {context_id(c) for c in contexts}
    check = dataset_check(run / "dataset", expected, 1, run / "experts", run)
    if check.bucket:
        check.set_aside(run, run / "dataset", f"dataset {check.reason}")
        return
    if check.ok:
        tasks = dataset_task_checksums(run / "dataset")
        for fit_dir in sorted(run.glob("fits/*/seed_*")):
            check_fit(run, fit_dir, tasks, config["family"], ["speed"])
    check_eval(run)


@pytest.mark.parametrize("mode", sorted(DAMAGE))
@pytest.mark.parametrize("kind", list(ARTIFACTS))
def test_damaged_artifact_is_named_and_moved_aside(run_copy, kind, mode, capsys):
    rel, prepare, unit = ARTIFACTS[kind]
    if prepare:
        prepare(run_copy)
    path = run_copy / rel
    original = path.read_bytes()
    DAMAGE[mode](path)
    run_checks(run_copy)
    said = capsys.readouterr().err
    assert unit in said and Path(rel).name in said, said  # the message names the unit and the damaged file
    assert "does not match the sha256" in said or "sha256 in manifest.json" in said, said
    # the damaged file is no longer where a rerun would trust it ...
    assert not path.exists() or path.read_bytes() == original
    # ... but kept for inspection, with the unit it belonged to
    moved = list((run_copy / "corrupt").glob(unit.replace("/", "__") + "-*"))
    assert moved, sorted(p.name for p in (run_copy / "corrupt").iterdir())


def test_intact_run_passes_every_check_untouched(run_copy, capsys):
    before = sorted(p.relative_to(run_copy) for p in run_copy.rglob("*"))
    run_checks(run_copy)
    assert capsys.readouterr().err == ""
    assert sorted(p.relative_to(run_copy) for p in run_copy.rglob("*")) == before


def test_damaged_outputs_are_redone_to_the_same_numbers(run_copy, tiny_run, capsys):
    """Garbled/truncated/empty dataset task, fit, eval caches and config at once; a leftover temp file."""
    from hyperzero.launchers.pipeline import Runtime, run_pipeline

    from tests.reliability.conftest import empty, garble, truncate

    truncate(run_copy / "dataset/tasks/speed=4_torso_length=0.5.npz")
    empty(run_copy / "fits/context_blind/seed_0/done.json")
    garble(run_copy / "eval/rows/hyperzero/seed_0.json")
    truncate(run_copy / "eval/results.csv")
    garble(run_copy / "eval/expert_returns.json")
    empty(run_copy / "config.yaml")
    (run_copy / "fits" / ".model.pt.abc123.tmp").write_bytes(b"half a file")
    run_pipeline("tiny", run_copy, TINY_OVERRIDES, runtime=Runtime(progress=False))
    said = capsys.readouterr().err
    for name in ("speed=4_torso_length=0.5.npz", "context_blind/seed_0", "results.csv", "expert_returns.json",
                 "config.yaml", "removed 1 temporary file"):
        assert name in said, (name, said)
    assert "experts: all 3 experts finished and valid; skipped" in said
    assert "dataset: collecting (1 task(s) to (re)collect: speed=4_torso_length=0.5)" in said
    assert not list(run_copy.rglob("*.tmp"))
    new, old = read_results(run_copy), read_results(tiny_run)
    assert [(r["method"], r["task_id"]) for r in new] == [(r["method"], r["task_id"]) for r in old]
    for a, b in zip(new, old):
        assert math.isclose(float(a["return_mean"]), float(b["return_mean"]), rel_tol=1e-5, abs_tol=1e-5), (a, b)
        assert math.isclose(float(a["expert_return"]), float(b["expert_return"]), rel_tol=1e-5, abs_tol=1e-5)


def test_retrained_expert_invalidates_its_dataset_task_fits_and_evaluation(run_copy, capsys):
    """An expert that changed since the dataset was collected (retrained with other settings or on another machine;
    a redo after damage reproduces it bit for bit, test_redo_reproducible.py) invalidates what was made from it."""
    import torch

    from hyperzero.datasets.format import read_manifest
    from hyperzero.launchers.pipeline import Runtime, run_pipeline
    from hyperzero.utils.integrity import fingerprint, verify
    from hyperzero.utils.io import atomic_torch_save, read_json

    task = "speed=2_torso_length=0.5"
    old_returns = read_json(run_copy / "eval/expert_returns.json")
    expert = run_copy / "experts" / task / "expert.pt"
    payload = torch.load(expert, weights_only=True)
    for k, v in payload["actor"].items():
        payload["actor"][k] = v + 1e-3  # a different, valid, checksummed expert
    atomic_torch_save(payload, expert)
    run_pipeline("tiny", run_copy, TINY_OVERRIDES, runtime=Runtime(progress=False))
    said = capsys.readouterr().err
    assert "experts: all 3 experts finished and valid; skipped" in said
    assert f"dataset/tasks/{task}.npz: collected from an expert that has since been retrained" in said
    assert "results are current" not in said
    new_expert = run_copy / "experts" / task / "expert.pt"
    assert verify(new_expert, required=True)
    entry = next(e for e in read_manifest(run_copy / "dataset")["tasks"] if e["task_id"] == task)
    assert entry["expert"]["sha256"] == fingerprint(new_expert)
    for fit_dir in run_copy.glob("fits/*/seed_0"):  # every fit trained (or validated) on that task was redone
        split = read_json(fit_dir / "split.json")
        if task in split["train"] + split["val"]:
            assert f"{fit_dir.relative_to(run_copy)}: was trained on dataset tasks that have changed" in said
            assert read_json(fit_dir / "inputs.json")["tasks"][task] == entry["sha256"]
    for key, entry in read_json(run_copy / "eval/expert_returns.json").items():
        if key.startswith(task + "|"):  # the task's reference returns come from the retrained expert
            assert entry["expert"] == fingerprint(new_expert)[:16] != old_returns[key]["expert"]
    assert all(math.isfinite(float(r["return_mean"])) for r in read_results(run_copy))


def test_a_file_written_before_checksums_is_adopted_after_it_loads(run_copy, capsys):
    from hyperzero.experts.outputs import check_expert
    from hyperzero.utils.integrity import checksum_path, verify

    expert = run_copy / EXPERT / "expert.pt"
    checksum_path(expert).unlink()
    assert check_expert(run_copy, run_copy / EXPERT)
    assert verify(expert, required=True)  # a checksum is recorded now, so later damage is caught
    shutil.copy(run_copy / "experts/speed=4_torso_length=0.5/expert.pt", expert)  # a different, valid file
    assert not check_expert(run_copy, run_copy / EXPERT)
    assert "expert.pt: content does not match" in capsys.readouterr().err


def test_checksums_are_sha256sum_compatible(tiny_run):
    import subprocess

    task = tiny_run / EXPERT
    check = subprocess.run(["sha256sum", "-c", "expert.pt.sha256", "summary.json.sha256"], cwd=task,
                           capture_output=True, text=True)
    assert check.returncode == 0 and "expert.pt: OK" in check.stdout, check.stdout + check.stderr


def test_a_damaged_file_error_survives_the_trip_from_a_worker_process():
    import pickle

    from hyperzero.utils.integrity import CorruptFileError
    from hyperzero.utils.io import CorruptJSONError

    for error in (CorruptFileError("/run/fits/a/model.pt", "truncated"), CorruptJSONError("/run/x.json", "not JSON")):
        back = pickle.loads(pickle.dumps(error))  # how a process pool returns a worker's exception
        assert type(back) is type(error) and back.path == error.path and str(back) == str(error)
