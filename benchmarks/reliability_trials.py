"""Reliability trials on the `tiny` preset, run as a user would run them: damaged files, bad input,
concurrent runs, SIGKILL. Prints (and with --report writes) the table in docs/reliability.md.

    python benchmarks/reliability_trials.py --work /tmp/hz-trials --report /tmp/hz-trials/table.md

Every trial runs the real CLI in a subprocess (`python -m hyperzero ...`) on a copy of one finished
run. A trial is *handled* when the command ends as it should (a rerun finishes with the damaged file
named, moved aside and its unit redone to the same numbers; a bad input exits 2 with one line that
names the key or file and no traceback; a second writer is refused naming the first; a killed run
resumes to the same numbers without calling anything corrupt) and *failed* otherwise; failures are
listed with their output. About 15 minutes on a quiet 2-core CPU.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OVERRIDES = ["--set", "fit.seeds=[0]", "--set", "evaluate.videos=false"]  # the tiny preset, one split seed
ENV = {**os.environ, "MUJOCO_GL": "egl", "PYTHONUNBUFFERED": "1"}
EXPERT = "experts/speed=2_torso_length=0.5"
FIT = "fits/hyperzero/seed_0"


NOTES: list[str] = []  # what the trials saw, beside the counts (e.g. where a full disk stopped a run)


def hz(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hyperzero", *args], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def run_tiny(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return hz("run", "tiny", "--out", str(out), "--no-progress", *OVERRIDES, *extra)


def results(run: Path) -> list[tuple[str, str, float, float]]:
    with open(run / "eval" / "results.csv", newline="") as f:
        return [(r["method"], r["task_id"], float(r["return_mean"]), float(r["expert_return"]))
                for r in csv.DictReader(f)]


def same_numbers(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x[:2] == y[:2] and all(math.isclose(p, q, rel_tol=1e-5, abs_tol=1e-5)
                                                          for p, q in zip(x[2:], y[2:])) for x, y in zip(a, b))


# ------------------------------------------------------------------------------------------ corruption
def garble(p: Path) -> None:
    data = bytearray(p.read_bytes())
    m = len(data) // 2
    data[m:m + 64] = bytes((b + 1 + i) % 256 for i, b in enumerate(data[m:m + 64]))
    p.write_bytes(bytes(data))


DAMAGE = {"garble": garble, "truncate": lambda p: p.write_bytes(p.read_bytes()[:p.stat().st_size // 2]),
          "empty": lambda p: p.write_bytes(b"")}


def unfinish(unit: str, names: tuple[str, ...]):
    def prepare(run: Path) -> None:
        for name in names:
            for p in (run / unit / name, run / unit / (name + ".sha256")):
                p.unlink(missing_ok=True)
    return prepare


ARTIFACTS = {  # kind -> (path, preparation)
    "expert.pt": (f"{EXPERT}/expert.pt", None),
    "expert summary.json": (f"{EXPERT}/summary.json", None),
    "experts/packing.json": ("experts/packing.json", None),
    "expert checkpoint.pt (finished expert)": (f"{EXPERT}/checkpoint.pt", None),
    "expert checkpoint.pt (unfinished expert)": (f"{EXPERT}/checkpoint.pt", unfinish(EXPERT, ("summary.json", "expert.pt"))),
    "dataset manifest.json": ("dataset/manifest.json", None),
    "dataset task file": ("dataset/tasks/speed=2_torso_length=0.5.npz", None),
    "fit model.pt": (f"{FIT}/model.pt", None),
    "fit done.json": (f"{FIT}/done.json", None),
    "fit split.json": (f"{FIT}/split.json", None),
    "fit run_info.json": (f"{FIT}/run_info.json", None),
    "fit inputs.json": (f"{FIT}/inputs.json", None),
    "fit checkpoint.pt (finished fit)": (f"{FIT}/checkpoint.pt", None),
    "fit checkpoint.pt (unfinished fit)": (f"{FIT}/checkpoint.pt", unfinish(FIT, ("done.json", "model.pt"))),
    "eval rows/<method>/seed_<k>.json": ("eval/rows/hyperzero/seed_0.json", None),
    "eval results.csv": ("eval/results.csv", None),
    "eval done.json": ("eval/done.json", None),
    "eval expert_returns.json": ("eval/expert_returns.json", None),
    "config.yaml": ("config.yaml", None),
    "run_info.json": ("run_info.json", None),
    "stage_times.json": ("stage_times.json", None),
}


def corruption_trials(base: Path, work: Path, log: list) -> tuple[int, int]:
    base_rows = results(base)
    handled = tried = 0
    for kind, (rel, prepare) in ARTIFACTS.items():
        for mode, damage in DAMAGE.items():
            run = work / "corrupt-trial"
            shutil.rmtree(run, ignore_errors=True)
            shutil.copytree(base, run)
            if prepare:
                prepare(run)
            damage(run / rel)
            proc = run_tiny(run)
            tried += 1
            said = proc.stderr
            named = Path(rel).name in said and "does not match the sha256" in said
            ok = (proc.returncode == 0 and named and "Traceback" not in said and (run / "corrupt").is_dir()
                  and same_numbers(results(run), base_rows))
            handled += ok
            if not ok:
                log.append(f"corruption {kind} / {mode}: rc={proc.returncode}\n{said[-2000:]}")
    return tried, handled


# ------------------------------------------------------------------------------------------ bad input
def bad_input_trials(base: Path, work: Path, log: list) -> tuple[int, int, int, int]:
    out = work / "bad-input-run"
    blocker = work / "a-file"
    blocker.write_text("x")
    fit = str(base / FIT)
    npz = str(work / "p.npz")
    cli = [  # (argv, words the one-line message must contain)
        (["run", "tiny", "--set", "experts.train_steps=abc"], ["experts.train_steps", "'abc'", "integer"]),
        (["run", "tiny", "--set", "experts.train_steps=1.5"], ["experts.train_steps", "integer"]),
        (["run", "tiny", "--set", "experts.train_steps=-5"], ["train_steps"]),
        (["run", "tiny", "--set", "experts.num_workers=0"], ["experts.num_workers", ">= 1"]),
        (["run", "tiny", "--set", "experts.ensemble_size=two"], ["experts.ensemble_size"]),
        (["run", "tiny", "--set", "experts.seed=abc"], ["experts.seed", "integer"]),
        (["run", "tiny", "--set", "experts.gamma=1.5"], ["gamma"]),
        (["run", "tiny", "--set", "experts.gamma=.nan"], ["experts.gamma", "finite"]),
        (["run", "tiny", "--set", "experts.hidden_sizes=[32,x]"], ["experts.hidden_sizes[1]"]),
        (["run", "tiny", "--set", "experts.precision=fp8"], ["precision"]),
        (["run", "tiny", "--set", "experts.train_step=3"], ["train_step", "unknown"]),
        (["run", "tiny", "--set", "expert.train_steps=3"], ["unknown section"]),
        (["run", "tiny", "--set", "experts.train_steps"], ["key=value"]),
        (["run", "tiny", "--set", "experts=3"], ["experts", "mapping"]),
        (["run", "tiny", "--set", "dataset.n_episodes=0"], ["dataset.n_episodes", ">= 1"]),
        (["run", "tiny", "--set", "dataset.n_episodes=true"], ["dataset.n_episodes", "integer"]),
        (["run", "tiny", "--set", "dataset.exclude_flagged=maybe"], ["dataset.exclude_flagged", "true or false"]),
        (["run", "tiny", "--set", "dataset.seed=-1"], ["dataset.seed"]),
        (["run", "tiny", "--set", "fit.steps=1.5"], ["fit.steps", "integer"]),
        (["run", "tiny", "--set", "fit.steps=0"], ["steps", ">= 1"]),
        (["run", "tiny", "--set", "fit.lr=-1"], ["lr", "> 0"]),
        (["run", "tiny", "--set", "fit.lr=fast"], ["fit.lr", "number"]),
        (["run", "tiny", "--set", "fit.methods=[hyperzer0]"], ["unknown methods"]),
        (["run", "tiny", "--set", "fit.methods=[]"], ["fit.methods"]),
        (["run", "tiny", "--set", "fit.seeds=[0,0]"], ["fit.seeds", "distinct"]),
        (["run", "tiny", "--set", "fit.seeds=abc"], ["fit.seeds"]),
        (["run", "tiny", "--set", "fit.protocol=mine"], ["fit.protocol"]),
        (["run", "tiny", "--set", "fit.model.hidden_dim=1.5"], ["fit.model.hidden_dim"]),
        (["run", "tiny", "--set", "fit.model.width=3"], ["fit.model", "width"]),
        (["run", "tiny", "--set", "evaluate.episodes=0"], ["episodes", ">= 1"]),
        (["run", "tiny", "--set", "evaluate.few_shot_k=[0]"], ["few-shot"]),
        (["run", "tiny", "--set", "evaluate.video_contexts=[{speed: 0}]"], ["speed", "0"]),
        (["run", "tiny", "--set", "family=cheetah"], ["family", "cheetah-run"]),
        (["run", "tiny", "--set", "contexts.grid.speed=[fast]"], ["contexts.grid.speed", "'fast'"]),
        (["run", "tiny", "--set", "contexts.grid.speed=[40]"], ["speed", "limits"]),
        (["run", "tiny", "--set", "contexts.grid.speed=[2]"], ["at least 2 tasks"]),
        (["run", "tiny", "--set", "contexts.grid.speed=-10:10:0"], ["step > 0"]),
        (["run", "tiny", "--set", "contexts.grid.speed=-10:10:1e-9"], ["larger step"]),
        (["run", "tiny", "--set", "contexts.grid.wind=[1,2]"], ["wind"]),
        (["run", "tiny", "--set", "contexts.sample={n: 0}"], ["contexts.sample.n"]),
        (["run", "tiny", "--set", "contexts.list=[{speed: nan}]"], ["speed", "finite"]),
        (["run", "tiny", "--set", "contexts.list=[{speed: true}, {speed: 2}]"], ["speed", "boolean"]),
        (["run", "no-such-preset"], ["unknown preset"]),
        (["run", str(work / "missing.yaml")], ["does not exist"]),
        (["run", "tiny", "--out", str(blocker / "run")], ["regular file"]),
        (["run", "tiny", "--executor", "dask"], ["invalid choice"]),
        (["run"], ["preset name"]),
        (["export-policy", "--fit", fit, "--context", "speed=nan", "--out", npz], ["speed", "finite"]),
        (["export-policy", "--fit", fit, "--context", "speed=0", "--out", npz], ["value 0 is not allowed"]),
        (["export-policy", "--fit", fit, "--context", "speed=1e9", "--out", npz], ["physical limits"]),
        (["export-policy", "--fit", fit, "--context", "speed=12", "--out", npz], ["nominal range"]),
        (["export-policy", "--fit", fit, "--context", "speed=true", "--out", npz], ["'true' is not a number"]),
        (["export-policy", "--fit", fit, "--context", "speed=fast", "--out", npz], ["'fast' is not a number"]),
        (["export-policy", "--fit", fit, "--context", "wind=3", "--out", npz], ["unknown context feature"]),
        (["export-policy", "--fit", fit, "--context", "speed", "--out", npz], ["name=value"]),
        (["export-policy", "--fit", fit, "--context", "speed=3", "--out", str(work / "p.txt")], [".npz"]),
        (["export-policy", "--fit", str(work / "nofit"), "--context", "speed=3", "--out", npz], ["does not exist"]),
        (["experts", "train", "--family", "cheetah-run", "--grid", "speed=a:b:c", "--out", str(work / "e")],
         ["lo:hi:step"]),
        (["experts", "train", "--family", "cheetah", "--grid", "speed=1,2", "--out", str(work / "e")],
         ["unknown family"]),
        (["evaluate", str(work / "no-run")], ["does not exist"]),
        (["fit", "--dataset", str(work / "no-dataset"), "--out", str(work / "f")], ["manifest"]),
    ]
    tried = handled = 0
    for argv, words in cli:
        if argv[0] == "run" and "--out" not in argv and len(argv) > 1:
            argv = argv + ["--out", str(out)]
        proc = hz(*argv, timeout=300)
        tried += 1
        err = proc.stderr
        ok = proc.returncode == 2 and "Traceback" not in err and all(w in err for w in words) and not (
            out / "config.yaml").exists()
        handled += ok
        if not ok:
            log.append(f"bad input {' '.join(argv)}: rc={proc.returncode}\n{err[-1500:]}")
    api_tried, api_handled = api_trials(base, log)
    return tried, handled, api_tried, api_handled


API_SCRIPT = r'''
import json, sys, math
import numpy as np
results = []
def expect(name, fn, *words):
    try:
        value = fn()
    except ValueError as e:
        results.append([name, all(w in str(e) for w in words), str(e)[:300]])
        return
    except Exception as e:
        results.append([name, False, f"{type(e).__name__}: {e}"[:300]])
        return
    results.append([name, False, f"accepted: {value!r}"[:300]])

import gymnasium as gym
import hyperzero.envs
from hyperzero.envs import get_family, make, make_vector
from hyperzero.training import FitConfig, load_fit
from hyperzero.experts import TD3Config
from hyperzero.evaluation import EvalConfig
from hyperzero.launchers.config import resolve_config
from hyperzero.launchers.config_files import load_config_source
space = get_family("cheetah-run").context_space
tm = load_fit(sys.argv[1])
tiny = load_config_source("tiny")[0]
bad_contexts = {"nan": {"speed": float("nan")}, "inf": {"speed": float("inf")}, "zero": {"speed": 0},
                "huge": {"speed": 1e9}, "beyond nominal": {"speed": 12}, "bool": {"speed": True},
                "numpy bool": {"speed": np.bool_(True)}, "text": {"speed": "fast"}, "list": {"speed": [1, 2]},
                "unknown key": {"wind": 3}, "None value": {"speed": None}}
words = {"nan": "finite", "inf": "finite", "zero": "0", "huge": "limits", "beyond nominal": "nominal",
         "bool": "boolean", "numpy bool": "boolean", "text": "not a number", "list": "not a number",
         "unknown key": "unknown", "None value": "not a number"}
for name, ctx in bad_contexts.items():
    expect(f"ContextSpace.validate {name}", lambda: space.validate(ctx), words[name])
    expect(f"load_fit(...).policy {name}", lambda: tm.policy(ctx), words[name])
    expect(f"gym.make context {name}", lambda: gym.make("hyperzero/cheetah-run-v0", context=ctx), words[name])
expect("gym.make context string", lambda: gym.make("hyperzero/cheetah-run-v0", context="speed=3"), "mapping")
expect("policy context string", lambda: tm.policy("speed=3"), "mapping")
expect("make_vector bad context", lambda: make_vector("cheetah-run", [{"speed": 0}]), "speed")
expect("FitConfig(steps='10')", lambda: FitConfig(steps="10").check(), "steps", "integer")
expect("FitConfig(steps=1.5)", lambda: FitConfig(steps=1.5).check(), "steps", "integer")
expect("FitConfig(lr=True)", lambda: FitConfig(lr=True).check(), "lr")
expect("FitConfig(method='x')", lambda: FitConfig(method="x").check(), "method")
expect("TD3Config(train_steps=0)", lambda: TD3Config(train_steps=0).validate(), "train_steps")
expect("EvalConfig(episodes=0)", lambda: EvalConfig(episodes=0), "episodes")
expect("resolve_config 1.5 steps", lambda: resolve_config(tiny, ["fit.steps=1.5"]), "fit.steps")
expect("resolve_config grid text", lambda: resolve_config(tiny, ["contexts.grid.speed=[a]"]), "contexts.grid.speed")
good = []
good.append(resolve_config(tiny, ["contexts.grid.speed=-10:10:0.5"])["contexts"]["grid"]["speed"] == "-10:10:0.5")
good.append(resolve_config(tiny, ["experts.train_steps=1e3"])["experts"]["train_steps"] == 1000)
good.append(bool(np.isfinite(np.asarray(tm.policy({"speed": 3}).act(np.zeros((1, 17), np.float32)))).all()))
print(json.dumps({"results": results, "good": good}))
'''


def api_trials(base: Path, log: list) -> tuple[int, int]:
    proc = subprocess.run([sys.executable, "-c", API_SCRIPT, str(base / FIT)], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        log.append(f"API trials crashed:\n{proc.stderr[-3000:]}")
        return 1, 0
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    handled = sum(ok for _, ok, _ in data["results"]) + sum(data["good"])
    for name, ok, text in data["results"]:
        if not ok:
            log.append(f"API {name}: {text}")
    if not all(data["good"]):
        log.append(f"API: an accepted form failed: {data['good']}")
    return len(data["results"]) + len(data["good"]), handled


# ------------------------------------------------------------------------------------------ concurrency
def start_hz(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hyperzero", *args], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def concurrency_trials(base: Path, work: Path, log: list) -> tuple[int, int]:
    base_rows = results(base)
    trials = {
        "two `hyperzero run` on one --out": lambda run: ["run", "tiny", "--out", str(run), "--no-progress", *OVERRIDES],
        "`hyperzero run` and `experts train --out RUN/experts`": lambda run: [
            "experts", "train", "--family", "cheetah-run", "--grid", "speed=-4,2,4", "--out", str(run / "experts"),
            "--train-steps", "200", "--no-progress"],
        "`hyperzero run` and `evaluate RUN`": lambda run: ["evaluate", str(run), "--episodes", "1"],
    }
    tried = handled = 0
    for name, second_args in trials.items():
        run = work / "concurrent"
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir(parents=True)
        first = start_hz("run", "tiny", "--out", str(run), "--no-progress", *OVERRIDES)
        deadline = time.time() + 120
        while not (run / "config.yaml").exists() and time.time() < deadline and first.poll() is None:
            time.sleep(0.1)
        second = start_hz(*second_args(run))
        out2, err2 = second.communicate(timeout=600)
        out1, err1 = first.communicate(timeout=900)
        tried += 1
        ok = (first.returncode == 0 and second.returncode == 2 and f"pid {first.pid}" in err2
              and "Traceback" not in err2 and same_numbers(results(run), base_rows))
        handled += ok
        if not ok:
            log.append(f"concurrency {name}: first rc={first.returncode}, second rc={second.returncode}\n{err2[-1500:]}")
    return tried, handled


# ------------------------------------------------------------------------------------------ SIGKILL
def kill_trials(base: Path, work: Path, log: list, kills: int, seed: int = 0) -> tuple[int, int]:
    """`kills` SIGKILLs at random moments of random stages of one run, each followed by a rerun of the same command;
    handled when every rerun continues, no kill is reported as corruption, no temp file survives, and the final
    numbers equal the uninterrupted run's."""
    rng = random.Random(seed)
    run = work / "killed"
    shutil.rmtree(run, ignore_errors=True)
    stages = ["experts", "dataset", "fits", "eval", "report"]
    handled = 0
    for i in range(kills):
        stage = rng.choice(stages)
        delay = rng.uniform(0.0, 1.5)
        proc = start_hz("run", "tiny", "--out", str(run), "--no-progress", *OVERRIDES)
        said = []
        deadline = time.time() + 300
        killed = False
        while time.time() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            said.append(line)
            if "stage " in line and f": {stage}" in line and "done" not in line:
                time.sleep(delay)
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
                break
        proc.wait()
        text = "".join(said)
        ok = "corrupt" not in text and "Traceback" not in text
        handled += ok
        if not ok:
            log.append(f"kill {i} in {stage} after {delay:.2f} s:\n{text[-1500:]}")
        if not killed:
            shutil.rmtree(run / "eval", ignore_errors=True)  # finished before the kill point: make work for the next
    final = run_tiny(run)
    clean = (final.returncode == 0 and "corrupt" not in final.stderr and not list(run.rglob("*.tmp"))
             and same_numbers(results(run), results(base)))
    if not clean:
        log.append(f"after the kills: rc={final.returncode}, tmp files {list(run.rglob('*.tmp'))}\n{final.stderr[-2000:]}")
    return kills, handled if clean else min(handled, kills - 1)


