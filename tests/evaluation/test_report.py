"""report.md / report.html from a run directory's real files; the HTML embeds its figures, the statistics with
their intervals, the per-task table (raw, expert, floor, score) and the fits' selection and budgets."""
import json
import re

from hyperzero.cli import main
from hyperzero.evaluation.figures import make_all_figures
from hyperzero.evaluation.metrics import ResultRow, write_results
from hyperzero.evaluation.report import write_report
from hyperzero.evaluation.stats import aggregate, stats_to_csv_text


def test_report_is_self_contained_and_lists_experts(tmp_path):
    run = tmp_path / "run"
    rows = [ResultRow(m, s, f"speed={v:g}", {"speed": v}, 2, r + 10 * s, 1.0, 500.0, 100.0,
                      "flagged expert" if v == 5.0 else "")
            for m, r in (("hyperzero", 450.0), ("context_blind", 150.0)) for s in (0, 1) for v in (-4.0, 4.0, 5.0)]
    for method, steps in (("hyperzero", [100, 200, 300, 400, 500]), ("context_blind", [100, 200, 300, 400, 500])):
        for seed in (0, 1):
            d = run / "fits" / method / f"seed_{seed}"
            d.mkdir(parents=True)
            (d / "done.json").write_text(json.dumps({"finished": True, "steps": 500, "selection": "return",
                                                     "selected_step": 400, "lr": 1e-3, "validation_share": 0.12}))
            (d / "progress.csv").write_text("step,train/action_loss,val/return\n" + "".join(
                f"{s},{1.0 / s},{300 + s / 100}\n" for s in steps))
    stats = aggregate(rows, reps=200)
    make_all_figures(rows, ["speed"], run / "eval" / "figures", stats=stats, run_dir=run)
    (run / "eval" / "summary.csv").write_text(stats_to_csv_text(stats))
    write_results(run / "eval" / "results.csv", rows)
    (run / "config.yaml").write_text("name: demo\nfamily: cheetah-run\nexperts: {train_steps: 1234}\n")
    for task, flagged in (("speed=-4", False), ("speed=4", True)):
        (run / "experts" / task).mkdir(parents=True)
        (run / "experts" / task / "summary.json").write_text(json.dumps(
            {"task_id": task, "train_steps": 1234, "eval_return_mean": 480.0, "eval_return_std": 3.0,
             "flagged": flagged, "finished": True, "floor_return": 100.0,
             "gate": {"passed": not flagged, "reason": "480 < 716 = floor 100 + 0.7 x (neighbour speed=3 980 - floor)"
                      if flagged else "passed"}}))
    md, page = write_report(run, command=["hyperzero", "run", "demo"])
    text = md.read_text()
    assert "train_steps=1234" in text
    assert "Flagged experts: speed=4 (480 < 716 = floor 100 + 0.7 x (neighbour speed=3 980 - floor))." in text
    assert "hyperzero run demo" in text
    # aggregates with intervals: hyperzero's scores are 0.875 and 0.9 on the 2 x 2 scored pairs
    line = next(l for l in text.splitlines() if l.startswith("| hyperzero | 4 (2) |"))
    assert "0.887 [" in line and "vs context_blind" in line
    assert "Tasks left out of the aggregates: speed=5 (flagged expert)." in text
    # per task: raw return (score) [seeds], expert, floor
    assert "| speed=4 | 500.0 | 100.0 | 455.0 (0.89) [2] | 155.0 (0.14) [2] |" in text
    assert "| speed=5 — excluded: flagged expert | 500.0 | 100.0 |" in text
    # selection and budgets, with how much the curves still moved over the last 20 % of steps
    budget = next(l for l in text.splitlines() if l.startswith("| hyperzero | 2 | 500 | return |"))
    assert "| 400 (400–400) | 0.001, 0.001 | 12% | -20.0% | +0.3% |" in budget   # 1/400 -> 1/500, 304 -> 305
    html = page.read_text()
    images = re.findall(r'<img src="([^"]+)"', html)
    assert images and all(src.startswith("data:image/png;base64,") for src in images)
    assert len(images) == len(list((run / "eval" / "figures").glob("*.png")))


def test_evaluate_cli_rejects_bad_input(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    assert main(["evaluate", str(tmp_path / "run"), "--episodes", "0"]) == 2
    assert "episodes must be >= 1" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "run"), "--cloning-tasks", "-1"]) == 2
    assert "cloning_tasks must be >= 0" in capsys.readouterr().err


