"""Presets and config resolution: every shipped preset resolves; bad input is a clear ValueError."""
import pytest
import yaml

from hyperzero.launchers.config import config_differences, incompatible, invalidated_stages, resolve_config, resolve_contexts
from hyperzero.launchers.config_files import list_presets, load_config_source
from hyperzero.launchers.pipeline import prepare_run_dir

PAPER = [f"{fam}-{kind}" for fam in ("cheetah-run", "walker-walk", "finger-spin")
         for kind in ("reward", "dynamics", "both")]
SMALL = [f"{name}-small" for name in PAPER]


def test_paper_presets_quickstart_and_tiny_are_listed():
    names = set(list_presets())
    assert set(PAPER) | {"quickstart", "tiny"} <= names


@pytest.mark.parametrize("name", PAPER + SMALL + ["quickstart", "tiny"])
def test_every_preset_resolves(name):
    raw, _ = load_config_source(name)
    config = resolve_config(raw)
    contexts = resolve_contexts(config["family"], config["contexts"])
    assert len(contexts) >= 2
    if name in PAPER:
        assert config["experts"]["train_steps"] == 1_000_000
        assert config["evaluate"]["episodes"] == 10


@pytest.mark.parametrize("name", SMALL)
def test_reduced_presets_hold_out_three_tasks_and_run_every_method_the_setting_needs(name):
    from hyperzero.datasets.splits import test_count

    config = resolve_config(load_config_source(name)[0])
    contexts = resolve_contexts(config["family"], config["contexts"])
    assert len(contexts) >= 8 and test_count(len(contexts)) >= 3
    methods = set(config["fit"]["methods"])
    assert {"hyperzero", "hyperzero_without_td", "hyperzero_without_q", "mlp_policy", "mlp_uvfa_td",
            "context_blind"} <= methods
    if name.endswith("reward-small"):
        assert {"maml", "pearl"} <= methods
    kind = name.split("-")[2]
    varied = {k for k in contexts[0] if len({c[k] for c in contexts}) > 1}
    reward, = [f for f in ("speed",) if f in contexts[0]]
    assert (reward in varied) == (kind in ("reward", "both")) and (len(varied) == 2) == (kind == "both")


def test_paper_sweeps_match_the_authors_where_known():
    cheetah_reward = resolve_config(load_config_source("cheetah-run-reward")[0])
    speeds = sorted(c["speed"] for c in resolve_contexts("cheetah-run", cheetah_reward["contexts"]))
    assert speeds == [s / 2 for s in range(-20, 21) if s != 0]  # ±0.5 … ±10 step 0.5
    both = resolve_config(load_config_source("cheetah-run-both")[0])
    grid = resolve_contexts("cheetah-run", both["contexts"])
    assert sorted({c["speed"] for c in grid}) == [1, 2, 3, 4, 5]
    assert sorted({round(c["torso_length"], 2) for c in grid}) == [0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7]


def test_set_overrides_and_their_errors():
    raw, _ = load_config_source("tiny")
    config = resolve_config(raw, ["experts.train_steps=300", "fit.seeds=[3]", "evaluate.episodes=2"])
    assert config["experts"]["train_steps"] == 300 and config["fit"]["seeds"] == [3]
    with pytest.raises(ValueError, match="key=value"):
        resolve_config(raw, ["experts.train_steps"])
    with pytest.raises(ValueError, match="unknown section"):
        resolve_config(raw, ["expert.train_steps=3"])
    with pytest.raises(ValueError, match="unknown keys \\['train_step'\\]"):
        resolve_config(raw, ["experts.train_step=3"])
    with pytest.raises(ValueError, match="unknown methods"):
        resolve_config(raw, ["fit.methods=[hyperzer0]"])
    with pytest.raises(ValueError, match="unknown preset"):
        load_config_source("no-such-preset")


def test_a_different_config_in_an_existing_run_is_refused_unless_forced(tmp_path, capsys):
    run = tmp_path / "run"
    prepare_run_dir("tiny", run)
    (run / "experts").mkdir()
    (run / "experts" / "marker").write_text("old")
    # evaluation-only changes are compatible
    prepare_run_dir("tiny", run, ["evaluate.episodes=3"])
    with pytest.raises(ValueError, match="different config.*experts.train_steps"):
        prepare_run_dir("tiny", run, ["experts.train_steps=999"])
    prepare_run_dir("tiny", run, ["experts.train_steps=999"], force=True)
    assert not (run / "experts").exists()
    assert list((run / "stale").glob("experts-*/marker"))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["experts"]["train_steps"] == 999


def test_difference_classification():
    old = {"experts": {"train_steps": 1}, "evaluate": {"episodes": 1}, "fit": {"methods": ["a"], "steps": 1}}
    new = {"experts": {"train_steps": 1}, "evaluate": {"episodes": 2}, "fit": {"methods": ["a", "b"], "steps": 2}}
    diffs = config_differences(old, new)
    assert diffs == ["evaluate.episodes", "fit.methods", "fit.steps"]
    assert incompatible(diffs) == ["fit.steps"]
    assert invalidated_stages(diffs) == ["fits", "eval"]