# ------------------------------------------------------------------------------------------ redo reproducibility
def sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def expert_hashes(run: Path) -> dict[str, str]:
    return {p.parent.name: sha(p) for p in sorted((run / "experts").glob("*/expert.pt"))}


def _drop_plan(run: Path) -> None:
    for name in ("packing.json", "packing.json.sha256"):
        (run / "experts" / name).unlink(missing_ok=True)


REDO = {  # what is damaged -> preparation of a copy of the base run
    "expert.pt garbled": lambda run: garble(run / EXPERT / "expert.pt"),
    "expert.pt emptied": lambda run: DAMAGE["empty"](run / EXPERT / "expert.pt"),
    "summary.json truncated": lambda run: DAMAGE["truncate"](run / EXPERT / "summary.json"),
    "checkpoint.pt of an unfinished expert garbled": lambda run: (
        unfinish(EXPERT, ("summary.json", "expert.pt"))(run), garble(run / EXPERT / "checkpoint.pt")),
    "two experts' folders deleted": lambda run: [shutil.rmtree(run / "experts" / t) for t in (
        "speed=2_torso_length=0.5", "speed=-4_torso_length=0.5")],
    "expert.pt garbled in a run made before packing.json": lambda run: (_drop_plan(run),
                                                                       garble(run / EXPERT / "expert.pt")),
}