def test_report_shows_cloning_beside_transfer_and_between_beside_outside(tmp_path):
    """Training-task rows appear only in the cloning table; held-out rows are split by position."""
    from hyperzero.evaluation.evaluate import summary_markdown
    from hyperzero.evaluation.stats import group_aggregate, groups_to_csv_text

    run = tmp_path / "run"
    rows = []
    for s in (0, 1):
        for v in (-4.0, 2.0, 4.0, 6.0):   # held out: -4 and 6 outside, 2 and 4 between
            for m, r in (("hyperzero", 450.0), ("context_blind", 150.0)):
                rows.append(ResultRow(m, s, f"speed={v:g}", {"speed": v}, 2, r + 10 * s, 1.0, 500.0, 100.0,
                                      position="outside" if v in (-4.0, 6.0) else "between"))
        for v in (3.0, 5.0, -2.0):        # training tasks: both copy well (context_blind only forwards)
            for m in ("hyperzero", "context_blind"):
                rows.append(ResultRow(m, s, f"speed={v:g}", {"speed": v}, 2, 480.0 if m == "hyperzero" or v > 0
                                      else 120.0, 1.0, 500.0, 100.0, role="train"))
    stats = aggregate(rows, reps=200)
    cloning = group_aggregate(rows, "train", reps=200)
    positions = group_aggregate(rows, "between", reps=200) + group_aggregate(rows, "outside", reps=200)
    write_results(run / "eval" / "results.csv", rows)
    (run / "eval" / "summary.csv").write_text(stats_to_csv_text(stats))
    (run / "eval" / "cloning.csv").write_text(groups_to_csv_text(cloning))
    (run / "eval" / "positions.csv").write_text(groups_to_csv_text(positions))
    text = write_report(run, command=["hyperzero", "evaluate", "run"])[0].read_text()
    section = text[text.index("### Cloning (training tasks) vs transfer (held-out tasks)"):]
    line = next(l for l in section.splitlines() if l.startswith("| hyperzero |"))
    # cloning 0.95 on 6 pairs vs transfer 0.887 (as in the held-out table), raw IQM returns beside them
    assert line.startswith("| hyperzero | 6 (2) | 0.950 [") and "| 0.887 [" in line and "| 480.0 [" in line
    assert line.endswith("| 500.0 / 500.0 |")
    blind = next(l for l in section.splitlines() if l.startswith("| context_blind |"))
    assert "| 6 (2) | 0.725 [" in blind   # IQM of (0.05, 0.05, 0.95 x 4): mean of the middle four
    assert "| hyperzero | 4 (2) | 0.887 [" in text   # the held-out table saw the held-out rows only
    between = text[text.index("### Held-out tasks between vs outside the training tasks"):]
    assert "| hyperzero | 4 (2) | 0.887 [" in between and "| 4 (2) | 0.887 [" in between.split("| hyperzero |")[1]
    per_task = text[text.index("### Per held-out task"):]
    assert "speed=3" not in per_task and "speed=-2" not in per_task   # no training task among held-out tasks
    md = summary_markdown(stats, cloning, positions, rows)
    assert md.startswith("| method | pairs (seeds) |") and "## Cloning (training tasks)" in md


def test_reproduce_command_names_no_path_of_this_machine():
    from hyperzero.evaluation.report import portable_command

    argv = ["/work/main/hyperzero/__main__.py", "run", "cheetah-run-reward-small", "--out",
            "/root/hz-runs/nine/cheetah-run-reward-small", "--no-progress"]
    assert portable_command(argv) == ["hyperzero", "run", "cheetah-run-reward-small", "--out",
                                      "runs/cheetah-run-reward-small", "--no-progress"]
    assert portable_command(["hyperzero", "run", "quickstart", "--out=/tmp/x/qs"])[-1] == "--out=runs/qs"


def test_report_names_every_cpu_the_run_ran_on(tmp_path):
    from hyperzero.evaluation.report import machine_kinds
    from hyperzero.utils.hardware import cpu_kind, describe

    assert machine_kinds(tmp_path) == [cpu_kind() + " (this machine; the run recorded none)"]
    xeon = {"cpu_model": "Intel(R) Xeon(R) Processor", "cores": 2, "bf16_kernels": "amx", "cpu_family": "6",
            "cpu_model_number": "143", "isa": ["amx_bf16", "avx2", "avx512_bf16", "avx512f"]}
    epyc = {"cpu_model": "AMD EPYC", "cores": 2, "bf16_kernels": None, "isa": ["avx2"], "cpu_family": "25",
            "cpu_model_number": "1", "onednn_isa_cap": None}
    for where, facts in (("run_info.json", xeon), ("experts/run_info.json", epyc), ("fits/a/run_info.json", xeon)):
        (tmp_path / where).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / where).write_text(json.dumps({"cpu": facts}))
    # an AMD EPYC resumed on a Xeon: both named, each once, with what tells them apart
    assert sorted(machine_kinds(tmp_path)) == [
        "AMD EPYC (family 25, model 1), 2 cores, AVX2, no native bf16",
        "Intel(R) Xeon(R) Processor (family 6, model 143), 2 cores, AVX-512, bf16 on AMX"]
    assert set(describe()) >= {"cpu_model", "cpu_family", "cpu_model_number", "isa", "bf16_kernels"}
    # a record from before the family was recorded is the same machine as the one naming it, not a second CPU
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "run_info.json").write_text(json.dumps({"cpu": {k: v for k, v in epyc.items()
                                                                         if not k.startswith("cpu_") or k == "cpu_model"}}))
    assert len(machine_kinds(tmp_path)) == 2
