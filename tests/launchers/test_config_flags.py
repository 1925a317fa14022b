"""One source of truth for every setting: the config dataclasses generate every command's options (names,
defaults, help), the stage commands read --config/--set like `hyperzero run`, and presets can extend others."""
import argparse
import dataclasses
import typing

import pytest

from hyperzero.cli import build_parser, main
from hyperzero.cli.flags import (
    DEST_PREFIX,
    dataclass_flags,
    field_docs,
    section_flags,
    stage_config,
    yaml_text,
)
from hyperzero.launchers.config import DEFAULTS, DatasetSettings, ExpertSweepSettings, FitSweep, PipelineConfig, resolve_config, resolve_pipeline_config, section_classes
from hyperzero.launchers.config_files import list_presets, load_config_source

# command (argv prefix) -> the config sections it has options for, and their option prefix
COMMANDS = {
    ("experts", "train"): ["experts"],
    ("experts", "collect"): ["dataset"],
    ("fit",): ["fit"],
    ("evaluate",): ["evaluate"],
}


def _subparser(parser: argparse.ArgumentParser, path) -> argparse.ArgumentParser:
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def _actions(path) -> dict[str, argparse.Action]:
    """dest -> action of a command's generated options."""
    return {a.dest: a for a in _subparser(build_parser(), path)._actions if a.dest.startswith(DEST_PREFIX)}


def _all_classes():
    seen = []
    for classes in section_classes().values():
        for cls, _ in classes:
            stack = [cls]
            while stack:
                c = stack.pop()
                if c not in seen:
                    seen.append(c)
                hints = typing.get_type_hints(c)
                stack += [hints[f.name] for f in dataclasses.fields(c) if dataclasses.is_dataclass(hints[f.name])]
    return seen


@pytest.mark.parametrize("cls", _all_classes(), ids=lambda c: c.__name__)
def test_every_field_has_a_doc(cls):
    docs = field_docs(cls)
    missing = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name)]
    assert not missing, f"{cls.__name__}: fields without a `# doc` comment (their option's help): {missing}"


def test_a_field_without_a_doc_is_refused():
    @dataclasses.dataclass
    class Undocumented:
        documented: int = 1  # has a doc
        bare: int = 2

    with pytest.raises(ValueError, match="Undocumented.bare has no doc comment"):
        dataclass_flags(Undocumented, "x")


def test_docs_join_continuation_lines_but_not_section_headings():
    from hyperzero.experts.config import TD3Config

    docs = field_docs(TD3Config)
    assert "SimBa" in docs["obs_norm"] and "---" not in docs["max_episode_steps"]
    assert "same config packs" in field_docs(ExpertSweepSettings)["ensemble_size"]  # aligned continuation


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_every_field_has_an_option_in_every_command_of_its_section(path):
    actions = _actions(path)
    for section in COMMANDS[path]:
        include = ("methods", "seeds") if section == "evaluate" else ()
        for flag in section_flags(section, include):
            assert flag.dest in actions, f"{' '.join(path)} has no option for {section}.{flag.key}"
            assert actions[flag.dest].option_strings[0] == "--" + flag.key.replace("_", "-")
    run = _actions(("run",))
    for section in ("experts", "dataset", "fit", "evaluate"):
        for flag in section_flags(section):
            assert run[flag.dest].option_strings == ["--" + f"{section}.{flag.key}".replace("_", "-")]


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_run_and_stage_options_agree(path):
    """`hyperzero run --<section>.<key>` and the stage command's `--<key>`: same help (doc and default), both
    given-only (SUPPRESS), and the same value parsed from the same text."""
    stage, run = _actions(path), _actions(("run",))
    for dest, action in stage.items():
        if dest not in run:  # evaluate's methods/seeds: the pipeline evaluates every fit
            assert dest in ("set:evaluate.methods", "set:evaluate.seeds")
            continue
        other = run[dest]
        assert action.help == other.help and "(default: " in action.help
        assert action.default is argparse.SUPPRESS and other.default is argparse.SUPPRESS
        section, key = dest[len(DEST_PREFIX):].split(".", 1)
        flag = next(f for f in section_flags(section) if f.key == key)
        text = yaml_text(flag.default)
        assert action.type(text) == other.type(text)


