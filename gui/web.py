"""The drawing page: `python -m numnet.web`, a canvas in the browser, predictions from numnet.

The page posts the canvas as a PNG to /predict; the server runs the same MNIST-style
preprocessing as the Tk app and answers with the ten probabilities and the 28x28 image the model
saw. Bad requests get a 4xx whose message names the problem, and the server keeps serving.
`--export DIR` writes the same page as static files instead: it prepares the drawing and runs the
models in the browser with TensorFlow.js, so any static file host can serve it.
"""

import argparse
import asyncio
import html
import io
import json
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

from PIL import Image

import numnet
from numnet.errors import NumnetError
from numnet.gui.model_files import add_model_options, chosen_models
from numnet.gui.page import TFJS_CDN, drawing_page
from numnet.gui.predictor import Predictor
from numnet.io import atomic_write

MAX_UPLOAD_BYTES = 4 << 20  # a 280x280 canvas PNG is ~5-30 kB; even a 4K screenshot fits
MAX_IMAGE_PIXELS = 4096 * 4096
# A drawing needs far fewer pixels than a 4096x4096 upload holds: larger images are shrunk to this
# side before preprocessing (whose float arrays would otherwise cost ~0.5 GB per such request),
# and only this many uploads are decoded and prepared at once; the others wait their turn.
MAX_WORKING_SIDE = 1024
DECODE_SLOTS = threading.BoundedSemaphore(2)
# A drawing's PNG arrives in well under a second; a body that stops short of its declared length
# (or trickles in) is cut off after this long instead of holding its connection and buffer forever,
# and a client that has not sent its request's headers by HEADER_SECONDS is disconnected.
BODY_SECONDS = 10
HEADER_SECONDS = 10
# Bytes of request bodies held at once, across all requests: a drawing (tens of kB) always fits in
# its own allowance; larger bodies share one budget, and a request that would exceed it is answered
# 503 with Retry-After, so many large uploads at once cannot make the server allocate without bound.
OWN_ALLOWANCE = 64 << 10
SHARED_BUDGET = 32 << 20
MAX_CONNECTIONS = 512  # beyond this uvicorn answers 503 at once


class RequestProblem(Exception):
    """A request the server refuses, with the HTTP status and the message the client sees."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


class BodyBudget:
    """Bytes of request bodies held beyond each request's own allowance, across all requests (the
    server's one event loop reads every body, so a plain counter is enough)."""

    def __init__(self, limit: int = SHARED_BUDGET) -> None:
        self.limit, self.held = limit, 0

    def take(self, count: int) -> None:
        if self.held + count > self.limit:
            raise RequestProblem(503, "the server is reading many large uploads; send the drawing again in a "
                                 "moment", headers={"Retry-After": "1", "Connection": "close"})  # fmt: skip
        self.held += count

    def give_back(self, count: int) -> None:
        self.held -= count


def decode_image(body: bytes, content_type: str) -> Image.Image:
    """The uploaded bytes as a decoded PIL image, or a RequestProblem naming what is wrong."""
    if not content_type.startswith("image/"):
        raise RequestProblem(415, f"send the drawing as an image (Content-Type image/png), not {content_type!r}")
    if not body:
        raise RequestProblem(400, "the request has no image in its body")
    if len(body) > MAX_UPLOAD_BYTES:
        raise RequestProblem(413, f"the image is {len(body):,} bytes; the limit is {MAX_UPLOAD_BYTES:,}")
    try:
        image = Image.open(io.BytesIO(body))
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise RequestProblem(413, f"the image is {image.width}x{image.height} pixels; at most 4096x4096 is read")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
    except RequestProblem:
        raise
    except Image.DecompressionBombError as error:
        raise RequestProblem(413, f"the image has too many pixels to read ({error})") from None
    except Exception as error:  # PIL raises many types for damaged or foreign data
        raise RequestProblem(400, f"the body is not a readable image ({type(error).__name__}: {error})") from None
    factor = -(-max(image.size) // MAX_WORKING_SIDE)
    if factor > 1:
        image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "L")
        image = image.reduce(factor)
    return image


class WebPredictor(Predictor):
    """The apps' predictor, its problems said as HTTP answers."""

    def model(self, name: str):
        if name not in self.models:
            raise RequestProblem(404, f"no model named {name!r}; choose one of {sorted(self.models)}")
        try:
            return super().model(name)
        except NumnetError as error:
            raise RequestProblem(500, f"model {name!r} cannot be loaded: {error}") from None

    def answer(self, name: str, body: bytes, content_type: str) -> dict[str, Any]:
        """Decodes and predicts one upload, at most DECODE_SLOTS of them at a time (memory stays bounded)."""
        self.model(name)  # an unknown or broken model is refused before any decoding
        with DECODE_SLOTS:
            try:
                model_input, probabilities = self.read(name, decode_image(body, content_type))
            except NumnetError as error:  # the model cannot compute this drawing (NaN out): said, not served
                raise RequestProblem(422, f"model {name!r} cannot read this drawing: {error}") from None
        if model_input is None:
            return {"model": name, "digit": None, "message": "the canvas is empty: draw a digit first"}
        digit = int(probabilities.argmax())
        return {
            "model": name,
            "digit": digit,
            "probabilities": [round(float(p), 6) for p in probabilities],
            "preview": [[round(float(v), 3) for v in row] for row in model_input[..., 0]],
        }


LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]


def allowed_hosts(host: str) -> list[str]:
    """The Host headers the page answers: the names of the address it listens on. A page bound to this
    machine then refuses a request whose Host is another name (DNS rebinding from a web page)."""
    return ["*"] if host in ("0.0.0.0", "::", "") else sorted({*LOOPBACK_NAMES, host})


