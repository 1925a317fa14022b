"""`hyperzero fit` end to end on a dataset in the real on-disk format."""
import json

import numpy as np
import pytest

from hyperzero.models.export import NumpyPolicy

from hyperzero.cli import main
from hyperzero.models.registry import METHODS
from hyperzero.training import load_fit
from hyperzero.training.synthetic import write_synthetic_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("data") / "dataset")


def test_cli_fit_two_methods_two_seeds(dataset, tmp_path):
    argv = ["fit", "--dataset", str(dataset), "--method", "hyperzero,mlp_policy", "--seeds", "0,1",
            "--out", str(tmp_path), "--steps", "6", "--eval-interval", "3", "--batch-size", "32",
            "--tasks-per-batch", "4", "--model.hidden-dim", "16", "--no-progress", "--num-threads", "1",
            "--selection", "val_loss", "--value-scale", "0.5"]
    assert main(argv) == 0
    for method in ("hyperzero", "mlp_policy"):
        for seed in (0, 1):
            d = tmp_path / method / f"seed_{seed}"
            done = json.load(open(d / "done.json"))
            assert done["finished"] and done["steps"] == 6
            tm = load_fit(d)
            assert tm.family == "cheetah-run" and tm.context_names == ["speed"]
            assert tm.policy({"speed": 3.0}).act([0.0] * 17).shape == (6,)
            info = json.load(open(d / "run_info.json"))
            assert info["config"]["model"]["gamma"] == 0.99 and info["config"]["model"]["hidden_dim"] == 16
            assert info["config"]["model"]["value_scale"] == 0.5 and done["selection"] == "val_loss"
    s0 = json.load(open(tmp_path / "hyperzero" / "seed_0" / "split.json"))
    s1 = json.load(open(tmp_path / "hyperzero" / "seed_1" / "split.json"))
    assert s0 != s1 and s0 == json.load(open(tmp_path / "mlp_policy" / "seed_0" / "split.json"))
    tm = load_fit(tmp_path / "hyperzero" / "seed_0")
    assert tm.normalize_context({"speed": 10.0})[0] == pytest.approx(1.0)
    # export one context's policy and act with numpy only
    assert main(["export-policy", "--fit", str(tmp_path / "hyperzero" / "seed_0"), "--context", "speed=3",
                 "--out", str(tmp_path / "p.npz")]) == 0
    obs = np.linspace(-1, 1, 17, dtype=np.float32)
    np.testing.assert_allclose(NumpyPolicy.load(tmp_path / "p.npz").act(obs), tm.policy({"speed": 3.0}).act(obs),
                               atol=1e-5)
    assert NumpyPolicy.load(tmp_path / "p.npz").metadata["context"]["speed"] == 3.0  # validated: defaults filled in
    assert main(["export-policy", "--fit", str(tmp_path / "hyperzero" / "seed_0"), "--context", "speed",
                 "--out", str(tmp_path / "p.npz")]) == 2
    # a feature given twice is refused, not resolved to its last value
    assert main(["export-policy", "--fit", str(tmp_path / "hyperzero" / "seed_0"), "--context", "speed=2,speed=3",
                 "--out", str(tmp_path / "twice.npz")]) == 2
    assert not (tmp_path / "twice.npz").exists()


def test_cli_rejects_bad_input(dataset, tmp_path, capsys):
    assert main(["fit", "--dataset", str(dataset), "--out", str(tmp_path), "--method", "nope"]) == 2
    assert "unknown method" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # an option's value is checked by argparse, naming the option
        main(["fit", "--dataset", str(dataset), "--out", str(tmp_path), "--seeds", "a,b"])
    assert "--seeds" in capsys.readouterr().err
    assert main(["fit", "--dataset", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2


def test_method_all_expands_to_every_registered_method():
    from hyperzero.cli import build_parser
    from hyperzero.cli.fit import fit_settings

    for option in ("--methods", "--method"):  # --method: the older spelling, kept
        args = build_parser().parse_args(["fit", "--dataset", "d", "--out", "o", option, "all", "--seeds", "3"])
        section = fit_settings(args)
        assert section.sweep.methods == list(METHODS) and section.sweep.seeds == [3]


def test_fit_defaults_are_the_pipelines():
    from hyperzero.cli import build_parser
    from hyperzero.cli.fit import fit_settings
    from hyperzero.launchers.config import DEFAULTS

    section = fit_settings(build_parser().parse_args(["fit", "--dataset", "d", "--out", "o"]))
    assert section.sweep.methods == DEFAULTS["fit"]["methods"] and section.sweep.seeds == DEFAULTS["fit"]["seeds"]
