"""The server's settings: `serve --port 8080`, a `--config` file, or SERVE_* environment variables.

They are parsed by jsonargparse, like every other subcommand: `serve --help` lists them, a misspelled
option exits with code 2, and a command-line option overrides its environment variable, which
overrides the default. pydantic validates the values (a port out of range is refused at start-up).
"""

from __future__ import annotations

from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser
from pydantic import BaseModel, Field

from ..data.codec import MAX_REQUEST_PIXELS


class ServeSettings(BaseModel):
    """Settings of `serve`."""

    model: Path = Field(
        description="a .ckpt from `fit`, or a model.onnx, model_int8.onnx, model_int8.pt or model.pt2 from `export`"
    )
    host: str = Field("127.0.0.1", description="the address to listen on (0.0.0.0: every interface)")
    port: int = Field(8000, ge=1, le=65535, description="the port to listen on")
    max_batch_size: int = Field(64, ge=1, description="examples per forward pass, and per request")
    max_wait_ms: float = Field(2.0, ge=0, description="how long a batch waits for more requests")
    max_body_bytes: int = Field(2_000_000, ge=1, description="larger request bodies get 413")
    body_timeout_s: float = Field(10.0, gt=0, description="a body that stops arriving this long gets 408")
    body_deadline_s: float = Field(30.0, gt=0, description="a body still arriving this long after its headers: 408")
    max_decoding_pixels: int = Field(
        MAX_REQUEST_PIXELS,
        ge=1,
        description="image pixels being decoded at once, all requests together (up to 8 bytes each); a request that "
        "finds them taken waits up to a second, then gets 503 with Retry-After",
    )
    decode_threads: int = Field(4, ge=1, description="worker threads that decode requests (image files, long texts)")
    api_key: str | None = Field(
        None, description="if set, /predict, /metadata and /metrics need it in the X-API-Key header"
    )
    metrics: bool = Field(True, description="serve GET /metrics, in Prometheus's text format (false: no /metrics)")
    metrics_need_key: bool = Field(
        True, description="when api_key is set, /metrics needs it too (false: open to a scraper that has no key)"
    )
    threads: int = Field(1, ge=1, description="CPU threads for the model")
    access_log: bool = Field(True, description="log a line per request (false: errors and startup only)")


def parser(prog: str) -> ArgumentParser:
    parser = ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0], env_prefix="SERVE", default_env=True)
    parser.add_argument("--config", action=ActionConfigFile, help="a YAML file of these settings")
    parser.add_class_arguments(ServeSettings, as_group=False)
    return parser


def parse(argv: list[str], prog: str) -> ServeSettings:
    options = parser(prog).parse_args(argv)
    return ServeSettings(**{name: options[name] for name in ServeSettings.model_fields})