def create_app(models: dict[str, Path], backend: str = "numba", hosts: list[str] | None = None):
    """The FastAPI application serving the page, the model list and predictions."""
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import ClientDisconnect

    predictor = WebPredictor(models, backend)
    budget = BodyBudget()
    page = drawing_page()
    app = FastAPI(title="numnet drawing page", docs_url=None, redoc_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts or LOOPBACK_NAMES)

    @app.exception_handler(RequestProblem)
    def refuse(_: Request, problem: RequestProblem) -> JSONResponse:
        unread_body = {"Connection": "close"} if problem.status == 408 else None
        return JSONResponse({"error": problem.message}, status_code=problem.status,
                            headers=problem.headers or unread_body)  # fmt: skip

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/models")
    def model_names() -> dict[str, list[str]]:
        return {"models": list(models)}

    @app.post("/predict")
    async def predict(request: Request, model: str | None = None) -> dict[str, Any]:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_UPLOAD_BYTES):
            raise RequestProblem(413, f"the request declares {declared} bytes; the limit is {MAX_UPLOAD_BYTES:,}")
        try:
            body = await asyncio.wait_for(read_body(request, budget), BODY_SECONDS)
        except TimeoutError:
            raise RequestProblem(408, f"the image did not arrive within {BODY_SECONDS} s; send it again") from None
        except ClientDisconnect:  # the client left (a closed tab, a newer stroke): nobody reads an answer
            return Response(status_code=400)
        content_type = request.headers.get("content-type", "")
        # Decoding and predicting take milliseconds of CPU: off the event loop, so other requests go on.
        return await run_in_threadpool(predictor.answer, model or next(iter(models)), body, content_type)

    return app


async def read_body(request, budget: BodyBudget) -> bytearray:
    """The request's body, refused as soon as it grows past MAX_UPLOAD_BYTES, and held within its own
    allowance plus what it can take of the shared budget (given back when the request is done)."""
    body, taken = bytearray(), 0
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_UPLOAD_BYTES:
                raise RequestProblem(413, f"the image is over the limit of {MAX_UPLOAD_BYTES:,} bytes")
            beyond = max(0, len(body) - OWN_ALLOWANCE)
            if beyond > taken:
                budget.take(beyond - taken)
                taken = beyond
        return body  # not copied: PIL reads a bytearray as it is
    finally:
        budget.give_back(taken)


# The README's own install line for the web extra, so the two never disagree.
WEB_EXTRA_MISSING = ('error: the web page needs FastAPI and uvicorn, the "web" extra: from the numnet folder, '
                     'pip install -e ".[web]"  (or serve a static page without them: --export DIR)')  # fmt: skip


def export_static(models: dict[str, Path], out: Path, tfjs: Path | None = None) -> Path:
    """The drawing page as static files that predict in the browser with TensorFlow.js: index.html,
    each model under models/NAME/, and TensorFlow.js itself when `tfjs` names a local tf.min.js
    (else the page loads it from the jsDelivr CDN). Returns index.html's path."""
    from numnet.formats.tfjs import write_tfjs

    loaded = {name: numnet.load(path, backend="numpy") for name, path in models.items()}  # all readable first
    for name, model in loaded.items():
        write_tfjs(model.spec, model.get_weights(), out / "models" / name)
    source = TFJS_CDN
    if tfjs is not None:
        with atomic_write(out / "tf.min.js") as f:
            f.write(Path(tfjs).read_bytes())
        source = "tf.min.js"
    setup = (f"<script>window.NUMNET_STATIC_MODELS = {json.dumps(list(loaded))};</script>\n"
             f'<script src="{html.escape(source)}"></script>\n')  # fmt: skip
    with atomic_write(out / "index.html", "w") as f:
        f.write(drawing_page(setup))
    return out / "index.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m numnet.web", description=__doc__.splitlines()[0])
    add_model_options(parser)
    parser.add_argument("--host", default="127.0.0.1", help="default: this machine only")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--export",
        type=Path,
        metavar="DIR",
        help="write the page and its models as static files (TensorFlow.js, no server) into DIR",
    )
    parser.add_argument("--tfjs", type=Path, metavar="FILE",
                        help="with --export: a local tf.min.js to ship beside the page, not the CDN's")  # fmt: skip
    args = parser.parse_args(argv)
    models = chosen_models(args)
    if models is None:
        return 2
    if args.export:
        try:
            page = export_static(models, args.export, args.tfjs)
        except (NumnetError, OSError) as error:
            print(f"error: cannot export the page: {error}", file=sys.stderr)
            return 2
        print(f"wrote {page}: open it from any static file host (TensorFlow.js runs the models in the browser)")
        return 0
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        print(WEB_EXTRA_MISSING, file=sys.stderr)
        return 2
    print(f"numnet drawing page on http://{args.host}:{args.port}/ with {', '.join(models)}")
    app = create_app(models, args.backend, allowed_hosts(args.host))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", http=header_timeout_protocol(),
                limit_concurrency=MAX_CONNECTIONS, timeout_keep_alive=5)  # fmt: skip
    return 0


def header_timeout_protocol() -> type:
    """uvicorn's HTTP/1.1 protocol, closing a connection that has not sent a request's headers within
    HEADER_SECONDS (uvicorn itself waits for them forever: slow-header clients would pile up)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutProtocol(H11Protocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self.loop.call_later(HEADER_SECONDS, self.drop_if_no_request)

        def drop_if_no_request(self) -> None:
            if self.cycle is None and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol
