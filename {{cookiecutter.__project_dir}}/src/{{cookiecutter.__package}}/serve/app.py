"""The FastAPI app: `create_app(settings)` serves one model, loaded once.

    python -m {{ cookiecutter.__package }} serve --model runs/<task>/version_0/checkpoints/best.ckpt
    python -m {{ cookiecutter.__package }} serve --model runs/<task>/version_0/export/model.onnx --port 8080
    SERVE_API_KEY=secret python -m {{ cookiecutter.__package }} serve --model .../export/model_int8.onnx

Settings (settings.py) come from the command line, else from SERVE_* environment variables, else their
defaults. The routes are in routes.py, the errors and limits in errors.py, the batching in batching.py;
`create_app` only assembles them around the model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute

from ..artifacts import Trained, load
from .batching import MicroBatcher
from .errors import BodyLimits, add_error_handlers
from .routes import Service, check_api_key, guarded, public, uploads
from .schemas import ErrorResponse
from .settings import ServeSettings, parse


def create_app(settings: ServeSettings, trained: Trained | None = None) -> FastAPI:
    """The app for one model: `trained`, or the file `settings.model` loaded now."""
    trained = trained or load(settings.model, settings.threads)
    batcher = MicroBatcher(trained.predict, settings.max_batch_size, settings.max_wait_ms, trained.codec.concatenate)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()

    task, codec = trained.metadata["task"], trained.codec
    app = FastAPI(
        title=f"{task} ({trained.path.name})",
        version=trained.version,
        description=f"Serves `{task}` from {trained.path.name}. POST /predict takes {codec.request_model.__name__}.",
        lifespan=lifespan,
        responses={422: {"model": ErrorResponse}, 413: {"model": ErrorResponse}},
    )
    app.state.service = Service(trained, settings, batcher)
    app.add_middleware(BodyLimits, limit=settings.max_body_bytes, timeout=settings.body_timeout_s)
    add_error_handlers(app)
    key = [Depends(check_api_key)] if settings.api_key else []
    app.include_router(public)
    app.include_router(guarded, dependencies=key)
    if codec.file_field:
        app.include_router(uploads, dependencies=key)
    document_request_body(app, codec.request_model.model_json_schema(), codec.example_request)
    return app


def document_request_body(app: FastAPI, schema: dict[str, Any], example: dict[str, Any]) -> None:
    """/docs shows the codec's request schema for POST /predict, which reads its body itself."""
    body = {"content": {"application/json": {"schema": schema, "example": example}}, "required": True}
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path == "/predict":
            route.openapi_extra = {"requestBody": body}


def main(argv: list[str]) -> None:
    """`serve`: options override SERVE_* environment variables, which override the defaults."""
    settings = parse(argv, prog="{{ cookiecutter.__package }} serve")
    import uvicorn  # imported here: only a running server needs it

    app = create_app(settings)
    version = app.state.service.trained.version
    print(f"serving {version} on http://{settings.host}:{settings.port} (docs: /docs)", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", access_log=settings.access_log)