def redo_trials(base: Path, work: Path, log: list) -> tuple[int, int]:
    """Each damage on a copy of the base run, then the same command: the redone experts must be the base run's
    bytes, and so must eval/results.csv (nothing made from them is redone)."""
    handled = tried = 0
    base_experts, base_results = expert_hashes(base), (base / "eval" / "results.csv").read_bytes()
    for name, prepare in REDO.items():
        run = work / "redo-trial"
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(base, run)
        prepare(run)
        proc = run_tiny(run)
        tried += 1
        ok = (proc.returncode == 0 and "bit for bit" in proc.stderr and expert_hashes(run) == base_experts
              and (run / "eval" / "results.csv").read_bytes() == base_results and "Traceback" not in proc.stderr)
        handled += ok
        if not ok:
            log.append(f"redo {name}: rc={proc.returncode}\n{proc.stderr[-2000:]}")
    return tried, handled


# ------------------------------------------------------------------------------------------ disk full
def _mount_tmpfs(path: Path, size: int, remount: bool = False) -> bool:
    cmd = ["mount", "-t", "tmpfs", "-o", f"{'remount,' if remount else ''}size={size}", "tmpfs", str(path)]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def disk_full_trials(base: Path, work: Path, log: list, fractions=(0.05, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95)
                     ) -> tuple[int, int]:
    """`hyperzero run tiny` on a tmpfs too small for it (a fraction of the base run's disk usage): it must stop with
    one line naming the file it could not write and no traceback; after the disk is enlarged the same command
    must finish with the base run's experts and results, byte for byte. Needs root (mount); else skipped."""
    used = int(subprocess.run(["du", "-s", "--block-size=1", str(base)], capture_output=True, text=True
                              ).stdout.split()[0])
    mnt = work / "tmpfs"
    handled = tried = 0
    base_experts, base_results = expert_hashes(base), (base / "eval" / "results.csv").read_bytes()
    for fraction in fractions:
        mnt.mkdir(parents=True, exist_ok=True)
        if not _mount_tmpfs(mnt, int(used * fraction)):
            log.append("disk full: cannot mount a tmpfs (not root?); family skipped")
            return tried, handled
        try:
            run = mnt / "run"
            first = run_tiny(run)
            tried += 1
            said = first.stderr
            named = "No space left on device while writing" in said and "Traceback" not in said
            where = said.split("while writing ", 1)[-1].split(" (", 1)[0] if named else "?"
            NOTES.append(f"disk full at {fraction:.0%} of {used} bytes: stopped writing "
                         f"{Path(where).relative_to(run) if where.startswith(str(run)) else where}")
            _mount_tmpfs(mnt, used * 4, remount=True)
            second = run_tiny(run)
            ok = (first.returncode == 2 and named and second.returncode == 0 and expert_hashes(run) == base_experts
                  and (run / "eval" / "results.csv").read_bytes() == base_results)
            handled += ok
            if not ok:
                log.append(f"disk full at {fraction:.0%} of {used} bytes: first rc={first.returncode}, second "
                           f"rc={second.returncode}\n{said[-1500:]}\n--- rerun:\n{second.stderr[-1500:]}")
        finally:
            subprocess.run(["umount", str(mnt)], capture_output=True)
    return tried, handled


