"""Bad input -> ValueError naming the problem and the fix."""
import numpy as np
import pytest

from hyperzero.cli import main
from hyperzero.experts import TD3Config, load_expert, train_experts, train_group

from .helpers import task, tiny


@pytest.mark.parametrize("overrides, needle", [
    ({"precision": "fp16"}, "--precision"),
    ({"train_steps": 0}, "--steps"),
    ({"tau": 1.5}, "tau"),
    ({"gamma": 1.0}, "gamma"),
    ({"eval_episodes": 0}, "eval_episodes"),
    ({"device": "tpu"}, "device"),
])
def test_bad_config(overrides, needle):
    with pytest.raises(ValueError, match=needle):
        TD3Config(**overrides).resolved("cheetah-run")


def test_family_defaults():
    assert TD3Config().resolved("walker-walk").batch_size == 512
    assert TD3Config().resolved("cheetah-run").batch_size == 256
    assert TD3Config(batch_size=64).resolved("walker-walk").batch_size == 64
    cfg = TD3Config()
    assert cfg.exploration_std(0) == 1.0 and cfg.exploration_std(50_000) == pytest.approx(0.55)
    assert cfg.exploration_std(10**6) == pytest.approx(0.1) and cfg.target_std(0) == 1.0


def test_checkpoint_interval_must_align_with_episodes(tmp_path):
    with pytest.raises(ValueError, match="multiple of the episode length"):
        train_group("cheetah-run", [task(tmp_path, 0, speed=2.0)], tiny(checkpoint_every=150), progress=False)


def test_bad_sweep_inputs(tmp_path):
    with pytest.raises(ValueError, match="speed"):
        train_experts("cheetah-run", [{"speed": 0.0}], tmp_path, tiny(), progress=False)
    with pytest.raises(ValueError, match="unknown family"):
        train_experts("cheetah-walk", [{"speed": 1.0}], tmp_path, tiny(), progress=False)
    with pytest.raises(ValueError, match="no contexts"):
        train_experts("cheetah-run", [], tmp_path, tiny(), progress=False)
    with pytest.raises(ValueError, match="executor"):
        train_experts("cheetah-run", [{"speed": 1.0}], tmp_path, tiny(), executor="slurm", progress=False)
    with pytest.raises(FileNotFoundError, match="no expert"):
        load_expert(tmp_path / "nothing")


def test_cli_errors(tmp_path, capsys):
    base = ["experts", "train", "--family", "cheetah-run", "--out", str(tmp_path), "--steps", "10"]
    assert main(base) == 2 and "exactly one of --grid" in capsys.readouterr().err
    assert main(base + ["--contexts", "speed=0"]) == 2 and "value 0 is not allowed" in capsys.readouterr().err
    assert main(base + ["--contexts", "speed"]) == 2 and "name=value" in capsys.readouterr().err
    assert main(base + ["--grid", "mass=1,2"]) == 2 and "unknown context feature" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing was half-written


def test_grid_skips_speed_zero(tmp_path, capsys):
    from hyperzero.cli.experts import _contexts_from_args
    from hyperzero.cli import build_parser

    args = build_parser().parse_args(["experts", "train", "--family", "cheetah-run", "--out", str(tmp_path),
                                      "--grid", "speed=-1:1:0.5"])
    ctxs = _contexts_from_args(args)
    assert [c["speed"] for c in ctxs] == [-1.0, -0.5, 0.5, 1.0]
    assert "skipping speed=0" in capsys.readouterr().err


def test_expert_rejects_bad_shapes(tmp_path):
    t = task(tmp_path, 0, speed=2.0)
    train_group("cheetah-run", [t], tiny(train_steps=100, seed_steps=100, eval_every=0), progress=False)
    expert = load_expert(t.dir)
    assert expert.act(np.zeros((3, 17), np.float32)).shape == (3, 6)
    with pytest.raises(ValueError, match=r"\[B, 17\]"):
        expert.act(np.zeros(17, np.float32))
    with pytest.raises(ValueError, match="same batch size"):
        expert.q(np.zeros((3, 17)), np.zeros((2, 6)))


def test_precision_follows_the_cpu():
    import torch

    from hyperzero.utils.hardware import cpu_has_native_bf16
    from hyperzero.utils.torch_utils import resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    if cpu_has_native_bf16():  # Intel with AMX / AVX512-BF16
        assert resolve_precision("auto", cpu) == "bf16" and resolve_precision("bf16", cpu) == "bf16"
    else:  # e.g. AMD Zen 3: bf16 would be emulated, ~17x slower
        assert resolve_precision("auto", cpu) == "fp32"
        with pytest.raises(ValueError, match="no native bf16.*--precision auto"):
            resolve_precision("bf16", cpu)
    if torch.cuda.is_available():  # bf16 autocast was slower than fp32 on an H200 for these networks
        assert resolve_precision("auto", torch.device("cuda")) == "fp32"


def test_cli_profiles_are_the_library_profiles():
    from hyperzero.cli.experts import PROFILES as CLI_PROFILES
    from hyperzero.experts.profiles import PROFILES, profile_config

    assert CLI_PROFILES == tuple(PROFILES)
    fast = profile_config("fast", train_steps=10)
    assert fast.n_step == 3 and fast.critic_layer_norm and fast.train_steps == 10
    assert profile_config("authors").actor_lr == 1e-4  # the paper's TD3 stays selectable
    with pytest.raises(ValueError, match="unknown expert profile 'quick'; choose one of: authors, fast"):
        profile_config("quick")
