"""The response bodies of the HTTP API. Request bodies belong to the data: each codec names its own
(`request_model`, a subclass of `data.codec.Request`), since it is the codec that reads them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class PredictResponse(BaseModel):
    predictions: list[dict[str, Any]] = Field(description="one entry per input, in the order sent")
    model_version: str


class HealthResponse(BaseModel):
    status: str
    model_version: str
    example: dict[str, Any] = Field(description="the request /health just answered, and its prediction")


class MetadataResponse(BaseModel):
    task: str
    model_class: str
    artifact: str = Field(description="the file served: best.ckpt, model.onnx, model_int8.onnx, model_int8.pt, ...")
    kind: str = Field(description="checkpoint, onnx, int8_onnx (ONNX Runtime int8), int8 (torchao) or pt2")
    model_version: str
    labels: list[str] | None
    input_schema: dict[str, Any] = Field(description="JSON schema of the /predict body")
    example_request: dict[str, Any]
    max_batch_size: int
    playground: str | None = Field(description="the input the page at / shows: number, pair, digit, image, text, ...")


class ErrorResponse(BaseModel):
    error: str
    detail: Any = None


# What each error status means; a route documents the ones it can send (`errors(...)`), each with this body.
ERRORS = {
    400: "a multipart upload that does not parse",
    401: "missing or wrong API key in the X-API-Key header",
    408: "the request body stopped arriving for `body_timeout_s`, or was still arriving `body_deadline_s` after its "
    "headers",
    413: "the request body is over `max_body_bytes`",
    415: "the request body is not JSON (content-type: application/json)",
    422: "the request does not match the schema (more inputs than `max_batch_size` included), or an input is wrong "
    "in a way no schema says: an image file that is not an image, too large or damaged; an input the model has no "
    "finite answer for",
    503: "/health: the model failed on its own example request; /predict: the server is decoding as many image "
    "pixels as `max_decoding_pixels` allows (try again after the Retry-After header's seconds)",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route (or router) that can send these error statuses."""
    return {status: {"model": ErrorResponse, "description": ERRORS[status]} for status in statuses}
