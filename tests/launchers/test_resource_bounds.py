"""The whole config is checked, resource bounds included, before anything is written; every message names
the key, option or file; YAML aliases and duplicate keys are refused; conflicting --set are refused."""
import pytest

from hyperzero.cli import main
from hyperzero.launchers.config import MAX_TASKS, resolve_config
from hyperzero.launchers.config_files import load_config_source
from hyperzero.launchers.resources import check_memory, memory_estimate

TINY = load_config_source("tiny")[0]


@pytest.mark.parametrize("overrides, words", [
    (["contexts.sample={n: 1000000000, seed: 0}"], ["contexts.sample.n=1000000000", str(MAX_TASKS)]),
    (["contexts.grid.speed=-10:10:0.01", "contexts.grid.torso_length=0.3:0.7:0.001"], ["contexts.grid", "802401 tasks"]),
    (["experts.batch_size=1e12"], ["experts.batch_size=1000000000000", "<="]),
    (["experts.hidden_sizes=[1e9, 1e9]"], ["experts.hidden_sizes", "65536"]),
    (["experts.seed=-1"], ["experts.seed=-1", ">= 0"]),
    (["experts.device=tpu"], ["experts.device='tpu'", "cuda"]),
    (["experts.n_step=100000"], ["experts.n_step"]),
    (["fit.model.embed_dims=[]"], ["fit.model", "hyperzero", "embedding dims"]),
    (["fit.model.hidden_dim=1e9"], ["fit.model.hidden_dim=1000000000", "<="]),
    (["fit.batch_size=1e12"], ["fit.batch_size=1000000000000", "<="]),
    (["dataset.n_episodes=1e9"], ["dataset.n_episodes=1000000000", "<="]),
    (["evaluate.video_steps=1e9"], ["evaluate.video_steps"]),
    (["contexts.grid.speed=[1,2]", "contexts.sample={n: 3}"], ["contexts.grid.speed=[1,2]", "contexts.sample",
                                                              "exactly one of grid, sample or list"]),
    (["contexts.sample={n: 3}", "contexts.list=[{speed: 2}, {speed: 3}]"], ["conflict"]),
    (["experts.seed=1", "experts.seed=2"], ["experts.seed is given twice", "'experts.seed=1'", "'experts.seed=2'"]),
    (["contexts.sample={n: 3, n: 4}"], ["--set contexts.sample", "key 'n' twice"]),
    (["experts.hidden_sizes=" + "[" * 8 + "]" * 8], ["experts.hidden_sizes"]),
])
def test_refused_with_the_key_named(overrides, words):
    with pytest.raises(ValueError) as info:
        resolve_config(TINY, overrides)
    text = str(info.value)
    assert all(w in text for w in words), text
    assert "\n" not in text and len(text) < 600, text


def test_the_same_key_twice_with_the_same_value_and_one_kind_of_contexts_are_fine():
    config = resolve_config(TINY, ["experts.seed=3", "experts.seed=3", "contexts.grid.speed=[1,2]",
                                   "contexts.grid.torso_length=[0.4,0.5]"])
    assert config["experts"]["seed"] == 3 and set(config["contexts"]["grid"]) == {"speed", "torso_length"}
    assert set(resolve_config(TINY, ["contexts.sample={n: 3}"])["contexts"]) == {"sample"}  # replaces the preset's


def test_a_huge_value_is_not_echoed_back():
    with pytest.raises(ValueError) as info:
        resolve_config(TINY, ["experts.hidden_sizes=[" + ",".join(["x"] * 20_000) + "]"])
    assert len(str(info.value)) < 600


def test_alias_bombs_and_duplicate_keys_in_a_config_file_are_refused(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    bomb.write_text("\n".join(lines) + "\nfamily: cheetah-run\n")
    with pytest.raises(ValueError, match=f"{bomb}: not valid YAML: found the alias \\*a0: YAML aliases are not allowed"):
        load_config_source(str(bomb))
    dup = tmp_path / "dup.yaml"
    dup.write_text("family: cheetah-run\nexperts:\n  seed: 1\n  seed: 2\n")
    with pytest.raises(ValueError, match=f"{dup}: .*key 'seed' twice \\(first on line 3\\).* line 4"):
        load_config_source(str(dup))


def test_a_config_file_that_is_not_utf8_or_too_big_is_named(tmp_path):
    utf16 = tmp_path / "utf16.yaml"
    utf16.write_bytes("family: cheetah-run\n".encode("utf-16"))
    with pytest.raises(ValueError, match=f"config file {utf16}: not UTF-8 text .*UTF-16"):
        load_config_source(str(utf16))
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(ValueError, match=f"config file {big} is .* bytes"):
        load_config_source(str(big))
    bom = tmp_path / "bom.yaml"
    bom.write_bytes(b"\xef\xbb\xbffamily: cheetah-run\n")
    assert load_config_source(str(bom))[0] == {"family": "cheetah-run"}


def test_memory_estimate_refuses_what_cannot_fit_naming_the_keys():
    config = resolve_config(TINY, ["experts.train_steps=1e9", "experts.replay_capacity=1e9"])
    with pytest.raises(ValueError, match="the experts stage would need about .*replay .* more than this machine's "
                                         ".*; lower experts.replay_capacity or experts.train_steps"):
        check_memory(config, available=8 << 30)
    tiny = resolve_config(TINY)
    check_memory(tiny, available=8 << 30)
    assert all(total < 64 << 20 for total, _, _ in memory_estimate(tiny).values())
    with pytest.raises(ValueError, match="the fits stage .* lower fit.model widths"):
        check_memory(resolve_config(TINY, ["fit.model.hidden_dim=60000"]), available=256 << 20)


@pytest.mark.parametrize("argv, words", [
    (["--set", "contexts.sample={n: 1000000000, seed: 0}"], ["contexts.sample.n"]),
    (["--set", "fit.model.embed_dims=[]"], ["fit.model"]),
    (["--set", "experts.seed=-1"], ["experts.seed=-1"]),
    (["--device", "tpu"], ["--device 'tpu'", "auto, cpu, cuda"]),
    (["--set", "experts.train_steps=1e9", "--set", "experts.replay_capacity=1e9"], ["experts stage", "memory"]),
])
def test_run_refuses_before_writing_anything(tmp_path, capsys, argv, words):
    out = tmp_path / "run"
    assert main(["run", "tiny", "--out", str(out), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words) and "Traceback" not in err, err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("argv, words", [
    (["--sample", "1000000000"], ["--sample", str(MAX_TASKS)]),
    (["--contexts", "speed=2,speed=3"], ["speed is given twice"]),
    (["--grid", "speed=1,2", "speed=3"], ["--grid gives speed more than once"]),
    (["--grid", "speed=-10:10:0.01", "torso_length=0.3:0.7:0.001"], ["802401 tasks"]),
    (["--contexts", "speed=2", "--batch-size", "1000000000000"], ["--batch-size", "batch_size"]),
    (["--contexts", "speed=2", "--hidden-sizes", "1000000000,1000000000"], ["--hidden-sizes", "65536"]),
    (["--contexts", "speed=2", "--seed", "-1"], ["--seed", ">= 0"]),
    (["--contexts", "speed=2", "--batch-size", "1000000", "--hidden-sizes", "60000,60000"], ["memory", "--hidden-sizes"]),
])
def test_experts_train_refuses_before_writing_anything(tmp_path, capsys, argv, words):
    out = tmp_path / "experts"
    assert main(["experts", "train", "--family", "cheetah-run", "--out", str(out), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words) and "Traceback" not in err, err
    assert not out.exists()
