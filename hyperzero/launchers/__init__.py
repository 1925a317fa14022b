"""One command for the whole pipeline: presets, `hyperzero run`, resumable stages, local or Ray.

    from hyperzero.launchers import run_pipeline
    run_pipeline("quickstart", out_dir="runs/quickstart")
"""
from hyperzero.launchers.baselines import register_baselines

register_baselines()

from hyperzero.launchers.config import list_presets, resolve_config  # noqa: E402
from hyperzero.launchers.pipeline import run_pipeline  # noqa: E402

__all__ = ["list_presets", "register_baselines", "resolve_config", "run_pipeline"]
