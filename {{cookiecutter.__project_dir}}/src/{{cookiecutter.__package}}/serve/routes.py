"""The routes, on APIRouters: `public` (/, /health), `guarded` (/metadata, /predict), `uploads`
(/predict/file, for codecs that read files) and `monitoring` (/metrics, unless turned off); `create_app`
puts all but `public` behind the API key when one is set (/metrics as `metrics_need_key` says). Each route
takes the app's `Service` as a typed dependency: the loaded model, its codec, the settings, the batcher and
the metrics.

    GET  /          the playground: a page to try the model in a browser (playground.html)
    GET  /health    a real prediction on the codec's example request: 200, or 503 if it fails
    GET  /metadata  task, labels, the file served, the request's JSON schema and an example, the model version
    POST /predict   one input or a batch in the task's own form; see /docs for its body
    POST /predict/file  for data read from files (images): the files themselves, as a multipart upload
    GET  /metrics   requests, latency, refusals, batch sizes, queue depth, in Prometheus's text format (metrics.py)
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from ..artifacts import Trained
from ..data.codec import Request as PredictRequest
from .batching import MicroBatcher
from .budget import PixelBudget
from .metrics import Metrics
from .schemas import HealthResponse, MetadataResponse, PredictResponse, errors
from .settings import ServeSettings

log = logging.getLogger(__name__)
LIGHT_BODY_BYTES = 8192  # a digit as pixel rows is 2.5-4 KB; tokenizing 8 KB of text takes about 3 ms
PLAYGROUND = (resources.files(__package__) / "playground.html").read_text(encoding="utf-8")


@dataclass
class Service:
    """What every route works with: one loaded model, its codec, the settings, the batcher and the metrics (None when
    turned off); and what bounds the decoding of requests: the pixel budget, and the threads (`decode_threads`, not
    starlette's 40)."""

    trained: Trained
    settings: ServeSettings
    batcher: MicroBatcher
    metrics: Metrics | None
    budget: PixelBudget = field(init=False)
    decoders: anyio.CapacityLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.budget = PixelBudget(self.settings.max_decoding_pixels)
        self.decoders = anyio.CapacityLimiter(self.settings.decode_threads)

    def is_light(self, body: PredictRequest, body_bytes: int) -> bool:
        """Whether encoding this request costs less than handing it to a worker thread: a body of at most
        LIGHT_BODY_BYTES with no image files in it (a few KB of PNG can hold megapixels to decode)."""
        file_field = self.trained.codec.file_field
        return body_bytes <= LIGHT_BODY_BYTES and not (file_field and getattr(body, file_field, None))

    async def predict(self, body: PredictRequest, body_bytes: int) -> list[dict[str, Any]]:
        """The answers for a request's inputs: encoded by the codec, batched with other requests', answered as the
        task's kind of output says (`Trained.answers`).

        A light request (`is_light`: numbers, pixel rows, a short text, a seed) is encoded and decoded here, on
        the event loop: two hops to a worker thread and back would cost more than the work, and under load
        they were much of the tail latency. Heavier work (decoding images, tokenizing long texts, writing PNG
        answers) runs in worker threads, as the model does, so the event loop keeps answering other requests;
        encoding on at most `decode_threads` at once, image files holding their pixels of the budget (budget.py).
        """
        items = body.items()
        if len(items) > self.settings.max_batch_size:
            raise HTTPException(422, f"{len(items)} inputs in one request; the limit is {self.settings.max_batch_size}")
        codec, light = self.trained.codec, self.is_light(body, body_bytes)
        try:
            if light:
                inputs = codec.encode(items)
            else:
                pixels = await run_in_threadpool(codec.decoded_pixels, items) if codec.file_field else 0
                async with self.budget.hold(pixels):
                    inputs = await anyio.to_thread.run_sync(codec.encode, items, limiter=self.decoders)
        except ValueError as err:
            raise HTTPException(422, str(err)) from None
        outputs = await self.batcher.submit(inputs)
        for name, values in outputs.items():  # JSON has no inf or NaN: say so, rather than fail to encode them
            if values.is_floating_point() and not bool(values.isfinite().all()):
                problem = f"the model's {name!r} for these inputs is not a finite number"
                raise HTTPException(422, f"{problem}; send inputs closer to those it was trained on")
        if light and not self.trained.outputs.answers_files:
            return self.trained.answers(outputs)
        return await run_in_threadpool(self.trained.answers, outputs)

    async def answer(self, parse_body: Callable[[], PredictRequest], body_bytes: int) -> JSONResponse:
        """The predictions for the request body that `parse_body` reads and validates, `body_bytes` long."""
        try:
            body = parse_body()
        except ValidationError as err:
            raise RequestValidationError(err.errors()) from None
        predictions = await self.predict(body, body_bytes)
        return JSONResponse({"predictions": predictions, "model_version": self.trained.version})


def service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(service)]
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def check_api_key(service: ServiceDep, key: Annotated[str | None, Depends(api_key_header)]) -> None:
    expected = service.settings.api_key
    # As bytes: compare_digest refuses str with non-ASCII letters, and any header value may hold them.
    if expected and not (key and secrets.compare_digest(key.encode(), expected.encode())):
        raise HTTPException(401, "missing or wrong API key: send it in the X-API-Key header")


