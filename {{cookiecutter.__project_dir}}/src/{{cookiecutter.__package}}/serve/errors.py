"""What the server refuses, and how it says so: every error is JSON `{"error": ..., "detail": ...}`.

422: malformed JSON, wrong types, shapes or values, more inputs than `max_batch_size`, or an input the
model has no finite answer for; 413: a body over `max_body_bytes`; 415: a body that is not JSON; 408: a
body that stops arriving, or arrives too slowly; 400: a multipart upload that does not parse; 401: a missing
or wrong API key; 404 and 405: no such route or method; 503: images to decode while the server's pixel
budget is taken (budget.py); 500: a bug, logged with its traceback, answered without one. The server keeps
serving after each. /openapi.json lists, for each route, the statuses it can answer
(schemas.ERRORS), and no other.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


async def invalid_request(request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, RequestValidationError)
    detail = [
        {"where": ".".join(str(part) for part in error["loc"]), "problem": error["msg"]} for error in err.errors()
    ]
    return JSONResponse({"error": "the request does not match the schema (see /docs)", "detail": detail}, 422)


async def http_error(request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, HTTPException)
    return JSONResponse({"error": err.detail}, status_code=err.status_code, headers=err.headers)


async def server_error(request: Request, err: Exception) -> JSONResponse:
    log.exception("error while serving %s", request.url.path)
    return JSONResponse({"error": "internal error; the server log has the details"}, status_code=500)


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(HTTPException, http_error)  # FastAPI's own, and the router's 404 and 405
    app.add_exception_handler(Exception, server_error)


class BodyLimits:
    """ASGI middleware: a body over `limit` bytes gets 413 before the app reads it, declared or streamed; a body that
    stops arriving for `timeout` seconds (a Content-Length that promises more than is sent) gets 408, and so does
    one not all arrived `deadline` seconds after its headers (a byte every few seconds is never idle for long)."""

    def __init__(self, app: ASGIApp, limit: int, timeout: float, deadline: float) -> None:
        self.app, self.limit, self.timeout, self.deadline = app, limit, timeout, deadline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await refusal(413, f"request body over the limit of {self.limit} bytes")(scope, receive, send)
        received, refused, arrived = 0, False, False
        deadline = asyncio.get_running_loop().time() + self.deadline

        async def counted() -> Message:
            # A streamed body (no content-length) is counted as it arrives: over the limit, answer 413 now and
            # tell the app the client left, so it stops reading; whatever the app answers then is dropped.
            nonlocal received, refused, arrived
            if arrived:  # the body is all here: the app now only listens for the client leaving
                return await receive()
            left = deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), min(self.timeout, max(left, 0)))
            except TimeoutError:
                refused = True
                if left > self.timeout:
                    error = f"the request body stopped arriving for {self.timeout} s"
                else:
                    error = f"the request body was still arriving {self.deadline} s after its headers; send it at once"
                await refusal(408, error)(scope, receive, send)
                return {"type": "http.disconnect"}
            arrived = not message.get("more_body", False)
            received += len(message.get("body", b""))
            if received > self.limit and not refused:
                refused = True
                await refusal(413, f"request body over the limit of {self.limit} bytes")(scope, receive, send)
                return {"type": "http.disconnect"}
            return message

        async def send_unless_refused(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counted, send_unless_refused)


def refusal(status: int, error: str) -> JSONResponse:
    return JSONResponse({"error": error}, status_code=status, headers={"connection": "close"})
