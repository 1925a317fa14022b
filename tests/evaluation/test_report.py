"""report.md / report.html from a run directory's real files; the HTML embeds its figures."""
import json
import re

from hyperzero.cli import main
from hyperzero.evaluation.figures import make_all_figures
from hyperzero.evaluation.metrics import ResultRow, summarize, summary_to_csv_text
from hyperzero.evaluation.report import write_report


def test_report_is_self_contained_and_lists_experts(tmp_path):
    run = tmp_path / "run"
    rows = [ResultRow(m, s, f"speed={v:g}", {"speed": v}, 2, r, 1.0, 500.0)
            for m, r in (("hyperzero", 450.0), ("context_blind", 150.0)) for s, v in ((0, -4.0), (1, 4.0))]
    make_all_figures(rows, ["speed"], run / "eval" / "figures")
    (run / "eval" / "summary.csv").write_text(summary_to_csv_text(summarize(rows)))
    (run / "config.yaml").write_text("name: demo\nfamily: cheetah-run\nexperts: {train_steps: 1234}\n")
    for task, flagged in (("speed=-4", False), ("speed=4", True)):
        (run / "experts" / task).mkdir(parents=True)
        (run / "experts" / task / "summary.json").write_text(json.dumps(
            {"task_id": task, "train_steps": 1234, "eval_return_mean": 480.0, "eval_return_std": 3.0,
             "flagged": flagged, "finished": True}))
    md, page = write_report(run, command=["hyperzero", "run", "demo"])
    text = md.read_text()
    assert "train_steps=1234" in text and "Flagged experts: speed=4." in text
    assert "| hyperzero | 0.900 ± 0.000 |" in text and "hyperzero run demo" in text
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
