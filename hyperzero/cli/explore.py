"""`hyperzero explore RUN_DIR`: a local web page to steer a trained model through context space."""
from __future__ import annotations

import sys

from hyperzero.cli import HelpFormatter

ORDER = 55
WEB_PACKAGES = ("fastapi", "starlette", "uvicorn", "pydantic")  # the `explore` extra and what it brings


def register(subparsers) -> None:
    from hyperzero.explore.config import ExploreConfig

    d = ExploreConfig()
    p = subparsers.add_parser(
        "explore", help="a local web page: move context sliders, watch the generated policy act",
        description="Serve a page (on 127.0.0.1 unless --host says otherwise) with one slider per context feature "
                    "the run varies. Each change generates the policy of the chosen fit for that context, rolls it out "
                    "in the real environment and shows the clip, the episode return, the reward per step and, for "
                    "methods with a value head, Q̂(s0, π̂(s0)) beside the realised discounted return. "
                    "Needs the web extra: pip install \"hyperzero[explore]\". See docs/explore.md.",
        formatter_class=HelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory with dataset/ and fits/ (`hyperzero run --out`)")
    p.add_argument("--host", default=d.host,
                   help="interface to listen on; 0.0.0.0 shows the page (and the run) to the whole network")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests addressed to this host name (repeatable), e.g. the machine's DNS name "
                        "behind --host 0.0.0.0; loopback names and the --host address are always answered, other "
                        "names get a JSON 421 (a guard against DNS-rebinding pages); '*' turns the check off")
    p.add_argument("--port", type=int, default=d.port, help="TCP port; 0 picks a free one (the address is printed)")
    p.add_argument("--method", default=None, help="method selected when the page opens (default: hyperzero if fitted)")
    p.add_argument("--seed", type=int, default=None, help="split seed selected when the page opens (default: the first)")
    p.add_argument("--episode-seed", type=int, default=d.episode_seed,
                   help="episode seed (initial state) the page starts with; changeable on the page")
    p.add_argument("--clip-steps", type=int, default=d.clip_steps,
                   help="control steps rendered per clip; the rest of the episode is simulated without frames")
    p.add_argument("--max-clip-steps", type=int, default=d.max_clip_steps, help="longest clip the page may ask for")
    p.add_argument("--episode-steps", type=int, default=None,
                   help="episode length for the returns (default: the dataset's episode length)")
    p.add_argument("--frame-every", type=int, default=None,
                   help="render every k-th control step (default: real time at --fps, at most --max-frames frames)")
    p.add_argument("--fps", type=float, default=d.fps, help="target playback rate used to choose --frame-every")
    p.add_argument("--max-frames", type=int, default=d.max_frames,
                   help="with automatic --frame-every, at most this many frames per clip (bounds the render time)")
    p.add_argument("--size", default=f"{d.width}x{d.height}", metavar="WxH", help="frame size in pixels")
    p.add_argument("--full-quality", action="store_true",
                   help="anti-aliasing, shadows and reflections, as evaluation videos have (about 5x slower on a CPU)")
    p.add_argument("--quiet", action="store_true", help="no per-request log lines")
    p.set_defaults(func=run)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
        return w, h
    except ValueError:
        raise ValueError(f"--size {text!r} must look like 320x240 (width x height in pixels)") from None


def run(args) -> int:
    from hyperzero.explore.config import ExploreConfig

    width, height = _size(args.size)
    config = ExploreConfig(host=args.host, port=args.port, method=args.method, seed=args.seed,
                           episode_seed=args.episode_seed, clip_steps=args.clip_steps,
                           max_clip_steps=max(args.max_clip_steps, args.clip_steps), episode_steps=args.episode_steps,
                           frame_every=args.frame_every, fps=args.fps, max_frames=args.max_frames,
                           width=width, height=height, full_quality=args.full_quality,
                           allowed_hosts=tuple(args.allow_host)).check()
    from hyperzero.explore.server import serve

    def announce(url: str) -> None:
        print(f"hyperzero explore: serving {args.run_dir} at {url}  (Ctrl-C stops)", flush=True)

    try:
        serve(args.run_dir, config, quiet=args.quiet, announce=announce)
    except ImportError as e:
        if e.name not in WEB_PACKAGES:
            raise
        print(f"hyperzero: error: `hyperzero explore` needs the web extra ({e.name} is not installed): "
              f"pip install \"hyperzero[explore]\"", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # uvicorn shuts down gracefully on Ctrl-C, then re-raises it
        print("hyperzero explore: stopped", file=sys.stderr)
    return 0
