"""docs/own-environment.md, run as written: its files are written to a scratch folder and every command on the page
runs there through the CLI (`hyperzero --plugin ...`, `python ...`), from `experts train` to report.html, for a
Gymnasium family (Pendulum-v1 with gravity g) and a dm_control family (the suite's pendulum, target angle and pole
length); then the outputs the page describes are checked.

Measured on 2 busy Xeon cores: about 2 minutes for the chain (the page's budgets are tiny).
"""
import json
import re
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.plugins.conftest import DMC, PENDULUM, ROOT, cli_env

DOC = ROOT / "docs" / "own-environment.md"
FENCE = re.compile(r"(?:<!-- file: (?P<file>[^ ]+) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)\n```", re.S)


def page_blocks() -> list[dict]:
    return [m.groupdict() for m in FENCE.finditer(DOC.read_text())]


def test_page_shows_the_test_plugins_and_is_linked():
    files = {b["file"]: b["body"] + "\n" for b in page_blocks() if b["file"]}
    assert files["pendulum_family.py"] == PENDULUM.read_text()
    assert files["dmc_family.py"] == DMC.read_text()
    assert "](docs/own-environment.md)" in (ROOT / "README.md").read_text()
    commands = [b for b in page_blocks() if b["lang"] in ("bash", "console")]
    assert len(commands) >= 8  # every one of them runs in the test below


def _run_bash(block: str, cwd, timeout: float = 600) -> str:
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=cwd, env=cli_env(), capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, \
        f"page command failed ({proc.returncode}):\n{block}\n--- stderr ---\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


def _run_explore(block: str, cwd) -> None:
    """`hyperzero explore` serves until stopped: start it, wait for its address, ask it for the run, stop it."""
    command = block.strip()
    proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=cwd, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline, url = time.time() + 120, None
        while time.time() < deadline and url is None:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            found = re.search(r"serving .* at (http://\S+)", line)
            url = found.group(1) if found else None
        assert url, f"{command}: the page did not start"
        facts = json.loads(urllib.request.urlopen(url.rstrip("/") + "/api/run", timeout=60).read())
        assert facts["family"] == "pendulum-target" and facts["context_names"] == ["target_angle", "pole_length"]
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _run_console(block: str, cwd) -> None:
    """A `$ command` with the start of the output it prints."""
    lines = block.strip().splitlines()
    command, expected = lines[0].removeprefix("$ "), lines[1:]
    if " explore " in command:
        try:
            import pygame  # noqa: F401
            pytest.skip("pygame is installed: Pendulum-v1 renders and the page would serve instead of refusing")
        except ImportError:
            pass
    proc = subprocess.run(["bash", "-c", command], cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    for line in expected:
        assert line in out, f"{command}: expected {line!r} in its output:\n{out}"


@pytest.mark.slow
def test_every_command_of_the_page_runs(tmp_path):
    t0 = time.time()
    outputs = []
    for block in page_blocks():
        start = time.time()
        if block["file"]:
            (tmp_path / block["file"]).write_text(block["body"] + "\n")
            continue
        elif block["lang"] == "bash" and " explore " in block["body"]:
            _run_explore(block["body"], tmp_path)
        elif block["lang"] == "bash":
            outputs.append(_run_bash(block["body"], tmp_path))
        elif block["lang"] == "console":
            _run_console(block["body"], tmp_path)
        else:
            continue
        first = block["body"].strip().splitlines()[0][:90]
        print(f"{time.time() - start:6.1f} s  {first}", file=sys.stderr)
    print(f"the page's commands took {time.time() - t0:.0f} s", file=sys.stderr)

    # 1. the Gymnasium family, stage by stage: a report, and the videos skipped with the reason
    assert "pendulum-g  (hyperzero/pendulum-g-v0; obs 3, act 1, 200 steps, gymnasium" in outputs[0]
    pendulum = tmp_path / "runs" / "pendulum"
    report = (pendulum / "report.md").read_text()
    assert (pendulum / "report.html").is_file()
    assert "Family pendulum-g (your own: a Gymnasium env, from module pendulum_family)" in report
    assert "Expert returns: rolled out from experts/<task>/expert.pt on the evaluation episode seeds" in report
    done = json.loads((pendulum / "eval" / "done.json").read_text())
    assert sorted(json.loads((pendulum / "dataset" / "manifest.json").read_text())["context_names"]) == ["g"]
    if "videos_skipped" in done:
        assert "family 'pendulum-g' cannot render frames" in done["videos_skipped"]
        assert "No videos: family 'pendulum-g' cannot render frames" in report
    # 2. the dm_control family through `hyperzero run`: videos, then 3. the Python run added split seed 1
    target = tmp_path / "runs" / "pendulum-target"
    assert sorted(p.name for p in (target / "eval" / "videos").glob("*.mp4"))
    for method in ("hyperzero", "mlp_policy"):
        assert {p.name for p in (target / "fits" / method).glob("seed_*") if (p / "done.json").exists()} == \
            {"seed_0", "seed_1"}
    assert (target / "report.html").is_file()
    assert "Family pendulum-target (your own: a dm_control domain" in (target / "report.md").read_text()
    # 4. a dataset from another solver: scored against the returns it records, then against the user's file
    mine = tmp_path / "runs" / "mine"
    assert not (mine / "experts").exists()
    report = (mine / "report.md").read_text()
    assert ("Expert returns: from the dataset manifest (ExpertInfo.return_mean, the producer's own evaluation), not "
            "re-rolled") in report
    assert "from expert_returns.json (given with --expert-returns), not re-rolled" in report
    sources = json.loads((mine / "eval" / "done.json").read_text())["expert_returns"]
    assert not sources["rolled out"] and set(sources["file"]) <= {"g=6", "g=10", "g=14"}
    manifest = json.loads((mine / "dataset" / "manifest.json").read_text())
    assert all(t["expert"]["source"] == "energy-swing-up" and t["expert"]["return_mean"] > -800
               for t in manifest["tasks"])
