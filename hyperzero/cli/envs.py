"""`hyperzero envs` (list the families) and `hyperzero demo` (random rollouts in two contexts, as a video)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from hyperzero.cli import HelpFormatter

ORDER = 10


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("envs", help="list the contextual families with their context features, bounds and defaults",
                       formatter_class=HelpFormatter)
    p.add_argument("--family", help="show only this family (e.g. cheetah-run)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    p.set_defaults(func=list_envs)

    d = sub.add_parser("demo", help="roll out a random policy in two contexts of a family and write a short video",
                       formatter_class=HelpFormatter)
    d.add_argument("--family", default="cheetah-run", help="family to show")
    d.add_argument("--contexts", nargs="+", default=None,
                   help="contexts as name=value[,name=value]; default: the family's body-length feature at its two "
                        "nominal extremes, so the difference is visible")
    d.add_argument("--steps", type=int, default=150, help="control steps per rollout")
    d.add_argument("--seed", type=int, default=0, help="episode seed (same initial state in every context)")
    d.add_argument("--out", default="out/demo", help="directory for the videos (mp4) and a still strip (png)")
    d.set_defaults(func=demo)


def list_envs(args) -> int:
    from hyperzero.envs import FAMILIES, get_family, gym_id

    families = [get_family(args.family)] if args.family else list(FAMILIES.values())
    if args.json:
        print(json.dumps([{"family": f.name, "gym_id": gym_id(f.name), "obs_dim": f.obs_dim, "act_dim": f.act_dim,
                           "episode_steps": f.episode_steps, "features": f.context_space.describe()}
                          for f in families], indent=2))
        return 0
    for f in families:
        print(f"{f.name}  ({gym_id(f.name)}; obs {f.obs_dim}, act {f.act_dim}, {f.episode_steps} steps) - {f.doc}")
        print(f"  {'feature':<15}{'kind':<10}{'unit':<7}{'default':>8}  {'nominal range':<16}{'limits':<16}meaning")
        for feat in f.context_space.features.values():
            extra = " (optional)" if feat.optional else ""
            nominal = f"[{feat.bounds[0]:g}, {feat.bounds[1]:g}]"
            limits = f"[{feat.limits[0]:g}, {feat.limits[1]:g}]"
            print(f"  {feat.name:<15}{feat.kind:<10}{feat.unit:<7}{feat.default:>8g}  {nominal:<16}{limits:<16}{feat.doc}{extra}")
        print()
    return 0


def parse_context(spec: str) -> dict[str, float]:
    """`speed=-4,torso_length=0.6` -> {"speed": -4.0, "torso_length": 0.6}."""
    out = {}
    for item in spec.split(","):
        if "=" not in item:
            raise ValueError(f"context {spec!r} must look like name=value[,name=value], e.g. speed=-4,torso_length=0.6")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = float(v)
        except ValueError:
            raise ValueError(f"context {spec!r}: {v!r} is not a number") from None
    return out


def demo(args) -> int:
    import numpy as np
    from PIL import Image

    from hyperzero.envs import get_family, make
    from hyperzero.envs.render import filmstrip, rollout_frames, save_video

    family = get_family(args.family)
    if args.contexts:
        contexts = [parse_context(c) for c in args.contexts]
    else:
        length = family.context_space.names_of_kind("dynamics")[0]
        lo, hi = family.context_space.features[length].bounds
        contexts = [{length: lo}, {length: hi}]
    out = Path(args.out)
    rng = np.random.default_rng(args.seed)
    strips = []
    for ctx in contexts:
        env = make(family.name, context=ctx, render_mode="rgb_array")
        frames, ret = rollout_frames(env, lambda obs: rng.uniform(-1, 1, family.act_dim), args.steps, seed=args.seed)
        path = save_video(frames, out / f"{family.name}_{env.context_id}.mp4")
        strips.append(filmstrip(frames))
        print(f"{env.context_id}: random-policy return over {args.steps} steps = {ret:.1f} -> {path}")
    Image.fromarray(np.concatenate(strips, axis=0)).save(out / f"{family.name}_strip.png")
    print(f"strip of both rollouts -> {out / (family.name + '_strip.png')}")
    return 0