# ------------------------------------------------------------------------------------------ resource bounds
def _alias_bomb(levels: int) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines)


def resource_trials(base: Path, work: Path, log: list, memory_limit: int = 4 << 30) -> tuple[int, int]:
    """Inputs that used to hang, eat gigabytes or fail late: each must exit 2 within 60 s under a 4 GiB address-space
    limit, with one line naming the key, option or file, no traceback, and nothing written."""
    import resource

    out = work / "bounds-run"
    bomb = work / "bomb.yaml"
    bomb.write_text(_alias_bomb(9) + "\nfamily: cheetah-run\ncontexts: {grid: {speed: [1, 2]}}\n")
    dup = work / "dup.yaml"
    dup.write_text("family: cheetah-run\ncontexts: {grid: {speed: [1, 2]}}\nexperts: {seed: 1, seed: 2}\n")
    utf16 = work / "utf16.yaml"
    utf16.write_bytes("family: cheetah-run\ncontexts: {grid: {speed: [1, 2]}}\n".encode("utf-16"))
    blocker = work / "a-file"
    blocker.write_text("x")
    train = ["experts", "train", "--family", "cheetah-run", "--out", str(work / "bounds-experts"), "--no-progress"]
    cases = [
        (["run", "tiny", "--set", "contexts.sample={n: 1000000000, seed: 0}"], ["contexts.sample.n"]),
        (train + ["--sample", "1000000000"], ["--sample"]),
        (["run", "tiny", "--set", "experts.batch_size=1e12"], ["experts.batch_size"]),
        (["run", "tiny", "--set", "experts.hidden_sizes=[1e9, 1e9]"], ["experts.hidden_sizes"]),
        (["run", "tiny", "--set", "experts.train_steps=1e9", "--set", "experts.replay_capacity=1e9"],
         ["experts stage", "memory", "experts.replay_capacity"]),
        (["run", "tiny", "--set", "fit.model.hidden_dim=1e9"], ["fit.model.hidden_dim"]),
        (["run", "tiny", "--set", "fit.batch_size=1e12"], ["fit.batch_size"]),
        (["run", "tiny", "--set", "evaluate.video_steps=1e9"], ["evaluate.video_steps"]),
        (["run", str(bomb)], [str(bomb), "aliases are not allowed"]),
        (["run", "tiny", "--set", "experts.extra=" + _alias_bomb(8).replace("\n", ", ").join("{}")],
         ["experts.extra", "aliases are not allowed"]),
        (["run", "tiny", "--set", "experts.seed=-1"], ["experts.seed=-1"]),
        (["run", "tiny", "--set", "fit.model.embed_dims=[]"], ["fit.model", "embedding"]),
        (["run", str(dup)], [str(dup), "key 'seed' twice"]),
        (train + ["--contexts", "speed=2,speed=3"], ["speed is given twice"]),
        (train + ["--grid", "speed=1,2", "speed=3"], ["--grid gives speed more than once"]),
        (["run", "tiny", "--set", "contexts.grid.speed=[1,2]", "--set", "contexts.sample={n: 3}"],
         ["contexts.grid.speed", "contexts.sample", "exactly one of grid, sample or list"]),
        (["run", "tiny", "--set", "experts.seed=1", "--set", "experts.seed=2"], ["experts.seed is given twice"]),
        (["run", "tiny", "--device", "tpu"], ["--device 'tpu'"]),
        (["run", "tiny", "--executor", "ray", "--device", "tpu"], ["--device 'tpu'"]),
        (["run", str(utf16)], [str(utf16), "not UTF-8"]),
        (["export-policy", "--fit", str(base / FIT), "--context", "speed=3", "--out", str(blocker / "x.npz")],
         [str(blocker), "regular file"]),
    ]

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    tried = handled = 0
    for argv, words in cases:
        if argv[0] == "run" and "--out" not in argv:
            argv = argv + ["--out", str(out)]
        start = time.time()
        try:
            proc = subprocess.run([sys.executable, "-m", "hyperzero", *argv], cwd=REPO, env=ENV, capture_output=True,
                                  text=True, timeout=60, preexec_fn=limit)
            rc, err = proc.returncode, proc.stderr
        except subprocess.TimeoutExpired:
            rc, err = None, "timed out after 60 s"
        tried += 1
        lines = [line for line in err.splitlines() if line.startswith("hyperzero: error:")]
        ok = (rc == 2 and "Traceback" not in err and len(lines) == 1 and all(w in lines[0] for w in words)
              and len(lines[0]) < 1000 and not (out / "config.yaml").exists()
              and not (work / "bounds-experts").exists())
        handled += ok
        if not ok:
            log.append(f"resource bound {' '.join(argv)[:300]}: rc={rc} after {time.time() - start:.0f} s\n{err[-1500:]}")
    return tried, handled


