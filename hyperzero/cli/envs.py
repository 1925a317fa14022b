"""`hyperzero envs` (list the families) and `hyperzero demo` (random rollouts in two contexts, as a video)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hyperzero.cli import HelpFormatter

ORDER = 10


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("envs", help="list the contextual families with their context features, bounds and defaults",
                       description="List the shipped families and your own (registered by --plugin MODULE or by an "
                                   "installed package's entry point of group hyperzero.families; "
                                   "docs/own-environment.md).",
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
    from hyperzero.envs import family_names, family_source, get_family, gym_id

    from hyperzero.envs import PluginError

    broken = []
    if args.family:
        families = [get_family(args.family)]
    else:
        families = []
        for name in family_names():
            try:
                families.append(get_family(name))
            except PluginError as e:  # list the others, and name what is wrong with this one
                broken.append(str(e))
        for message in broken:
            print(f"hyperzero envs: {message}", file=sys.stderr)
    if args.json:
        print(json.dumps([{"family": f.name, "kind": f.kind, "source": family_source(f.name), "gym_id": gym_id(f.name),
                           "obs_dim": f.obs_dim, "act_dim": f.act_dim, "episode_steps": f.episode_steps,
                           "features": f.context_space.describe()}
                          for f in families], indent=2))
        return 2 if broken else 0
    for f in families:
        source = family_source(f.name)
        where = "" if source is None or "shipped" in source else f", {f.kind}, from {source}"
        print(f"{f.name}  ({gym_id(f.name)}; obs {f.obs_dim}, act {f.act_dim}, {f.episode_steps} steps{where}) - "
              f"{f.doc}")
        rows = [(feat.name, feat.kind, feat.unit, f"{feat.default:g}", f"[{feat.bounds[0]:g}, {feat.bounds[1]:g}]",
                 f"[{feat.limits[0]:g}, {feat.limits[1]:g}]", feat.doc + (" (optional)" if feat.optional else ""))
                for feat in f.context_space.features.values()]
        header = ("feature", "kind", "unit", "default", "nominal range", "limits", "meaning")
        widths = [max(len(r[i]) for r in rows + [header]) + 2 for i in range(6)]
        for r in [header] + rows:
            print("  " + "".join(c.rjust(w - 2) + "  " if i == 3 else c.ljust(w) for i, (c, w) in
                                 enumerate(zip(r[:6], widths))) + r[6])
        print()
    return 2 if broken else 0


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
