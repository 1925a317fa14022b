"""One command for the whole pipeline: presets, `hyperzero run`, resumable stages, local or Ray.

    from hyperzero.launchers import run_pipeline
    run_pipeline("quickstart", out_dir="runs/quickstart")
"""
from hyperzero.launchers.config import list_presets, resolve_config
from hyperzero.launchers.pipeline import run_pipeline

__all__ = ["list_presets", "resolve_config", "run_pipeline"]