# ------------------------------------------------------------------------------------------ file modes
def _bad_modes(run: Path, umask: int) -> list[str]:
    import stat

    bad = []
    for p in run.rglob("*"):
        want = (0o777 if p.is_dir() else 0o666) & ~umask
        mode = stat.S_IMODE(p.stat().st_mode)
        if not p.is_symlink() and mode != want:
            bad.append(f"{p.relative_to(run)} {oct(mode)} (want {oct(want)})")
    return bad


def mode_trials(base: Path, work: Path, log: list, umasks=(0o007,)) -> tuple[int, int]:
    """Every file and folder of a run has the mode the umask gives (a shared run directory is readable by the
    team): the base run (this process's umask) and one run per extra umask."""
    tried = handled = 0
    own = os.umask(0)
    os.umask(own)
    for umask, run in [(own, base)] + [(u, work / f"modes-{u:03o}") for u in umasks]:
        if run != base:
            shutil.rmtree(run, ignore_errors=True)
            proc = subprocess.run([sys.executable, "-m", "hyperzero", "run", "tiny", "--out", str(run), "--no-progress",
                                   *OVERRIDES], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=900,
                                  preexec_fn=lambda u=umask: os.umask(u))
            if proc.returncode != 0:
                log.append(f"modes with umask {umask:03o}: run failed rc={proc.returncode}\n{proc.stderr[-1500:]}")
                tried += 1
                continue
        bad = _bad_modes(run, umask)
        tried += 1
        handled += not bad
        if bad:
            log.append(f"modes with umask {umask:03o}: {len(bad)} wrong, e.g. {bad[:5]}")
    return tried, handled


