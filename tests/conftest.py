import os

# Physics-only tests must not need a display; rendering tests use EGL (headless, CPU).
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
