"""A redone expert reproduces the one it replaces: it is retrained in the ensemble it was first packed into.

A member's numbers depend on its ensemble's size (fused Adam updates parameters whose per-member size is not a
multiple of the SIMD width through a vector path in one stack and a scalar path in another; shared experience
reads the ensemble mates' transitions), so `packing.json` records each stage's ensembles and a redo re-simulates
the finished mates in `.shadow/`.
"""
import errno
import hashlib
import os
import shutil
from pathlib import Path

import pytest

from hyperzero.experts import train_experts
from hyperzero.experts.sweep import PLAN, SHADOW, _as_of, plan_runs
from hyperzero.experts.trainer import TaskSpec
from hyperzero.utils.io import DiskFullError, atomic_torch_save, atomic_write_json

from .helpers import tiny

CONTEXTS = [{"speed": -4.0}, {"speed": 2.0}, {"speed": 4.0}]
MIDDLE = "speed=2_torso_length=0.5"
CFG = tiny(train_steps=200, eval_every=0)


def _train(out: Path, **kw):
    return train_experts("cheetah-run", CONTEXTS, out, CFG, ensemble_size=3, num_workers=1, gate=None, **kw)


def _hashes(out: Path) -> dict[str, str]:
    return {p.parent.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*/expert.pt"))}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "experts"
    _train(out, progress=False)
    return out


def _copy(reference: Path, tmp_path: Path) -> Path:
    out = tmp_path / "experts"
    shutil.copytree(reference, out)
    return out


def test_the_packing_is_recorded(reference):
    from hyperzero.utils.io import read_json

    plan = read_json(reference / PLAN)
    groups = plan["stages"]["experts"]["groups"]
    assert [[m["task_id"] for m in g] for g in groups] == [[
        "speed=-4_torso_length=0.5", MIDDLE, "speed=4_torso_length=0.5"]]
    assert plan["stages"]["experts"]["torch_threads"] == 1


@pytest.mark.parametrize("record", ["packing.json", "no packing.json (a run made before it existed)"])
def test_a_redone_expert_is_bit_for_bit_the_one_it_replaces(reference, tmp_path, record, capsys):
    out = _copy(reference, tmp_path)
    if record.startswith("no"):
        for p in (out / PLAN, out / (PLAN + ".sha256")):
            p.unlink()
    shutil.rmtree(out / MIDDLE)  # what the pipeline does with a damaged expert.pt (moved to corrupt/)
    _train(out, progress=True)
    said = capsys.readouterr().err
    assert "re-simulating 2 finished ensemble mate(s)" in said
    assert "reproduced their saved experts bit for bit" in said
    assert _hashes(out) == _hashes(reference)
    assert not (out / SHADOW).exists()


def test_a_redo_on_its_own_would_differ(reference, tmp_path):
    """Why the packing is kept: the same task trained alone rounds differently (here: the actor's 6-unit output
    bias, updated by fused Adam's scalar tail alone but by its vector path in a stack of 3)."""
    import torch

    solo = tmp_path / "solo"
    train_experts("cheetah-run", [CONTEXTS[1]], solo, CFG, ensemble_size=1, num_workers=1, gate=None,
                  progress=False)
    a = torch.load(solo / MIDDLE / "expert.pt", weights_only=True)
    b = torch.load(reference / MIDDLE / "expert.pt", weights_only=True)
    diff = max((a[part][k] - b[part][k]).abs().max().item() for part in ("actor", "critic") for k in a[part])
    assert 0 < diff < 1e-4


def test_a_disk_full_between_two_members_checkpoints_restarts_the_ensemble_to_the_same_experts(
        reference, tmp_path, monkeypatch, capsys):
    out = tmp_path / "experts"
    real_fsync = os.fsync
    failed = []

    def fsync(fd):  # the third member's first checkpoint finds the disk full
        name = os.readlink(f"/proc/self/fd/{fd}")
        if not failed and "speed=4_torso_length=0.5/.checkpoint.pt." in name:
            failed.append(name)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr("hyperzero.utils.io.os.fsync", fsync)
    with pytest.raises(DiskFullError, match="No space left on device while writing .*speed=4_torso_length=0.5/"
                                            "checkpoint.pt .*rerun the same command to resume"):
        _train(out, progress=False)
    monkeypatch.setattr("hyperzero.utils.io.os.fsync", real_fsync)
    assert not list(out.rglob("*.tmp"))
    _train(out, progress=True)
    assert "restarts from step 0: its members' checkpoints are at steps [0, 100]" in capsys.readouterr().err
    assert _hashes(out) == _hashes(reference)


def test_plan_runs_marks_shadows_and_a_damaged_shadow_checkpoint_restarts(tmp_path):
    out = tmp_path / "experts"
    tasks = [TaskSpec(f"t{i}", {"speed": float(i + 1)}, 2, out / f"t{i}") for i in range(3)]
    runs, plan = plan_runs("cheetah-run", tasks, CFG, out, 2, 1, False, "experts", tasks, progress=False)
    assert [[t.task_id for t in r.tasks] for r in runs] == [["t0", "t1"], ["t2"]] and not any(r.shadows for r in runs)
    atomic_write_json(out / PLAN, plan)
    for t in tasks[:1]:  # t0 finished; t1 is redone beside it
        atomic_write_json(t.dir / "summary.json", {"finished": True, "ensemble_size": 2})
    runs, _ = plan_runs("cheetah-run", [tasks[1]], CFG, out, 2, 1, False, "experts", tasks, progress=False)
    (run,) = runs
    assert [t.task_id for t in run.tasks] == ["t0", "t1"] and run.tasks[0].dir == out / SHADOW / "experts" / "t0"
    assert not run.fresh
    atomic_torch_save({"step": 100}, run.tasks[1].dir / "checkpoint.pt")
    atomic_torch_save({"step": 100}, run.tasks[0].dir / "checkpoint.pt")
    assert not plan_runs("cheetah-run", [tasks[1]], CFG, out, 2, 1, False, "experts", tasks, False)[0][0].fresh
    (run.tasks[0].dir / "checkpoint.pt").write_bytes(b"garbage")  # a damaged shadow checkpoint: start over
    assert plan_runs("cheetah-run", [tasks[1]], CFG, out, 2, 1, False, "experts", tasks, False)[0][0].fresh


def test_the_gate_judges_a_redo_against_the_summaries_it_first_saw(tmp_path):
    """A neighbour promoted to its better retry since must not change the redone task's verdict or warm start."""
    task = TaskSpec("t", {"speed": 2.0}, 2, tmp_path / "t")
    atomic_write_json(task.dir / "retry-1" / "summary.json", {"eval_return_mean": 900.0, "floor_return": 5.0,
                                                               "seed": 1002})
    summary = {"task_id": "t", "eval_return_mean": 900.0, "floor_return": 5.0, "seed": 1002,
               "first_attempt": {"seed": 2, "eval_return_mean": 100.0, "floor_return": 4.0},
               "retries": [{"attempt": 1, "dir": "retry-1", "seed": 1002, "eval_return_mean": 900.0}]}
    assert _as_of(task, summary, 1)["eval_return_mean"] == 100.0 and _as_of(task, summary, 1)["floor_return"] == 4.0
    assert _as_of(task, summary, 2)["eval_return_mean"] == 900.0 and _as_of(task, summary, 2)["floor_return"] == 5.0
    plain = {"task_id": "t", "eval_return_mean": 50.0}
    assert _as_of(task, plain, 1) is plain


GATE_CONTEXTS = [{"speed": s} for s in (1.0, 2.0, 3.0, 4.0, -2.0)]


@pytest.fixture(scope="module")
def gated(tmp_path_factory) -> Path:
    """Speeds 1 and -2 pass outright (-2 vouches for the others), 2, 3 and 4 fail and are retried in one ensemble,
    warm-started from speed 1."""
    out = tmp_path_factory.mktemp("gated") / "experts"
    train_experts("cheetah-run", GATE_CONTEXTS, out, CFG, ensemble_size=4, num_workers=1, progress=False, gate=GATE)
    return out


def _gate():
    from hyperzero.experts.gate import GateConfig

    return GateConfig(ceiling_fraction=0.14, vouch_fraction=0.14, neighbour_fraction=0.3, max_retries=1)


GATE = _gate()


@pytest.mark.parametrize("record", ["packing.json", "no packing.json"])
def test_a_redone_expert_with_a_gate_retry_is_the_one_it_replaces(gated, tmp_path, record, capsys):
    from hyperzero.utils.io import read_json

    plan = read_json(gated / PLAN)["stages"]
    assert sorted(plan) == ["experts", "gate-retry-1-warm"]
    assert [[m["task_id"][:8] for m in g] for g in plan["gate-retry-1-warm"]["groups"]] == [
        ["speed=2_", "speed=3_", "speed=4_"]]
    out = _copy(gated, tmp_path)
    if record.startswith("no"):
        for p in (out / PLAN, out / (PLAN + ".sha256")):
            p.unlink()
    redone = "speed=4_torso_length=0.5"
    shutil.rmtree(out / redone)
    train_experts("cheetah-run", GATE_CONTEXTS, out, CFG, ensemble_size=4, num_workers=1, progress=True, gate=GATE)
    said = capsys.readouterr().err
    assert said.count("reproduced their saved experts bit for bit") == 2, said  # the first attempt and the retry
    assert _hashes(out) == _hashes(gated)
    for name in ("expert.pt", "retry-1/expert.pt"):
        assert (out / redone / name).read_bytes() == (gated / redone / name).read_bytes()
    keys = ("eval_return_mean", "floor_return", "seed", "retries", "flagged", "gate", "first_attempt")
    new, old = read_json(out / redone / "summary.json"), read_json(gated / redone / "summary.json")
    for summary in (new, old):  # warm starts are recorded as paths, and the copy lives elsewhere
        for r in summary["retries"]:
            r["warm_start"] = Path(r["warm_start"]).parent.name
    assert new["retries"][0]["warm_start"] == "speed=1_torso_length=0.5"
    assert {k: new.get(k) for k in keys} == {k: old.get(k) for k in keys}
    assert read_json(out / "gate.json") == read_json(gated / "gate.json")
