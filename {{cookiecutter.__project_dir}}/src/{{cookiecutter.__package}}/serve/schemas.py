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


class ErrorResponse(BaseModel):
    error: str
    detail: Any = None