public = APIRouter()
guarded = APIRouter()


@public.get("/", response_class=HTMLResponse, include_in_schema=False)
async def playground() -> HTMLResponse:
    """A page to try the model in a browser, without writing a request (playground.html)."""
    return HTMLResponse(PLAYGROUND)


@public.get("/health", response_model=HealthResponse, responses=errors(503))
async def health(service: ServiceDep) -> HealthResponse | JSONResponse:
    codec = service.trained.codec
    try:
        predictions = await service.predict(codec.request_model(**codec.example_request), body_bytes=0)
    except Exception as err:  # noqa: BLE001 - the whole point: say unhealthy instead of failing
        log.exception("health check failed")
        return JSONResponse({"error": f"the example prediction failed: {err}"}, status_code=503)
    example = {"request": codec.example_request, "predictions": predictions}
    return HealthResponse(status="ok", model_version=service.trained.version, example=example)


@guarded.get("/metadata", response_model=MetadataResponse)
async def metadata(service: ServiceDep) -> MetadataResponse:
    trained, codec = service.trained, service.trained.codec
    return MetadataResponse(
        task=trained.metadata["task"],
        model_class=trained.metadata["model_class"],
        artifact=trained.path.name,
        kind=trained.kind,
        model_version=trained.version,
        labels=codec.labels,
        input_schema=codec.request_model.model_json_schema(),
        example_request=codec.example_request,
        max_batch_size=service.settings.max_batch_size,
        playground=codec.playground,
    )


# The body is parsed and validated in one step by pydantic (several times faster than FastAPI's json.loads, then
# validation), and the answer is sent as built; create_app documents the codec's body schema in /docs.
@guarded.post("/predict", response_model=PredictResponse, responses=errors(408, 413, 415, 422, 503))
async def predict(request: Request, service: ServiceDep) -> Response:
    # JSON only: a browser sends text/plain (or a form) to another site without asking it first (no preflight).
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise HTTPException(415, "send the body as JSON, with the header content-type: application/json")
    try:
        raw = await request.body()
    except ClientDisconnect:  # the client left, or BodyLimits has already answered 413 or 408
        return Response(status_code=400)
    return await service.answer(lambda: service.trained.codec.request_model.model_validate_json(raw), len(raw))


uploads = APIRouter()  # added by create_app when the codec reads files


@uploads.post("/predict/file", response_model=PredictResponse, responses=errors(400, 408, 413, 422, 503))
async def predict_files(files: list[UploadFile], service: ServiceDep) -> Response:
    """One or more files (`curl -F files=@a.png -F files=@b.png`): as if sent base64-encoded in JSON."""
    codec = service.trained.codec
    encoded = [base64.b64encode(await upload.read()).decode() for upload in files]
    body_bytes = sum(len(each) for each in encoded)
    return await service.answer(lambda: codec.request_model(**{str(codec.file_field): encoded}), body_bytes)


monitoring = APIRouter()  # added by create_app unless `metrics` is false


# Text, documented for 200 alone: with response_class=PlainTextResponse the document would say its 401 is text too.
PROMETHEUS_TEXT = {"description": "Prometheus's text format", "content": {"text/plain": {"schema": {"type": "string"}}}}


@monitoring.get("/metrics", response_class=Response, responses={200: PROMETHEUS_TEXT})
async def metrics(service: ServiceDep) -> Response:
    """The server's metrics in Prometheus's text format: point a scraper at it (metrics.py lists them)."""
    assert service.metrics is not None  # the route is there only with them
    return service.metrics.response()
