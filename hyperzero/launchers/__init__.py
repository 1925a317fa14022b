"""One command for the whole pipeline: presets, `hyperzero run`, resumable stages, local or Ray.

    from hyperzero.launchers import run_pipeline
    run_pipeline("quickstart", out_dir="runs/quickstart")
"""
from hyperzero.launchers.config import PipelineConfig, resolve_config, resolve_pipeline_config
from hyperzero.launchers.config_files import list_presets
from hyperzero.launchers.pipeline import run_pipeline

__all__ = ["PipelineConfig", "list_presets", "resolve_config", "resolve_pipeline_config", "run_pipeline"]
