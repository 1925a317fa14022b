"""docs/pipeline.md "From Python": run_pipeline with a config mapping and dict overrides, run as written."""
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_the_documented_mapping_example_runs(tmp_path):
    text = (ROOT / "docs" / "pipeline.md").read_text()
    code = re.search(r"```python\n(.*?)\n```", text[text.index("## From Python"):], re.S).group(1)
    (tmp_path / "example.py").write_text(code)
    env = {k: v for k, v in os.environ.items() if k != "HYPERZERO_PLUGINS"}
    env["MUJOCO_GL"] = "egl"
    out = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "runs" / "speeds"
    assert out.stdout.strip() == str(Path("runs/speeds/report.html"))
    assert (run / "report.html").is_file()
    config_text = (run / "config.yaml").read_text()
    assert config_text.startswith("# resolved from a Python mapping (run_pipeline)")
    config = yaml.safe_load(config_text)
    assert config["fit"]["batch_size"] == 32 and config["experts"]["hidden_sizes"] == [32, 32]
