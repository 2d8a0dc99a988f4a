"""The FastAPI app: `create_app(settings)` serves one model, loaded once.

    python -m {{ cookiecutter.__package }} serve --model runs/<task>/version_0/checkpoints/best.ckpt
    python -m {{ cookiecutter.__package }} serve --model runs/<task>/version_0/export/model.onnx --port 8080
    SERVE_API_KEY=secret python -m {{ cookiecutter.__package }} serve --model .../export/model_int8.onnx

Settings (settings.py) come from the command line, else from SERVE_* environment variables, else their
defaults. The routes are in routes.py, the errors and limits in errors.py, the batching in batching.py, the
metrics in metrics.py; `create_app` only assembles them around the model.
"""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI

from ..artifacts import Trained, load
from ..data.codec import Codec
from .batching import MicroBatcher
from .errors import BodyLimits, add_error_handlers
from .metrics import Measured, Metrics
from .routes import Service, check_api_key, guarded, monitoring, public, uploads
from .schemas import errors
from .settings import ServeSettings, parse


def create_app(settings: ServeSettings, trained: Trained | None = None) -> FastAPI:
    """The app for one model: `trained`, or the file `settings.model` loaded now."""
    load_seconds = None
    if trained is None:
        started = time.perf_counter()
        trained = load(settings.model, settings.threads)
        load_seconds = time.perf_counter() - started
    metrics = Metrics(settings.max_batch_size, load_seconds) if settings.metrics else None
    on_batch = metrics.batch_size.observe if metrics else None
    concatenate = trained.codec.concatenate
    batcher = MicroBatcher(trained.predict, settings.max_batch_size, settings.max_wait_ms, concatenate, on_batch)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        # What is loaded by now (torch, the model, the libraries: half a million objects) lives as long as the
        # server. Frozen, the garbage collector stops scanning it: a full collection then takes a few ms, not the
        # 100-300 ms during which every request waited, which made the server's p99 latency (benchmarks/deploy.py).
        gc.freeze()
        yield
        gc.unfreeze()
        await batcher.stop()

    task, codec = trained.metadata["task"], trained.codec
    app = FastAPI(
        title=f"{task} ({trained.path.name})",
        version=trained.version,
        description=f"Serves `{task}` from {trained.path.name}. POST /predict takes {codec.request_model.__name__}.",
        lifespan=lifespan,
    )
    app.state.service = Service(trained, settings, batcher, metrics)
    app.add_middleware(
        BodyLimits, limit=settings.max_body_bytes, timeout=settings.body_timeout_s, deadline=settings.body_deadline_s
    )
    add_error_handlers(app)
    # The API key, when there is one, guards every route but / and /health (and /metrics if `metrics_need_key` is
    # false), and only then is it in the document.
    guard, refusal = ([Depends(check_api_key)], errors(401)) if settings.api_key else ([], {})
    app.include_router(public)
    app.include_router(guarded, dependencies=guard, responses=refusal)
    if codec.file_field:
        app.include_router(uploads, dependencies=guard, responses=refusal)
    if metrics:
        metrics.queue_depth.set_function(lambda: batcher.depth)  # read when scraped: nothing on the hot path
        if settings.metrics_need_key:
            app.include_router(monitoring, dependencies=guard, responses=refusal)
        else:
            app.include_router(monitoring)
        # Outside BodyLimits, so the requests it refuses are counted too.
        routers = [app.router, public, guarded, monitoring, *([uploads] if codec.file_field else [])]
        app.add_middleware(Measured, metrics=metrics, routes=paths(*routers))
    document_request_body(app, codec, settings.max_batch_size)
    return app


def paths(*routers: APIRouter) -> set[str]:
    """The paths the routers answer: the metrics' route labels (app.routes holds FastAPI's included routers, which
    have none)."""
    return {path for router in routers for route in router.routes if (path := getattr(route, "path", None))}


def document_request_body(app: FastAPI, codec: Codec, max_inputs: int) -> None:
    """/openapi.json (and /docs) describe the body POST /predict reads itself: the codec's request schema, with the
    server's limit on inputs per request, and its example."""
    document_routes = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = document_routes()  # FastAPI's, kept in app.openapi_schema: edited in place
            schema = codec.request_model.json_schema(max_inputs)
            name = codec.request_model.__name__
            document.setdefault("components", {}).setdefault("schemas", {}).update(schema.pop("$defs", {}))
            document["components"]["schemas"][name] = schema
            content = {"schema": {"$ref": f"#/components/schemas/{name}"}, "example": codec.example_request}
            body = {"required": True, "content": {"application/json": content}}
            document["paths"]["/predict"]["post"]["requestBody"] = body
            return document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's way to extend the document


def main(argv: list[str]) -> None:
    """`serve`: options override SERVE_* environment variables, which override the defaults."""
    settings = parse(argv, prog="{{ cookiecutter.__package }} serve")
    import uvicorn  # imported here: only a running server needs it

    app = create_app(settings)
    version = app.state.service.trained.version
    print(f"serving {version} on http://{settings.host}:{settings.port} (docs: /docs)", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", access_log=settings.access_log)