# ------------------------------------------------------------------------------------------ Ray worker death
def ray_trials(work: Path, log: list) -> tuple[int, int]:
    """`experts train --executor ray`; its Ray worker is SIGKILLed after the first checkpoint: the command must end
    with exit status 2 and one line naming the ensemble and saying to rerun; the rerun must give the experts of an
    uninterrupted local run, byte for byte."""
    args = ["experts", "train", "--family", "cheetah-run", "--contexts", "speed=2", "speed=4", "--train-steps", "3000",
            "--max-episode-steps", "100", "--checkpoint-every", "100", "--seed-steps", "100", "--random-steps", "50",
            "--hidden-sizes", "32,32", "--batch-size", "32", "--eval-every", "0", "--eval-episodes", "1",
            "--ensemble-size", "2", "--num-workers", "1", "--torch-threads", "1", "--gate.enabled", "false",
            "--no-progress"]
    local, out = work / "ray-reference", work / "ray-experts"
    shutil.rmtree(local, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    ref = hz(*args, "--out", str(local), timeout=900)
    if ref.returncode != 0:
        log.append(f"ray: the local reference failed\n{ref.stderr[-1500:]}")
        return 1, 0
    proc = start_hz(*args, "--out", str(out), "--executor", "ray")
    killed = None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and killed is None:
        time.sleep(0.5)
        if not list(out.glob("*/checkpoint.pt")):
            continue
        ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout.splitlines()
        for line in ps:
            if "ray::_group_entry" in line:
                killed = int(line.split()[0])
                os.kill(killed, signal.SIGKILL)
                break
    _, err = proc.communicate(timeout=300)
    lines = [line for line in err.splitlines() if line.startswith("hyperzero: error:")]
    first_ok = (killed is not None and proc.returncode == 2 and "Traceback" not in err and len(lines) == 1
                and "a Ray worker died while training ensemble" in lines[0] and "rerun the same command" in lines[0])
    again = hz(*args, "--out", str(out), "--executor", "ray", timeout=900)
    same = again.returncode == 0 and {p.parent.name: sha(p) for p in out.glob("*/expert.pt")} == {
        p.parent.name: sha(p) for p in local.glob("*/expert.pt")}
    if not (first_ok and same):
        log.append(f"ray worker death: killed pid {killed}, rc={proc.returncode}, rerun rc={again.returncode}, "
                   f"same experts={same}\n{err[-1500:]}\n--- rerun:\n{again.stderr[-1000:]}")
    return 1, int(first_ok and same)


# ------------------------------------------------------------------------------------------ omitted / unknown context
def _training_range(run: Path, fit: str = FIT) -> tuple[float, float]:
    """(min, max) speed over the training tasks of the fit's split, from split.json and the dataset manifest."""
    train = set(json.loads((run / fit / "split.json").read_text())["train"])
    speeds = [float(t["context"]["speed"]) for t in json.loads((run / "dataset" / "manifest.json").read_text())["tasks"]
              if t["task_id"] in train]
    return min(speeds), max(speeds)


CONTEXT_API_SCRIPT = r'''
import json, sys, tempfile, warnings
import numpy as np
from hyperzero.datasets.writer import DatasetWriter
from hyperzero.envs import MIN_ABS_SPEED, ExtrapolationWarning
from hyperzero.training import load_fit
fit, inside, outside = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
tiny_below = -MIN_ABS_SPEED / 5
results = []
def expect(name, fn, *words, after=lambda: True):
    try:
        value = fn()
    except ValueError as e:
        results.append([name, all(w in str(e) for w in words) and after(), str(e)[:300]])
        return
    except Exception as e:
        results.append([name, False, f"{type(e).__name__}: {e}"[:300]])
        return
    results.append([name, False, f"accepted: {value!r}"[:300]])

tm = load_fit(fit)
cases = {"missing speed": ({"torso_length": 0.6}, ["lacks features ['speed']"]),
         "unknown feature": ({"speed": 2, "foo": 1}, ["unknown context feature", "'foo'"]),
         "fixed feature at another value": ({"speed": 2, "gravity": 5}, ["'gravity' = 5", "not varied"]),
         "speed 5e-324": ({"speed": 5e-324}, ["'speed'", f"below the minimum {MIN_ABS_SPEED:g}"]),
         f"speed {tiny_below:g}": ({"speed": tiny_below}, ["'speed'", f"below the minimum {MIN_ABS_SPEED:g}"])}
for name, (ctx, words) in cases.items():
    expect(f"load_fit(...).policy {name}", lambda: tm.policy(ctx), *words)

def caught(ctx):
    model = load_fit(fit)  # a fresh model: the warning is given once per feature and model
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        model.policy(ctx).act(np.zeros((1, 17), np.float32))
    return [str(w.message) for w in got if issubclass(w.category, ExtrapolationWarning)]
got = caught({"speed": inside})
results.append([f"policy speed={inside:g} inside the training range: no ExtrapolationWarning", got == [], repr(got)[:300]])
got = caught({"speed": outside})
results.append([f"policy speed={outside:g} outside the training range: one ExtrapolationWarning", len(got) == 1
                and f"'speed' = {outside:g} is outside the range of the training tasks" in got[0], repr(got)[:300]])
got = caught({"speed": MIN_ABS_SPEED})
results.append([f"policy speed={MIN_ABS_SPEED:g} (the minimum itself) accepted", got == [], repr(got)[:300]])

def episodes(seed=0, E=2, T=5, S=17, A=6):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(E, T + 1, S)).astype(np.float32)
    trunc = np.zeros((E, T), bool)
    trunc[:, -1] = True
    return {"obs": obs[:, :-1], "next_obs": obs[:, 1:], "action": rng.uniform(-1, 1, (E, T, A)),
            "reward": np.ones((E, T)), "terminated": np.zeros((E, T), bool), "truncated": trunc,
            "episode_seed": np.arange(E)}
broken = episodes(1)
broken["next_obs"] = broken["next_obs"].copy()
broken["next_obs"][1, 2, 3] += 0.25
with tempfile.TemporaryDirectory() as tmp:
    w = DatasetWriter(tmp, "cheetah-run", ["speed"])
    first = w.add_task({"speed": 1.2345649999}, episodes(0))["task_id"]
    unchanged = lambda: w.task_ids == [first] and len(list(w.tasks_dir.glob("*.npz"))) == 1
    expect("DatasetWriter.add_task missing context_names feature", lambda: w.add_task({"torso_length": 0.5}, episodes(2)),
           "lacks features ['speed']", after=unchanged)
    expect("DatasetWriter.add_task same context again", lambda: w.add_task({"speed": 1.2345649999,
           "torso_length": 0.5}, episodes(3)), first, "already in the dataset", after=unchanged)
    expect("DatasetWriter.add_task duplicate context vector (other task id, same float32 speed)",
           lambda: w.add_task({"speed": 1.2345650001}, episodes(4)), "'speed'", "is the same as task", first,
           after=unchanged)
    expect("DatasetWriter.add_task broken transitions", lambda: w.add_task({"speed": 3}, broken),
           "episode 1: next_obs[2] differs from obs[3]", after=unchanged)
    w.close()
print(json.dumps(results))
'''


def context_trials(base: Path, work: Path, log: list) -> tuple[int, int, int, int]:
    """On the base run's speed-only hyperzero fit: contexts that omit a varied feature, name an unknown one, move a fixed
    one, go below MIN_ABS_SPEED or repeat a feature are refused naming the feature (`export-policy`: exit 2, one line,
    nothing written; `load_fit(...).policy`: ValueError), as are a dataset task missing a feature, repeating a context
    vector or with next_obs[t] != obs[t+1]; a context inside the training range is accepted silently, one outside it
    with an ExtrapolationWarning (`hyperzero: warning:` from the CLI)."""
    from hyperzero.envs import MIN_ABS_SPEED

    fit = str(base / FIT)
    lo, hi = _training_range(base)
    inside, outside = (lo + hi) / 2, hi + 1
    if abs(inside) < MIN_ABS_SPEED:
        inside = (inside + hi) / 2
    npz = work / "ctx-policy.npz"
    below = f"below the minimum {MIN_ABS_SPEED:g}"
    refused = [  # (--context, words of the one error line)
        ("torso_length=0.6", ["lacks features ['speed']"]),
        ("speed=2,foo=1", ["unknown context feature", "'foo'"]),
        ("speed=2,gravity=5", ["'gravity' = 5", "not varied"]),
        ("speed=5e-324", ["'speed'", below]),
        (f"speed={-MIN_ABS_SPEED / 5:g}", ["'speed'", below]),
        ("speed=2,speed=3", ["speed"]),
    ]
    accepted = [  # (--context, a warning expected)
        (f"speed={inside:g}", False), (f"speed={MIN_ABS_SPEED:g}", False), (f"speed={outside:g}", True)]
    tried = handled = 0
    for context, words in refused:
        npz.unlink(missing_ok=True)
        proc = hz("export-policy", "--fit", fit, "--context", context, "--out", str(npz), timeout=300)
        tried += 1
        lines = [line for line in proc.stderr.splitlines() if line.startswith("hyperzero: error:")]
        ok = (proc.returncode == 2 and "Traceback" not in proc.stderr and len(lines) == 1
              and all(w in lines[0] for w in words) and not npz.exists())
        handled += ok
        if not ok:
            log.append(f"context export-policy --context {context}: rc={proc.returncode}, wrote {npz.name}: "
                       f"{npz.exists()}\n{(proc.stderr + proc.stdout)[-1500:]}")
    for context, warns in accepted:
        npz.unlink(missing_ok=True)
        proc = hz("export-policy", "--fit", fit, "--context", context, "--out", str(npz), timeout=300)
        tried += 1
        warning = [line for line in proc.stderr.splitlines() if line.startswith("hyperzero: warning:")]
        value = context.split("=", 1)[1]
        ok = proc.returncode == 0 and npz.exists() and (
            len(warning) == 1 and f"'speed' = {value} is outside the range of the training tasks" in warning[0]
            if warns else not warning and "warning" not in proc.stderr.lower())
        handled += ok
        if not ok:
            log.append(f"context export-policy --context {context} (training range [{lo:g}, {hi:g}], warning "
                       f"expected: {warns}): rc={proc.returncode}\n{proc.stderr[-1500:]}")
    proc = subprocess.run([sys.executable, "-c", CONTEXT_API_SCRIPT, fit, repr(inside), repr(outside)], cwd=REPO,
                          env=ENV, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        log.append(f"context API trials crashed:\n{proc.stderr[-3000:]}")
        return tried, handled, 1, 0
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, ok, text in data:
        if not ok:
            log.append(f"context API {name}: {text}")
    NOTES.append("context trials: a repeated feature has no Python form (a dict keeps one value per key), so it is "
                 "tried through `export-policy --context speed=2,speed=3` and the explorer's JSON body only")
    return tried, handled, len(data), sum(ok for _, ok, _ in data)


# ------------------------------------------------------------------------------------------ explorer faults
def _http(url: str, body: bytes | dict | None = None, host: str | None = None, timeout: float = 120
          ) -> tuple[int, str, str]:
    import urllib.error
    import urllib.request

    headers = {"Host": host} if host else {}
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.headers.get("Content-Type") or "", resp.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type") or "", e.read().decode(errors="replace")
    except OSError as e:
        return 0, "", f"{type(e).__name__}: {e}"


def _json_error(content_type: str, text: str) -> str | None:
    if not content_type.startswith("application/json"):
        return None
    try:
        return str(json.loads(text).get("error"))
    except (ValueError, AttributeError):
        return None


def _start_explore(run: Path, stderr_path: Path) -> tuple[subprocess.Popen, str | None]:
    import select

    err = open(stderr_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "hyperzero", "explore", str(run), "--port", "0", "--quiet",
                             "--method", "hyperzero", "--episode-steps", "20", "--clip-steps", "10", "--size", "96x72"],
                            cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)
    err.close()
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            line = proc.stdout.readline()
            if "http://127.0.0.1:" in line:
                return proc, line.split("at ", 1)[1].split()[0]
    return proc, None


def explore_trials(base: Path, work: Path, log: list) -> tuple[int, int]:
    """`hyperzero explore RUN --port 0` on a copy of the base run whose context_blind model.pt is garbled, checked over
    HTTP: the damaged fit gets a JSON error naming the file and the server keeps serving the other fit; a foreign Host
    header gets a JSON 421, loopback ones are answered; path traversal gets 404 without the file; a bad context gets a
    JSON 4xx naming the feature."""
    from hyperzero.envs import MIN_ABS_SPEED

    run = work / "explore-run"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(base, run)
    damaged = run / "fits" / "context_blind" / "seed_0" / "model.pt"
    garble(damaged)
    proc, url = _start_explore(run, work / "explore-stderr.log")
    if url is None:
        proc.kill()
        log.append(f"explore: the server did not start (rc={proc.poll()})\n"
                   f"{(work / 'explore-stderr.log').read_text()[-2000:]}")
        return 1, 0
    port = url.rstrip("/").rsplit(":", 1)[1]
    good = {"context": {"speed": 2.0}, "method": "hyperzero", "seed": 0, "episode_seed": 1_000_000, "clip_steps": 10}
    checks: list[tuple[str, bool, str]] = []

    def check(name: str, ok: bool, said: str) -> None:
        checks.append((name, bool(ok), said))

    def finished(text: str) -> bool:
        try:
            return json.loads(text.strip().splitlines()[-1]).get("type") == "done"
        except (ValueError, IndexError, AttributeError):
            return False

    try:
        # a damaged model.pt of one fit
        for name, body in [("rollout of the damaged fit", {**good, "method": "context_blind"}),
                           ("damaged fit as the comparison", {**good, "compare": "context_blind"}),
                           ("damaged fit asked again", {**good, "method": "context_blind"})]:
            code, ctype, text = _http(url + "api/rollout", body)
            error = _json_error(ctype, text)
            named = error is not None and str(damaged) in error and json.loads(text).get("file") == str(damaged)
            check(f"damaged model.pt: {name}", code == 500 and named, f"{code} {ctype} {text[:400]}")
        code, ctype, text = _http(url + "api/rollout", good)
        check("damaged model.pt: the other fit still rolls out", code == 200 and finished(text), f"{code} {text[-400:]}")
        code, ctype, text = _http(url + "api/run")
        check("damaged model.pt: /api/run still served", code == 200 and "context_names" in text, f"{code} {text[:300]}")
        # Host header (DNS rebinding)
        for host, want in [("evil.example", 421), (f"evil.example:{port}", 421), ("localhost.evil.example", 421),
                           (f"localhost:{port}", 200), (f"127.0.0.1:{port}", 200)]:
            code, ctype, text = _http(url + "api/run", host=host)
            ok = code == want and (json.loads(text).get("context_names") == ["speed"] if want == 200 else
                                   (_json_error(ctype, text) or "").find("DNS rebinding") >= 0
                                   and "tasks" not in text)
            check(f"Host: {host} -> {want}", ok, f"{code} {ctype} {text[:300]}")
        # path traversal
        for path in ["static/../../../../../../etc/passwd", "static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                     "static/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd", "static/%2e%2e%2fapp.py", "static/../app.py",
                     "static/..%5capp.py", "static/%252e%252e/app.py", "static/....//app.py",
                     f"static/../../../../../../..{damaged.parent.parent / 'seed_0' / 'split.json'}",
                     "api/clips/..%2f..%2f..%2fetc%2fpasswd/0.mp4", "../../../../etc/passwd", "%2e%2e/%2e%2e/etc/passwd"]:
            code, ctype, text = _http(url + path)
            leaked = "root:" in text or "def create_app" in text or '"train"' in text
            check(f"traversal GET /{path} -> 404", code == 404 and not leaked, f"{code} {ctype} {text[:300]}")
        # bad contexts
        below = f"below the minimum {MIN_ABS_SPEED:g}"
        for name, context, words in [("missing feature", {}, ["'speed'"]),
                                     ("missing feature, another given", {"torso_length": 0.5}, ["'speed'"]),
                                     ("unknown feature", {"speed": 2.0, "foo": 1.0}, ["'foo'"]),
                                     ("fixed feature at another value", {"speed": 2.0, "gravity": 5.0}, ["'gravity'"]),
                                     ("speed 5e-324", {"speed": 5e-324}, ["'speed'", below]),
                                     (f"speed {-MIN_ABS_SPEED / 5:g}", {"speed": -MIN_ABS_SPEED / 5}, ["'speed'", below])]:
            code, ctype, text = _http(url + "api/rollout", {**good, "context": context})
            error = _json_error(ctype, text) or ""
            check(f"bad context {name}", 400 <= code < 500 and all(w in error for w in words), f"{code} {text[:400]}")
        raw = (b'{"context": {"speed": 2, "speed": 3}, "method": "hyperzero", "seed": 0, "episode_seed": 1000000, '
               b'"clip_steps": 10}')
        code, ctype, text = _http(url + "api/rollout", raw)
        check("bad context repeated feature (JSON key twice)", 400 <= code < 500 and "speed" in (_json_error(ctype, text)
                                                                                             or ""), f"{code} {text[:400]}")
        code, ctype, text = _http(url + "api/run")
        check("still serving after every fault", code == 200 and proc.poll() is None, f"{code} rc={proc.poll()}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    stderr = (work / "explore-stderr.log").read_text()
    for name, ok, said in checks:
        if not ok:
            log.append(f"explore {name}: {said}")
    if "Traceback" in stderr:
        NOTES.append(f"explore: the server logged a traceback: {stderr[stderr.index('Traceback'):][:600]}")
    return len(checks), sum(ok for _, ok, _ in checks)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="/tmp/hz-trials", help="scratch directory (deleted first)")
    p.add_argument("--report", default=None, help="also write the markdown table (and failures) here")
    p.add_argument("--kills", type=int, default=27, help="SIGKILLs in the kill trial")
    p.add_argument("--only", nargs="*", default=None,
                   help="subset: corruption inputs concurrency kill redo diskfull bounds modes ray contexts "
                        "explore")
    args = p.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    base = work / "base"
    t0 = time.time()
    first = run_tiny(base)
    if first.returncode != 0:
        print(first.stderr, file=sys.stderr)
        return 1
    log: list[str] = []
    rows = []
    only = set(args.only or ["corruption", "inputs", "concurrency", "kill", "redo", "diskfull", "bounds", "modes",
                             "ray", "contexts", "explore"])
    if "corruption" in only:
        tried, ok = corruption_trials(base, work, log)
        rows.append(("corrupted artifacts (garble / truncate / empty, every file kind a rerun reads)", tried, ok))
    if "inputs" in only:
        c_tried, c_ok, a_tried, a_ok = bad_input_trials(base, work, log)
        rows.append((f"bad inputs ({c_tried} CLI, {a_tried} Python API)", c_tried + a_tried, c_ok + a_ok))
    # families that report (tried, handled): name -> (table row, trial)
    simple = {
        "concurrency": ("same run directory written twice at once", lambda: concurrency_trials(base, work, log)),
        "kill": ("SIGKILL then rerun", lambda: kill_trials(base, work, log, args.kills)),
        "redo": ("damaged expert redone: same expert.pt and results.csv bytes", lambda: redo_trials(base, work, log)),
        "diskfull": ("disk full (tmpfs) mid-run, then rerun: path named, same bytes",
                     lambda: disk_full_trials(base, work, log)),
        "bounds": ("unbounded or late-failing inputs refused at once (4 GiB limit)",
                   lambda: resource_trials(base, work, log)),
        "modes": ("file and folder modes follow the umask (runs)", lambda: mode_trials(base, work, log)),
        "ray": ("Ray worker SIGKILLed: one line, rerun gives the same experts", lambda: ray_trials(work, log)),
    }
    for family, (label, trial) in simple.items():
        if family in only:
            rows.append((label, *trial()))
    if "contexts" in only:
        c_tried, c_ok, a_tried, a_ok = context_trials(base, work, log)
        rows.append((f"omitted / unknown / fixed / below-minimum / repeated context features refused naming the "
                     f"feature; training-range warning ({c_tried} CLI, {a_tried} Python API)", c_tried + a_tried,
                     c_ok + a_ok))
    if "explore" in only:
        tried, ok = explore_trials(base, work, log)
        rows.append(("explorer faults over HTTP (damaged model.pt, foreign Host, path traversal, bad context)",
                     tried, ok))
    table = ["| trial | tried | handled | failed |", "|---|---|---|---|"]
    table += [f"| {name} | {tried} | {ok} | {tried - ok} |" for name, tried, ok in rows]
    text = "\n".join(table) + f"\n\n({time.time() - t0:.0f} s)\n"
    if NOTES:
        text += "\n" + "\n".join(f"* {n}" for n in NOTES) + "\n"
    if log:
        text += "\nFailures:\n\n" + "\n\n".join(log) + "\n"
    print(text)
    if args.report:
        Path(args.report).write_text(text)
    return 0 if not log else 1


if __name__ == "__main__":
    sys.exit(main())
