"""The pipeline runs on the typed PipelineConfig: it writes the same config.yaml as the plain resolved config did,
and hands each stage the same settings the dict-reading code derived (so existing runs resume unchanged)."""
from pathlib import Path

import pytest

from hyperzero.evaluation import EvalConfig
from hyperzero.experts.gate import GateConfig
from hyperzero.experts.profiles import profile_config
from hyperzero.experts.solvers import DEFAULT_SOLVER
from hyperzero.launchers import pipeline
from hyperzero.launchers.config import SWEEP_KEYS, PipelineConfig, fit_config, resolve_config, resolve_pipeline_config
from hyperzero.launchers.config_files import dump_yaml, list_presets, load_config_source
from hyperzero.launchers.pipeline import Runtime, prepare_run_dir, run_pipeline

FIXTURES = Path(__file__).parent / "fixtures"
# tiny-config.yaml was written by the dict-based pipeline from tiny-input.yaml with these overrides (a nested key
# the preset sets partly, and a key configs written before it existed do not list)
FIXTURE_OVERRIDES = ["experts.gate.max_retries=1", "dataset.action_noise=0.1"]


@pytest.mark.parametrize("name", list(list_presets()))
def test_typed_config_gives_back_the_resolved_config_of_every_preset(name):
    resolved = resolve_config(load_config_source(name)[0])
    typed = PipelineConfig.from_dict(resolved)
    assert typed.to_dict() == resolved
    assert dump_yaml(typed.to_dict()) == dump_yaml(resolved)  # key order too: config.yaml is byte-identical
    assert "solver" not in typed.to_dict()["experts"] and "solver" in typed.to_dict(every_key=True)["experts"]


@pytest.mark.parametrize("name", list(list_presets()))
def test_stages_get_the_settings_the_plain_config_gave(name):
    """What run_pipeline's stages received from the dict (the solver config of its profile and keys, fit_config, the evaluate section with
    every fit) equals what they now read from the typed config."""
    resolved = resolve_config(load_config_source(name)[0])
    typed = PipelineConfig.from_dict(resolved)
    solver_keys = dict(resolved["experts"])
    sweep = {k: solver_keys.pop(k) for k in SWEEP_KEYS if k in solver_keys}
    solver = profile_config(sweep.get("profile", "authors"), solver=sweep.get("solver", DEFAULT_SOLVER), **solver_keys)
    gate = GateConfig(**(sweep.get("gate") or {}))
    assert typed.experts.solver == solver and typed.experts.gate == (gate if gate.enabled else None)
    assert (typed.experts.settings.ensemble_size, typed.experts.settings.num_workers) == (
        sweep.get("ensemble_size"), sweep.get("num_workers"))
    fit = resolved["fit"]
    for device in (None, "cpu"):
        assert typed.fit.configs(device) == [fit_config(fit, m, s, device) for m in fit["methods"] for s in fit["seeds"]]
    assert typed.eval_config() == EvalConfig(**resolved["evaluate"], methods=fit["methods"], seeds=fit["seeds"])
    assert {k: getattr(typed.dataset, k) for k in resolved["dataset"]} == resolved["dataset"]


def _body(path: Path) -> str:
    return path.read_text().split("\n", 1)[1]  # the first line says where the config came from


def test_run_pipeline_writes_the_same_config_yaml_as_before(tmp_path, monkeypatch):
    seen = []
    for stage in pipeline.STAGES:
        monkeypatch.setitem(pipeline.STAGE_FUNCTIONS, stage, lambda run_dir, config, runtime: seen.append(config))
    source = str(FIXTURES / "tiny-input.yaml")
    run = run_pipeline(source, tmp_path / "run", FIXTURE_OVERRIDES, runtime=Runtime(progress=False))
    text = (run / "config.yaml").read_text()
    assert text.startswith(f"# resolved from {source}\n")
    assert _body(run / "config.yaml") == (FIXTURES / "tiny-config.yaml").read_text()
    assert len(seen) == len(pipeline.STAGES) and all(isinstance(c, PipelineConfig) for c in seen)
    assert seen[0].dataset.action_noise == 0.1 and seen[0].experts.settings.gate.max_retries == 1


def test_a_run_made_before_resumes_and_a_changed_one_is_refused(tmp_path):
    """A run directory holding the config.yaml the dict-based pipeline wrote: the same config resumes it (nothing
    moved to stale/), a changed expert setting is refused."""
    run = tmp_path / "run"
    (run / "experts").mkdir(parents=True)
    (run / "experts" / "marker").write_text("old")
    source = str(FIXTURES / "tiny-input.yaml")
    (run / "config.yaml").write_text(f"# resolved from {source}\n" + (FIXTURES / "tiny-config.yaml").read_text())
    _, config = prepare_run_dir(source, run, FIXTURE_OVERRIDES)
    assert isinstance(config, PipelineConfig) and (run / "experts" / "marker").exists() and not (run / "stale").exists()
    with pytest.raises(ValueError, match="different config.*experts.train_steps"):
        prepare_run_dir(source, run, [*FIXTURE_OVERRIDES, "experts.train_steps=999"])


def test_packing_record_keeps_its_keys():
    record = resolve_pipeline_config(load_config_source("tiny")[0]).packing_record()
    assert list(record) == ["experts_ensemble_size", "experts_num_workers", "experts_num_workers_default",
                            "experts_torch_threads", "fit_num_workers_local", "fit_num_threads", "cpu_count",
                            "cpu_model", "torch", "note"]
    assert record["experts_ensemble_size"] == 3 and record["experts_torch_threads"] == 1
    assert record["fit_num_workers_local"] == 1 and record["fit_num_threads"] == 1


def test_device_checks_name_the_option_or_the_key():
    from hyperzero.launchers.resources import check_device_names

    config = resolve_pipeline_config(load_config_source("tiny")[0])
    with pytest.raises(ValueError, match="--device 'tpu'"):
        check_device_names(config, "tpu")
    config.evaluate.device = "tpu"
    with pytest.raises(ValueError, match="evaluate.device='tpu'"):
        check_device_names(config)
