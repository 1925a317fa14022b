"""Bad input -> ValueError naming the problem and the fix."""
import numpy as np
import pytest

from hyperzero.cli import main
from hyperzero.experts import TD3Config, load_expert, train_experts, train_group

from .helpers import task, tiny


@pytest.mark.parametrize("overrides, needle", [
    ({"precision": "fp16"}, "--precision"),
    ({"train_steps": 0}, "--train-steps"),
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
    base = ["experts", "train", "--family", "cheetah-run", "--out", str(tmp_path), "--train-steps", "10"]
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

    from hyperzero.utils.hardware import cpu_bf16_kernels
    from hyperzero.utils.torch_utils import resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    kernels = cpu_bf16_kernels()
    if kernels == "amx":  # Intel Xeon with AMX: the only CPU where bf16 made the experts faster
        assert resolve_precision("auto", cpu) == "bf16" and resolve_precision("bf16", cpu) == "bf16"
    elif kernels == "avx512_bf16":  # native, but slower than fp32 for these networks: allowed with a warning
        assert resolve_precision("auto", cpu) == "fp32"
        with pytest.warns(UserWarning, match="AVX512-BF16 without AMX"):
            assert resolve_precision("bf16", cpu) == "bf16"
    else:  # e.g. AMD Zen 3: bf16 would be emulated, ~17x slower
        assert resolve_precision("auto", cpu) == "fp32"
        with pytest.raises(ValueError, match="would only emulate bf16.*--precision auto"):
            resolve_precision("bf16", cpu)
    if torch.cuda.is_available():  # bf16 autocast was slower than fp32 on an H200 for these networks
        assert resolve_precision("auto", torch.device("cuda")) == "fp32"


def test_a_onednn_cap_below_bf16_means_fp32_on_any_cpu(monkeypatch):
    """A user who caps oneDNN (e.g. to compare kernels across CPUs) gets emulated bf16 even on an AMX Xeon."""
    import torch

    from hyperzero.utils.hardware import describe
    from hyperzero.utils.torch_utils import resolve_precision

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    with pytest.raises(ValueError, match="capped at AVX2 \\(ONEDNN_MAX_CPU_ISA\\).*--precision auto"):
        resolve_precision("bf16", torch.device("cpu"))
    facts = describe()  # what every run_info.json records
    assert facts["onednn_isa_cap"] == "AVX2" and facts["bf16_kernels"] is None and facts["native_bf16"] is False


def test_a_onednn_cap_at_avx512_bf16_leaves_native_but_slower_bf16(monkeypatch):
    import torch

    from hyperzero.utils.hardware import cpu_bf16_kernels, cpu_flags
    from hyperzero.utils.torch_utils import resolve_precision

    if "avx512_bf16" not in cpu_flags():
        pytest.skip("needs a CPU with AVX512-BF16")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert cpu_bf16_kernels() == "avx512_bf16"
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    with pytest.warns(UserWarning, match="auto picks fp32 here"):
        assert resolve_precision("bf16", torch.device("cpu")) == "bf16"


def test_cli_profiles_are_the_library_profiles(tmp_path, capsys):
    from hyperzero.experts.profiles import profile_config

    out = tmp_path / "experts"
    assert main(["experts", "train", "--family", "cheetah-run", "--contexts", "speed=2", "--out", str(out),
                 "--profile", "quick"]) == 2
    err = capsys.readouterr().err
    assert "unknown expert profile 'quick'" in err and "authors, fast" in err and not out.exists()
    fast = profile_config("fast", train_steps=10)
    assert fast.n_step == 3 and fast.critic_layer_norm and fast.train_steps == 10
    assert profile_config("authors").actor_lr == 1e-4  # the paper's TD3 stays selectable
    with pytest.raises(ValueError, match="unknown expert profile 'quick'; choose one of: authors, fast"):
        profile_config("quick")
