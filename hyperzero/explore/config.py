"""Settings of `hyperzero explore`: where to serve, and how each clip is rolled out and rendered."""
from __future__ import annotations

from dataclasses import dataclass

from hyperzero.evaluation.evaluate import DEFAULT_EVAL_SEED


@dataclass
class ExploreConfig:
    host: str = "127.0.0.1"              # interface to listen on; 0.0.0.0 shows the page to the whole network
    port: int = 8765                     # TCP port; 0 = any free port (the address is printed)
    method: str | None = None            # method selected when the page opens (None: hyperzero if fitted)
    seed: int | None = None              # split seed selected when the page opens (None: the method's first)
    episode_seed: int = DEFAULT_EVAL_SEED  # episode (initial state) seed the page starts with
    clip_steps: int = 250                # control steps rendered into the clip (the rest of the episode is not drawn)
    max_clip_steps: int = 1000           # largest clip a request may ask for
    episode_steps: int | None = None     # steps per episode for the returns (None: the dataset's episode length)
    frame_every: int | None = None       # render every k-th control step (None: real time at `fps`, capped by max_frames)
    fps: float = 30.0                    # target playback rate used to pick frame_every
    max_frames: int = 90                 # auto frame_every keeps a clip to at most this many frames (render cost)
    width: int = 320                     # frame width in pixels
    height: int = 240                    # frame height in pixels
    full_quality: bool = False           # anti-aliasing, shadows, reflections as in evaluation videos (~5x slower on a CPU)
    jpeg_quality: int = 80               # JPEG quality of the streamed frames (1-95)
    kept_clips: int = 8                  # finished clips kept in memory for the mp4 download link
    torch_threads: int = 1               # torch threads (one: policies are tiny and the renderer needs the other core)
    allowed_hosts: tuple[str, ...] = ()  # extra Host names the page answers to (besides loopback and `host`); "*": any

    def check(self) -> "ExploreConfig":
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(message)

        need(0 <= self.port <= 65535, f"port must be in 0..65535 (0 = a free port), got {self.port}")
        need(self.clip_steps >= 1, f"clip_steps must be >= 1, got {self.clip_steps}")
        need(self.max_clip_steps >= self.clip_steps,
             f"max_clip_steps ({self.max_clip_steps}) must be >= clip_steps ({self.clip_steps})")
        need(self.episode_steps is None or self.episode_steps >= 1,
             f"episode_steps must be >= 1 or None (the dataset's episode length), got {self.episode_steps}")
        need(self.frame_every is None or self.frame_every >= 1,
             f"frame_every must be >= 1 or None (automatic), got {self.frame_every}")
        need(self.fps > 0, f"fps must be > 0, got {self.fps}")
        need(self.max_frames >= 1, f"max_frames must be >= 1, got {self.max_frames}")
        need(16 <= self.width <= 1920 and 16 <= self.height <= 1080,
             f"frame size must be within 16x16..1920x1080, got {self.width}x{self.height}")
        need(1 <= self.jpeg_quality <= 95, f"jpeg_quality must be in 1..95, got {self.jpeg_quality}")
        need(self.kept_clips >= 1, f"kept_clips must be >= 1, got {self.kept_clips}")
        need(self.episode_seed >= 0, f"episode_seed must be >= 0, got {self.episode_seed}")
        need(self.torch_threads >= 1, f"torch_threads must be >= 1, got {self.torch_threads}")
        need(not isinstance(self.allowed_hosts, str), "allowed_hosts must be a list of host names, not one string")
        for name in self.allowed_hosts:
            need(isinstance(name, str) and name.strip() != "" and not any(c in name for c in "/ \t@?#"),
                 f"allowed host {name!r} must be a host name or address such as myhost.lan or 192.168.1.5 "
                 f"(no scheme, path or port)")
        return self