def test_default_shown_is_the_dataclass_default():
    from hyperzero.experts.config import TD3Config

    actions = _actions(("experts", "train"))
    assert actions["set:experts.train_steps"].help.endswith(f"(default: {TD3Config().train_steps})")
    assert actions["set:experts.gate.max_retries"].option_strings == ["--gate.max-retries"]
    assert actions["set:experts.ensemble_size"].help.endswith("(default: 4)")
    collect = _actions(("experts", "collect"))
    assert collect["set:dataset.exclude_flagged"].help.endswith("(default: true)")


def test_option_values_read_like_yaml():
    parse = lambda *argv: build_parser().parse_args(["run", "tiny", *argv])
    args = parse("--experts.hidden-sizes", "64,64", "--experts.batch-size", "null", "--experts.train-steps", "1e3",
                 "--fit.lr-sweep", "[3e-4, 1e-3]", "--evaluate.videos", "--dataset.exclude-flagged", "false",
                 "--fit.protocol", "hypogen", "--experts.device", "cuda:0")
    from hyperzero.cli.flags import given_values

    assert given_values(args) == {"experts.hidden_sizes": [64, 64], "experts.batch_size": None,
                                  "experts.train_steps": 1000, "fit.lr_sweep": [0.0003, 0.001],
                                  "evaluate.videos": True, "dataset.exclude_flagged": False,
                                  "fit.protocol": "hypogen", "experts.device": "cuda:0"}
    for bad in (["--experts.train-steps", "1.5"], ["--fit.protocol", "other"], ["--evaluate.videos", "yes"]):
        with pytest.raises(SystemExit):
            parse(*bad)


def test_resolution_order_defaults_config_set_option():
    def experts(*argv):
        args = build_parser().parse_args(["experts", "train", "--out", "o", *argv])
        return stage_config(args, "experts")

    assert experts()["experts"]["profile"] == "authors" and "seed_steps" not in experts()["experts"]
    tiny = experts("--config", "tiny")
    assert tiny["experts"]["train_steps"] == 200 and tiny["family"] == "cheetah-run" and "grid" in tiny["contexts"]
    assert experts("--config", "tiny", "--set", "experts.train_steps=300")["experts"]["train_steps"] == 300
    given = experts("--config", "tiny", "--set", "experts.train_steps=300", "--train-steps", "400")
    assert given["experts"]["train_steps"] == 400 and given["experts"]["seed_steps"] == 100  # the rest from tiny
    gate = experts("--config", "quickstart", "--gate.max-retries", "3")["experts"]["gate"]
    assert gate == {"retry_steps": 20000, "max_retries": 3}  # an option sets one key of a nested section


def test_run_options_override_set_and_match_it(capsys):
    assert main(["run", "tiny", "--show", "--set", "experts.train_steps=5", "--experts.train-steps", "300",
                 "--fit.model.hidden-dim", "8"]) == 0
    shown = capsys.readouterr().out
    assert main(["run", "tiny", "--show", "--set", "experts.train_steps=300", "--set", "fit.model.hidden_dim=8"]) == 0
    assert capsys.readouterr().out == shown and "train_steps: 300" in shown


def test_stage_commands_refuse_unknown_set_keys(tmp_path, capsys):
    assert main(["fit", "--dataset", str(tmp_path), "--out", str(tmp_path / "f"), "--set", "fit.stepz=3"]) == 2
    err = capsys.readouterr().err
    assert "fit.stepz" in err and "fit.steps" in err and "fit.methods" in err
    assert main(["fit", "--dataset", str(tmp_path), "--out", str(tmp_path / "f"), "--set", "experts.seed=3"]) == 2
    assert "reads only fit" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path), "--set", "evaluate.episodez=3"]) == 2
    assert "evaluate.episodes" in capsys.readouterr().err
    assert main(["experts", "collect", "--experts", str(tmp_path), "--out", str(tmp_path / "d"),
                 "--set", "dataset.n_episode=3"]) == 2
    assert "dataset.n_episodes" in capsys.readouterr().err
    assert main(["experts", "train", "--config", "tiny", "--out", str(tmp_path / "e"),
                 "--set", "experts.gate.max_retriez=3"]) == 2
    assert "max_retriez" in capsys.readouterr().err and not (tmp_path / "e").exists()


