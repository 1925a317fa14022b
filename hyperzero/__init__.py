"""hyperzero: zero-shot transfer in RL with hypernetworks.

Pipeline: envs (contextual MDP families) -> experts (TD3 per task) -> datasets (near-optimal
rollouts) -> models + training (HyperZero and baselines) -> evaluation (held-out tasks) ->
launchers (one command for everything).
"""
import os

# Rendering must be headless and chosen before dm_control is imported anywhere: EGL works on a
# CPU-only machine with Mesa's llvmpipe and needs no display. Users may override both.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"] if os.environ["MUJOCO_GL"] in ("egl", "osmesa") else "")
if not os.environ["PYOPENGL_PLATFORM"]:
    del os.environ["PYOPENGL_PLATFORM"]

__version__ = "0.1.0"
