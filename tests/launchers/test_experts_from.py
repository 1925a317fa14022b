"""`hyperzero run --experts-from RUN`: a run uses another run's finished experts (hard links) when, and only when,
they were made with the same family and experts section, on a grid that contains every task of the run."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hyperzero.evaluation.report import cpu_time
from hyperzero.launchers.pipeline import Runtime, run_pipeline

REPO = Path(__file__).resolve().parents[2]
QUIET = Runtime(progress=False)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("experts-from") / "source"
    run_pipeline("tiny", run, ["fit.seeds=[0]"], runtime=QUIET, stop_after="experts")
    return run


def test_linked_experts_are_used_not_retrained(source, tmp_path, capsys):
    other = tmp_path / "other"
    # a different fit setting: the experts are the same, so they are linked and the stage skips
    run_pipeline("tiny", other, ["fit.seeds=[0]", "fit.steps=12"], runtime=QUIET, stop_after="dataset",
                 experts_from=source)
    err = capsys.readouterr().err
    assert f"linked the finished experts of {source.resolve()}" in err
    assert "experts: all 3 experts finished and valid; skipped" in err
    experts = sorted(source.glob("experts/*/expert.pt"))
    assert len(experts) == 3
    for path in experts:
        linked = other / path.relative_to(source)
        assert os.path.samefile(path, linked)  # hard links: nothing copied, nothing retrained
    assert (other / "dataset" / "manifest.json").exists()
    info = json.loads((other / "run_info.json").read_text())
    assert info["experts_from"] == str(source.resolve())
    # the experts' CPU time belongs to the run that trained them: counted there, not again here
    assert cpu_time(source)["experts"]["seconds"] > 0
    assert cpu_time(other)["experts"] == {"seconds": 0.0, "count": 0, "unrecorded": 0,
                                          "linked_from": str(source.resolve())}
    # resuming with the same source is a no-op; another source into a run that has experts is refused
    run_pipeline("tiny", other, ["fit.seeds=[0]", "fit.steps=12"], runtime=QUIET, stop_after="experts",
                 experts_from=source)
    # resuming without --experts-from keeps the record: the experts are still the source's, and not counted here
    run_pipeline("tiny", other, ["fit.seeds=[0]", "fit.steps=12"], runtime=QUIET, stop_after="experts")
    assert json.loads((other / "run_info.json").read_text())["experts_from"] == str(source.resolve())
    assert cpu_time(other)["experts"]["linked_from"] == str(source.resolve())
    copy = tmp_path / "copy"
    shutil.copytree(source, copy)
    with pytest.raises(ValueError, match="exists already"):
        run_pipeline("tiny", other, ["fit.seeds=[0]", "fit.steps=12"], runtime=QUIET, experts_from=copy)


def test_experts_of_another_config_are_refused(source, tmp_path):
    for override, match in (("experts.train_steps=300", r"experts.train_steps differ.*whose family and experts"),
                            ("contexts.grid.speed=[-4,2,5]", r"no expert for task\(s\) \['speed=5_torso_length=0.5'\]")):
        run = tmp_path / override.split("=")[0]
        with pytest.raises(ValueError, match=match):
            run_pipeline("tiny", run, ["fit.seeds=[0]", override], runtime=QUIET, experts_from=source)
        assert not run.exists()  # refused before anything is written
    # scheduling only (how many workers) does not change what the experts are
    run = tmp_path / "workers"
    run_pipeline("tiny", run, ["fit.seeds=[0]", "experts.num_workers=2"], runtime=QUIET, stop_after="experts",
                 experts_from=source)
    linked = sorted(run.glob("experts/*/expert.pt"))
    assert len(linked) == 3 and all(os.path.samefile(p, source / p.relative_to(run)) for p in linked)


def test_part_of_a_denser_grid_is_linked(source, tmp_path, capsys):
    """A run on part of the source's grid (e.g. a reduced setting beside its dense one) links only its own
    tasks' experts: its dataset holds its tasks and nothing else."""
    part = tmp_path / "part"
    run_pipeline("tiny", part, ["fit.seeds=[0]", "contexts.grid.speed=[-4,4]"], runtime=QUIET, stop_after="dataset",
                 experts_from=source)
    assert "(2 of its 3 tasks)" in capsys.readouterr().err
    own = ["speed=-4_torso_length=0.5", "speed=4_torso_length=0.5"]
    assert sorted(p.parent.name for p in part.glob("experts/*/expert.pt")) == own
    assert all(os.path.samefile(part / "experts" / t / "expert.pt", source / "experts" / t / "expert.pt") for t in own)
    assert json.loads((part / "experts" / "experts_source.json").read_text())["tasks"] == own
    manifest = json.loads((part / "dataset" / "manifest.json").read_text())
    assert sorted(t["task_id"] for t in manifest["tasks"]) == own


def test_unfinished_or_missing_source_is_refused(source, tmp_path):
    unfinished = tmp_path / "unfinished"
    shutil.copytree(source, unfinished)
    task = sorted(p.parent for p in unfinished.glob("experts/*/summary.json"))[0]
    (task / "summary.json").unlink()
    with pytest.raises(ValueError, match=rf"experts \['{task.name}'\] are not finished"):
        run_pipeline("tiny", tmp_path / "a", ["fit.seeds=[0]"], runtime=QUIET, experts_from=unfinished)
    with pytest.raises(ValueError, match="no config.yaml there"):
        run_pipeline("tiny", tmp_path / "b", ["fit.seeds=[0]"], runtime=QUIET, experts_from=tmp_path / "nowhere")


def test_the_option_is_on_the_command_line(source, tmp_path):
    env = {**os.environ, "MUJOCO_GL": "egl"}
    out = subprocess.run([sys.executable, "-m", "hyperzero", "run", "tiny", "--out", str(tmp_path / "cli"),
                          "--set", "fit.seeds=[0]", "--experts-from", str(source), "--stop-after", "experts",
                          "--no-progress"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "linked the finished experts" in out.stderr
    help_text = subprocess.run([sys.executable, "-m", "hyperzero", "run", "--help"], cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=120).stdout
    assert "--experts-from RUN_DIR" in help_text