def test_experts_train_takes_family_and_tasks_from_the_config(tmp_path, monkeypatch):
    import hyperzero.cli.experts as cli

    seen = {}
    monkeypatch.setattr(cli, "_train_locked", lambda args, out, contexts, section: seen.update(
        family=args.family, contexts=contexts, steps=section.solver.train_steps, gate=section.gate,
        size=section.settings.ensemble_size) or 0)
    assert main(["experts", "train", "--config", "tiny", "--out", str(tmp_path / "e")]) == 0
    assert seen["family"] == "cheetah-run" and [c["speed"] for c in seen["contexts"]] == [-4, 2, 4]
    assert seen["steps"] == 200 and seen["gate"] is None and seen["size"] == 3
    assert main(["experts", "train", "--config", "tiny", "--contexts", "speed=1", "speed=3",
                 "--out", str(tmp_path / "e2")]) == 0
    assert [c["speed"] for c in seen["contexts"]] == [1, 3]


def test_defaults_come_from_the_dataclasses():
    assert DEFAULTS["fit"]["methods"] == FitSweep().methods and DEFAULTS["fit"]["seeds"] == FitSweep().seeds
    assert DEFAULTS["dataset"]["exclude_flagged"] is DatasetSettings().exclude_flagged is True
    assert DEFAULTS["experts"]["ensemble_size"] == ExpertSweepSettings().ensemble_size
    assert DEFAULTS["experts"]["profile"] == ExpertSweepSettings().profile
    typed = PipelineConfig()  # the typed defaults are the same dataclasses'
    assert typed.fit.sweep.methods == DEFAULTS["fit"]["methods"] and typed.experts.settings.ensemble_size == 4


@pytest.mark.parametrize("name", list(list_presets()))
def test_typed_config_round_trips(name):
    typed = resolve_pipeline_config(load_config_source(name)[0])
    assert isinstance(typed, PipelineConfig) and typed.family
    assert PipelineConfig.from_dict(resolve_config(typed.to_dict())) == typed


def test_extends_merges_and_refuses_cycles_and_unknown_bases(tmp_path):
    (tmp_path / "base.yaml").write_text("name: base\nfamily: cheetah-run\ncontexts: {grid: {speed: [1, 2]}}\n"
                                        "experts: {train_steps: 100, seed: 3}\nfit: {model: {hidden_dim: 16}}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "child.yaml").write_text("extends: ../base.yaml\nname: child\n"
                                                 "contexts: {list: [{speed: 3}, {speed: 4}]}\n"
                                                 "experts: {train_steps: 200}\nfit: {model: {embed_dims: [8]}}\n")
    raw, where = load_config_source(tmp_path / "sub" / "child.yaml")
    assert "extends" not in raw and where.endswith("child.yaml")
    assert raw["name"] == "child" and raw["experts"] == {"train_steps": 200, "seed": 3}
    assert raw["contexts"] == {"list": [{"speed": 3}, {"speed": 4}]}  # replaced, not merged with the base's grid
    assert raw["fit"]["model"] == {"hidden_dim": 16, "embed_dims": [8]}
    assert "extends" not in resolve_config(raw)

    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ValueError, match="cycle"):
        load_config_source(tmp_path / "a.yaml")
    (tmp_path / "self.yaml").write_text("extends: self.yaml\n")
    with pytest.raises(ValueError, match="cycle"):
        load_config_source(tmp_path / "self.yaml")
    (tmp_path / "orphan.yaml").write_text("extends: no-such-preset\n")
    with pytest.raises(ValueError, match="extends no-such-preset: unknown preset 'no-such-preset'"):
        load_config_source(tmp_path / "orphan.yaml")
    (tmp_path / "preset-child.yaml").write_text("extends: tiny\nexperts: {train_steps: 7}\n")
    assert resolve_config(load_config_source(tmp_path / "preset-child.yaml")[0])["experts"]["train_steps"] == 7


def test_small_presets_share_their_base():
    from importlib import resources

    presets = resources.files("hyperzero.launchers.presets")
    for family in ("cheetah-run", "walker-walk", "finger-spin"):
        base = load_config_source(f"{family}-both-small")[0]
        for kind in ("dynamics", "reward"):
            assert f"extends: {family}-both-small" in presets.joinpath(f"{family}-{kind}-small.yaml").read_text()
            child = load_config_source(f"{family}-{kind}-small")[0]
            assert child["family"] == family and child["dataset"] == base["dataset"]
            assert child["contexts"] != base["contexts"] and child["name"] == f"{family}-{kind}-small"
    assert not any(name.startswith("_") for name in list_presets())
