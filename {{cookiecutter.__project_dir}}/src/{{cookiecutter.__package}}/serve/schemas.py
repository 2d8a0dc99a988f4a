"""The bodies of the HTTP API. A data module names its own request body (`request_model`), a subclass of
`PredictRequest` that holds one input or a list of them in the task's natural form; the rest is shared.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class PredictRequest(BaseModel):
    """One input or a batch of them. A subclass declares the field(s) and says how to list the inputs."""

    model_config = ConfigDict(extra="forbid")  # a misspelled field is an error, not silently ignored

    def items(self) -> list[Any]:
        """The inputs of this request, one per example, in order."""
        raise NotImplementedError


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
    artifact: str = Field(description="checkpoint, onnx or int8")
    model_version: str
    labels: list[str] | None
    input_schema: dict[str, Any] = Field(description="JSON schema of the /predict body")
    example_request: dict[str, Any]
    max_batch_size: int


class ErrorResponse(BaseModel):
    error: str
    detail: Any = None
