"""The explorer's web app: the page (static files shipped in the package) and JSON endpoints under /api/.

Starlette (with uvicorn to serve it): a small, well-kept ASGI toolkit whose StaticFiles serves one
folder and nothing outside it; FastAPI would add pydantic for the handful of fields checked here.

Every request is checked (`_Checked`): a bad one gets a 4xx with {"error": "..."}, never a
traceback; a body over MAX_BODY bytes gets 413 before it is read whole. Runs are read at start and
never written.

    GET  /api/runs                       the runs: name, classes, latent size, image shape, sliders,
                                         and whether the drawing pad serves them (one channel)
    POST /api/decode     {run, z | sliders, label}         -> {images: [[uint8 rows]], z}: [H][W] values
                                                              for one channel, [H][W][C] for C channels
    POST /api/random     {run, seed, label}                -> the same, for z ~ p(z)
    POST /api/interpolate {run, first, last, steps, label} -> {images, z} along the line in z
    POST /api/analyse    {run, image: [[0..1 rows]]}       -> posterior, reconstruction, style; a drawing
                                                              is one grey channel: a run of C > 1 channels
                                                              answers 422
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from . import session
from ..errors import VaelabError
from .session import Explored

STATIC = Path(__file__).parent / "static"
MAX_BODY = 64 * 1024  # bytes: a drawn 28 x 28 image is about 3 KB of JSON
MAX_BATCH = 64  # codes per decode request


class BadRequest(Exception):
    """A request that breaks the rules: its message goes back as {"error": ...} with `status`."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class _Checked:
    """The fields of a JSON request body, each checked on the way out."""

    def __init__(self, body: dict, runs: list[Explored]):
        self.body, self.runs = body, runs

    def run(self) -> Explored:
        index = self.integer("run", 0, len(self.runs) - 1, default=0)
        return self.runs[index]

    def integer(self, name: str, low: int, high: int, default: int | None = None) -> int:
        value = self.body.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise BadRequest(f"{name} must be a whole number from {low} to {high}")
        return value

    def label(self, explored: Explored) -> int | None:
        if not explored.classes:
            if self.body.get("label") is not None:
                raise BadRequest(f"run {explored.name} has no classes: leave out label")
            return None
        return self.integer("label", 0, len(explored.classes) - 1, default=0)

    def codes(self, name: str, d: int) -> np.ndarray:
        """[n, d]: one code of d numbers (n = 1), or a list of 1 to MAX_BATCH of them."""
        value = self.body.get(name)
        if isinstance(value, list) and value and all(isinstance(row, list) for row in value):
            if len(value) > MAX_BATCH:
                raise BadRequest(f"{name} may hold at most {MAX_BATCH} codes")
            return self.numbers(name, (len(value), d), -1e3, 1e3)
        return self.numbers(name, (d,), -1e3, 1e3)[None]

    def numbers(self, name: str, shape: tuple[int, ...], low: float, high: float) -> np.ndarray:
        value = self.body.get(name)
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise BadRequest(f"{name} must be an array of numbers of shape {list(shape)}") from None
        if array.dtype.kind != "f" or array.shape != shape or not np.isfinite(array).all():
            raise BadRequest(f"{name} must be an array of finite numbers of shape {list(shape)}")
        if array.min(initial=low) < low or array.max(initial=high) > high:
            raise BadRequest(f"{name} must lie between {low:g} and {high:g}")
        return array


def _not_json(constant: str):
    raise ValueError(f"{constant} is not JSON")


def _images(pixels: np.ndarray) -> list:
    return pixels.tolist()


