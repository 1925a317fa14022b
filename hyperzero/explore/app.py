"""The explore page's web application (FastAPI): the page, the run's facts, and streamed clips.

    GET  /                               the page (static/index.html, explore.js, explore.css)
    GET  /api/run                        features, slider ranges, tasks, splits, methods, defaults
    POST /api/rollout                    one clip as newline-delimited JSON events (see rollout.py);
                                         4xx JSON {"error": ...} for malformed or out-of-range input
    GET  /api/clips/{clip}/{panel}.mp4   a finished clip as an mp4 (hyperzero.envs.render.save_video)
"""
from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import math
import re
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from hyperzero.evaluation.evaluate import is_meta
from hyperzero.explore.config import ExploreConfig
from hyperzero.explore.rollout import Supersession, clip_events, make_panel, make_renderer
from hyperzero.explore.run import ExploreRun, FitLoadError

STATIC_DIR = Path(__file__).parent / "static"
MAX_SEED = 2**31 - 1
log = logging.getLogger("hyperzero.explore")

Number = Annotated[float, Field(strict=True)]  # a JSON number; "1.5" (a string) or true is malformed


class _RepeatedKey(ValueError):
    pass


def _unique_keys(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise _RepeatedKey(f"the request gives {key!r} twice ({seen[key]!r} and {value!r}); give each key once")
        seen[key] = value
    return seen


class RolloutRequest(BaseModel):
    """Body of POST /api/rollout."""

    model_config = ConfigDict(extra="forbid")
    context: dict[str, Number]                 # a value for every varied feature of the run
    method: str = Field(min_length=1, max_length=64)
    seed: int = Field(ge=0, le=MAX_SEED)        # split seed of the fit
    compare: str | None = Field(None, min_length=1, max_length=64)  # a second method, side by side
    compare_seed: int | None = Field(None, ge=0, le=MAX_SEED)       # its split seed (default: `seed` if fitted)
    episode_seed: int = Field(ge=0, le=MAX_SEED)  # initial state of the episode
    clip_steps: int | None = Field(None, ge=1)  # rendered control steps (default: the server's clip_steps)
    client: str = Field("anonymous", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")  # supersession key


class InputError(ValueError):
    """A request the client got wrong: answered with 4xx JSON, never a traceback."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class ClipStore:
    """The JPEG frames (and playback rate) of the last few clips, for the mp4 download link."""

    def __init__(self, keep: int):
        self._clips: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()
        self._count = 0

    def new(self, panels: int) -> str:
        with self._lock:
            self._count += 1
            clip = str(self._count)
            self._clips[clip] = {"frames": [[] for _ in range(panels)], "fps": 30.0}
            while len(self._clips) > self._keep:
                self._clips.popitem(last=False)
        return clip

    def set_fps(self, clip: str, fps: float) -> None:
        with self._lock:
            if clip in self._clips:
                self._clips[clip]["fps"] = float(fps)

    def fps(self, clip: str) -> float:
        with self._lock:
            return self._clips[clip]["fps"] if clip in self._clips else 30.0

    def keeper(self, clip: str):
        def keep(panel: int, jpeg: str) -> None:
            with self._lock:
                if clip in self._clips:
                    self._clips[clip]["frames"][panel].append(jpeg)
        return keep

    def frames(self, clip: str, panel: int) -> list[str] | None:
        with self._lock:
            entry = self._clips.get(clip)
            if entry is None or not 0 <= panel < len(entry["frames"]):
                return None
            return list(entry["frames"][panel])


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            parts.append(f"the request body is not valid JSON ({err.get('ctx', {}).get('error', 'parse error')})")
            continue
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        given = err.get("input")
        shown = "" if isinstance(given, (dict, list)) or given is None else f" (got {given!r})"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}{shown}")
    return "; ".join(parts) or "malformed request"


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
_NAME_CHARS = re.compile(r"[a-z0-9_.*-]+")   # a DNS name or IPv4 address ("*": --allow-host's 'any')
_IPV6_CHARS = re.compile(r"[0-9a-f:.%]+")
WILDCARD_BINDS = ("0.0.0.0", "::", "")


def host_name(value: str | None, bare_ipv6: bool = False) -> str | None:
    """The host part of a Host header (`name`, `name:port`, `[v6]`, `[v6]:port`), lower-case; None if malformed.

    `bare_ipv6` also reads an unbracketed IPv6 address (as given on a command line, not in a header)."""
    value = (value or "").strip().lower()
    if not value:
        return None
    if value.startswith("["):
        end = value.find("]")
        rest = value[end + 1:]
        if end < 0 or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return value[1:end] if _IPV6_CHARS.fullmatch(value[1:end]) else None
    if value.count(":") > 1:
        return value if bare_ipv6 and _IPV6_CHARS.fullmatch(value) else None
    name, sep, port = value.partition(":")
    if (sep and not port.isdigit()) or not _NAME_CHARS.fullmatch(name):
        return None
    return name.rstrip(".") or None


def _is_ip(name: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class HostPolicy:
    """Which Host headers the page answers to."""

    names: frozenset[str]      # host names and addresses, lower-case, IPv6 without brackets
    any_ip: bool = False       # any IP address too (a wildcard bind)
    any_host: bool = False     # no check at all (--allow-host '*')

    def allows(self, name: str) -> bool:
        return self.any_host or name in self.names or (self.any_ip and _is_ip(name))

    def describe(self) -> str:
        shown = ", ".join(f"[{n}]" if ":" in n else n for n in sorted(self.names))
        return shown + (" and any IP address of this machine" if self.any_ip else "")


def host_policy(config: ExploreConfig) -> HostPolicy:
    """Loopback names always; the bound address too when it is not loopback; for a wildcard bind
    (0.0.0.0, ::) this machine's names and any IP address (a DNS-rebinding page reaches the server
    under its own domain name, never under an IP address); plus config.allowed_hosts ("*": anything)."""
    extra = {host_name(h, bare_ipv6=True) for h in config.allowed_hosts}
    if "*" in extra:
        return HostPolicy(frozenset(), any_host=True)
    names = set(LOOPBACK_HOSTS) | {h for h in extra if h}
    bound = host_name(config.host, bare_ipv6=True) or ""
    if bound in WILDCARD_BINDS:
        import socket

        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        return HostPolicy(frozenset(names), any_ip=True)
    return HostPolicy(frozenset(names | {bound}))


class HostCheck:
    """ASGI middleware: answer only requests whose Host header names this server (DNS-rebinding guard).

    Starlette's TrustedHostMiddleware does the same check but answers in plain text; the page and
    its API answer every error as JSON {"error": ...}, so this one does too (421, or 400 when the
    Host header is missing or malformed)."""

    def __init__(self, app, policy: HostPolicy):
        self.app, self.policy = app, policy

    async def __call__(self, scope, receive, send):
        if self.policy.any_host or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        raw = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        name = host_name(raw)
        if name is not None and self.policy.allows(name):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        server = scope.get("server") or ("127.0.0.1", None)
        port = f":{server[1]}" if server[1] else ""
        if name is None:
            status, problem = 400, f"the request's Host header {raw!r} is missing or malformed"
        else:
            status, problem = 421, f"this server does not answer to the host name {name!r} (Host: {raw!r})"
        message = (f"{problem}; it answers to {self.policy.describe()}, a guard against other web pages reading "
                   f"the run (DNS rebinding). Open the page at http://127.0.0.1{port}/, or restart `hyperzero "
                   f"explore` with --allow-host {name or 'NAME'} to serve it under that name")
        await JSONResponse({"error": message}, status_code=status)(scope, receive, send)


def create_app(run: ExploreRun, config: ExploreConfig | None = None) -> FastAPI:
    """The explore application for an opened run directory."""
    config = (config or ExploreConfig()).check()
    default = run.default_fit(config.method, config.seed)
    run.model(default.method, default.seed)  # load now: a broken default fit fails at start, not on the page
    renderer = make_renderer(run.family, config.width, config.height, config.full_quality)
    supersession = Supersession()
    clips = ClipStore(config.kept_clips)
    episode_steps = config.episode_steps or run.episode_length
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        renderer.close()  # free the GL contexts on their own thread while it still runs

    app = FastAPI(title=f"hyperzero explore: {run.name}", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(HostCheck, policy=host_policy(config))

    @app.middleware("http")
    async def _refuse_repeated_keys(request: Request, call_next):
        # JSON objects keep the last of a repeated key; {"speed": 2, "speed": 3} must not silently become speed 3
        if request.method == "POST":
            try:
                json.loads(await request.body(), object_pairs_hook=_unique_keys)
            except _RepeatedKey as e:
                return JSONResponse({"error": str(e)}, status_code=422)
            except ValueError:
                pass  # not JSON at all: the route's own validation answers
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def _malformed(request: Request, exc: RequestValidationError):
        return JSONResponse({"error": _validation_message(exc)}, status_code=422)

    @app.exception_handler(InputError)
    async def _bad_input(request: Request, exc: InputError):
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(FitLoadError)
    async def _damaged_fit(request: Request, exc: FitLoadError):
        log.error("%s", exc)  # one line, no traceback: the message names the file and the fix
        return JSONResponse({"error": str(exc), "file": str(exc.path)}, status_code=500)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        # Starlette logs the traceback after this answer; the page gets JSON, and the server keeps serving.
        return JSONResponse({"error": f"the server failed on {request.url.path}: {type(exc).__name__}: {exc}; "
                                      f"details are in the server's log. If a run file is named, restore or "
                                      f"regenerate it"}, status_code=500)

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/api/run")
    def run_facts() -> dict[str, Any]:
        return {**run.describe(), "defaults": {
            "method": default.method, "seed": default.seed, "episode_seed": config.episode_seed,
            "clip_steps": min(config.clip_steps, episode_steps), "max_clip_steps": min(config.max_clip_steps,
                                                                                      episode_steps),
            "episode_steps": episode_steps, "context": run.default_context()}}

    def _fit_or_400(method: str, seed: int):
        try:
            return run.fit(method, seed)
        except ValueError as e:
            raise InputError(str(e)) from None

    @app.post("/api/rollout")
    def rollout(body: RolloutRequest):
        started = time.perf_counter()
        try:
            context = run.resolve_context(body.context)
        except ValueError as e:
            raise InputError(str(e)) from None
        fits = [_fit_or_400(body.method, body.seed)]
        if body.compare:
            compare_seed = body.compare_seed
            if compare_seed is None:
                seeds = run.seeds(body.compare)
                compare_seed = body.seed if body.seed in seeds else (seeds[0] if seeds else body.seed)
            fits.append(_fit_or_400(body.compare, compare_seed))
        clip_steps = body.clip_steps or config.clip_steps
        limit = min(config.max_clip_steps, episode_steps)
        if clip_steps > limit:
            raise InputError(f"clip_steps {clip_steps} exceeds the limit {limit} (episode length {episode_steps}, "
                             f"server --max-clip-steps {config.max_clip_steps}); ask for at most {limit}")
        panels = [make_panel(run.model(f.method, f.seed), f.method, f.seed, context, meta=is_meta(None, f.method))
                  for f in fits]
        split = fits[0].split
        task = run.task_for(context)
        extra = {
            "task": None if task is None else {
                "task_id": task.task_id, "expert": task.expert, "dataset_return": task.episode_return,
                "roles": [run.role(f.split, task.task_id) for f in fits]},
            "beyond": run.beyond(context, split), "fixed_context": run.fixed_context()}
        clip = clips.new(len(panels))
        extra["clip"] = clip
        is_current = supersession.begin(body.client)

        def events():
            try:
                for event in clip_events(run.family_name, context, panels, renderer, body.episode_seed, clip_steps,
                                         episode_steps, run.gamma, frame_every=config.frame_every, fps=config.fps,
                                         max_frames=config.max_frames, jpeg_quality=config.jpeg_quality,
                                         is_current=is_current, started=started, extra_start=extra,
                                         keep_frame=clips.keeper(clip)):
                    if event["type"] == "start":
                        clips.set_fps(clip, event["playback_fps"])
                    yield json.dumps(_finite(event), allow_nan=False) + "\n"
            except Exception as e:  # the stream has begun: report on the page rather than cut it
                log.exception("rollout failed")
                yield json.dumps({"type": "error", "message": f"the rollout failed: {type(e).__name__}: {e}"}) + "\n"

        return StreamingResponse(events(), media_type="application/x-ndjson",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.get("/api/clips/{clip}/{panel}.mp4")
    def clip_video(clip: str, panel: int):
        frames = clips.frames(clip, panel)
        if not frames:
            raise InputError(f"clip {clip} panel {panel} is not kept (only the last {config.kept_clips} clips are); "
                             f"roll it out again", status=404)
        from PIL import Image

        from hyperzero.envs.render import save_video

        images = [np.asarray(Image.open(io.BytesIO(base64.b64decode(f))).convert("RGB")) for f in frames]
        with tempfile.TemporaryDirectory() as tmp:
            path = save_video(images, Path(tmp) / f"clip{clip}.mp4", fps=max(1, round(clips.fps(clip))))
            data = path.read_bytes()
        return Response(data, media_type="video/mp4",
                        headers={"Content-Disposition": f'attachment; filename="explore-clip{clip}-{panel}.mp4"'})

    return app


def _finite(x):
    """Events as plain JSON: numpy scalars as numbers, non-finite floats (a diverged Q̂) as null."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
