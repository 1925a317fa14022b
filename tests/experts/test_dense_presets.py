"""The nine dense presets: the paper's density, chains on, the paper's split with >= 3 held-out tasks per split seed,
and selection on the training tasks (no validation task carved out of them)."""
import subprocess
import sys
from pathlib import Path

import pytest

from hyperzero.datasets.splits import make_split
from hyperzero.envs import context_id
from hyperzero.launchers.config import resolve_config, resolve_contexts
from hyperzero.launchers.config_files import load_config_source
from hyperzero.training.config import FitConfig

DENSE = [f"{fam}-{kind}-dense" for fam in ("cheetah-run", "walker-walk", "finger-spin")
         for kind in ("reward", "dynamics", "both")]
SPACING = {"cheetah-run": {"speed": 0.5, "torso_length": 0.05}, "walker-walk": {"torso_length": 0.05},
           "finger-spin": {"finger_length": 0.05}}


@pytest.mark.parametrize("name", DENSE)
def test_dense_presets_resolve_to_the_paper_density(name):
    import hyperzero.launchers.presets as presets

    text = (Path(presets.__file__).parent / f"{name}.yaml").read_text()
    assert f"extends: {name.replace('-dense', '-small')}" in text
    raw, _ = load_config_source(name)
    config = resolve_config(raw)
    family, kind = config["family"], name.split("-")[2]
    contexts = resolve_contexts(family, config["contexts"])
    varied = {k: sorted({c[k] for c in contexts}) for k in contexts[0] if len({c[k] for c in contexts}) > 1}
    assert len(contexts) >= (25 if kind == "both" else 20)
    if kind == "both":
        assert len(varied) == 2 and all(len(v) >= 5 for v in varied.values())
    else:
        assert len(varied) == 1
        for feature, values in varied.items():  # no coarser than the authors' spacing
            limit = SPACING[family].get(feature)
            steps = [b - a for a, b in zip(values, values[1:]) if a * b > 0]  # not across the sign change
            assert limit is None or max(steps) <= limit + 1e-9
    assert config["experts"]["chain"]["enabled"] is True and config["experts"]["chain"]["anchors"] >= 1
    fit = FitConfig.from_dict({k: v for k, v in config["fit"].items() if k in FitConfig.__dataclass_fields__})
    fit.check()
    assert fit.protocol == "paper" and fit.validation == "train"
    ids = [context_id(c) for c in contexts]
    for seed in config["fit"]["seeds"]:
        split = make_split(ids, seed, fit.protocol, 0.0, fit.test_fraction, fit.min_test_tasks)
        assert len(split.test) >= 3 and not split.val and len(split.train) == len(ids) - len(split.test)


def test_show_prints_a_dense_preset():
    out = subprocess.run([sys.executable, "-m", "hyperzero", "run", "cheetah-run-reward-dense", "--show"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "name: cheetah-run-reward-dense" in out.stdout and "chain: {enabled: true" in out.stdout
    assert "validation: train" in out.stdout