def build_app(runs: list[Explored]) -> Starlette:
    """The web app over loaded runs (see `session.explore_runs`)."""

    async def body(request: Request) -> _Checked:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
            raise BadRequest(f"the request body must be at most {MAX_BODY} bytes", 413)
        data = b""
        async for piece in request.stream():
            data += piece
            if len(data) > MAX_BODY:
                raise BadRequest(f"the request body must be at most {MAX_BODY} bytes", 413)
        try:
            value = json.loads(data, parse_constant=_not_json)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("the request body must be JSON") from None
        if not isinstance(value, dict):
            raise BadRequest("the request body must be a JSON object")
        return _Checked(value, runs)

    async def list_runs(request: Request) -> JSONResponse:
        return JSONResponse({"runs": [explored.describe() for explored in runs]})

    async def decode(request: Request) -> JSONResponse:
        checked = await body(request)
        explored = checked.run()
        d = explored.run.model.code_dim
        if "sliders" in checked.body:
            values = checked.numbers("sliders", (len(explored.scales),), -10, 10)
            z = session.slider_code(explored, values)[None]
        else:
            z = checked.codes("z", d)
        return JSONResponse({"images": _images(session.decode(explored, z, checked.label(explored))),
                             "z": z.tolist()})

    async def random(request: Request) -> JSONResponse:
        checked = await body(request)
        explored = checked.run()
        z = session.random_code(explored, checked.integer("seed", 0, 2**31 - 1, default=0))[None]
        return JSONResponse({"images": _images(session.decode(explored, z, checked.label(explored))),
                             "z": z.tolist()})

    async def interpolate(request: Request) -> JSONResponse:
        checked = await body(request)
        explored = checked.run()
        last_image = explored.test_x.shape[0] - 1
        first, last = checked.integer("first", 0, last_image), checked.integer("last", 0, last_image)
        steps = checked.integer("steps", *session.INTERPOLATION_STEPS, default=8)
        z = session.interpolation_codes(explored, first, last, steps)
        return JSONResponse({"images": _images(session.decode(explored, z, checked.label(explored))),
                             "z": z.tolist()})

    async def analyse(request: Request) -> JSONResponse:
        checked = await body(request)
        explored = checked.run()
        shape = explored.run.model.image_shape
        if not explored.can_draw:
            raise BadRequest(f"run {explored.name} has {shape[0]}-channel images: a drawing is one grey channel, "
                             "so only a one-channel run can analyse it", 422)
        result = session.analyse(explored, checked.numbers("image", tuple(shape[1:]), 0.0, 1.0))
        result["reconstruction"] = _images(result["reconstruction"])
        if "style" in result:
            result["style"] = _images(result["style"])
        return JSONResponse(result)

    async def page(request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html")

    async def bad_request(request: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        # a bug, not the request's fault: say so briefly, never with a traceback
        return JSONResponse({"error": f"the explorer failed on this request ({type(exc).__name__})"}, 500)

    routes = [Route("/", page), Route("/api/runs", list_runs),
              Route("/api/decode", decode, methods=["POST"]), Route("/api/random", random, methods=["POST"]),
              Route("/api/interpolate", interpolate, methods=["POST"]),
              Route("/api/analyse", analyse, methods=["POST"]),
              Mount("/static", app=StaticFiles(directory=STATIC), name="static")]
    return Starlette(routes=routes, exception_handlers={BadRequest: bad_request, HTTPException: http_error,
                                                        Exception: server_error})


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def serve(runs: list[Explored], host: str, port: int, log=print) -> None:
    """Serve the app until Ctrl-C (uvicorn handles the signal and shuts down cleanly)."""
    import uvicorn

    if not is_loopback(host):
        log(f"vaelab: warning: serving on {host}, not the loopback: anyone who can reach this machine on port "
            f"{port} can use the explorer")
    log(f"vaelab explore: http://{host if ':' not in host else f'[{host}]'}:{port}/  (Ctrl-C stops it)")
    uvicorn.run(build_app(runs), host=host, port=port, log_level="warning")



class Explorer:
    """The explorer served from a thread of this process (a notebook's), until `stop()`: `url` is its page."""

    def __init__(self, runs: list[Explored], host: str = "127.0.0.1", port: int = 8765):
        import threading

        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(build_app(runs), host=host, port=port, log_level="warning"))
        self.url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
        self.thread = threading.Thread(target=self.server.run, name="vaelab-explorer", daemon=True)
        self.thread.start()
        while not self.server.started and self.thread.is_alive():  # up, or failed (a port in use)
            self.thread.join(0.05)
        if not self.server.started:
            raise VaelabError(f"cannot serve the explorer on {host}:{port}; pass another port")

    def stop(self) -> None:
        """Shut the server down and wait for its thread."""
        self.server.should_exit = True
        self.thread.join()

    def __repr__(self) -> str:
        return f"Explorer({self.url})"
