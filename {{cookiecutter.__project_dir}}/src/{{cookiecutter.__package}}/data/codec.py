"""A codec: the preprocessing of one kind of data, from a served request to the model's input tensors.

Training and serving must read data the same way, or a served model answers differently from the
one that was tested. So each kind of data (points, images, texts) has one small object that owns it:

- `request_model`: the body of POST /predict (a pydantic model), and `example_request`, a valid one;
- `encode(items)`: a request's inputs -> the model's input tensors, with the normalisation or the
  tokenizer that training used; a ValueError says what is wrong with an input;
- `labels`: the class names, or None for regression.

What the model's outputs become (answers, files, scores) is the task's to say, not the data's: outputs.py.

A data module builds its codec and uses it in training; the codec is saved in every checkpoint and
in `metadata.json` as `{"class_path": ..., "init_args": ...}`, so `export` and `serve` rebuild it
without the data module, its files or its downloads. A codec is a dataclass of plain values (keyword
arguments only), which is what makes it travel as JSON.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import importlib
import io
from typing import Any, ClassVar

import torch
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict

MAX_IMAGE_PIXELS = 4096 * 4096  # one image file of a request
MAX_REQUEST_PIXELS = 8 * MAX_IMAGE_PIXELS  # all the image files of one request together


class Request(BaseModel):
    """The body of POST /predict: one input or a batch of them. A subclass declares the field(s)."""

    model_config = ConfigDict(extra="forbid")  # a misspelled field is an error, not silently ignored

    def items(self) -> list[Any]:
        """The inputs of this request, one per example, in order."""
        raise NotImplementedError

    @classmethod
    def json_schema(cls, max_inputs: int) -> dict[str, Any]:
        """The body's JSON schema as a server with this limit on inputs per request takes it, its models' schemas
        in `$defs` (referenced as OpenAPI components). A field that takes one input or a list of them (`x: Input |
        list[Input]`) gets `maxItems` on the list; a request whose inputs are counted otherwise overrides this."""
        schema = cls.model_json_schema(ref_template="#/components/schemas/{model}")
        for field in schema["properties"].values():
            forms = field.get("anyOf", [])
            for form in forms:
                if form.get("type") == "array" and form.get("items") in forms:
                    form["maxItems"] = max_inputs
        return schema


@dataclasses.dataclass(kw_only=True)
class Codec:
    request_model: ClassVar[type[Request]]
    example_request: ClassVar[dict[str, Any]]  # a valid body with two inputs: for /health, the docs, export
    file_field: ClassVar[str | None] = None  # the request field that takes files (base64): POST /predict/file fills it
    # The input the server's playground page (GET /) shows: number, pair, digit, image, text or generate; None: none.
    playground: ClassVar[str | None] = None

    labels: list[str] | None = None  # the class names, in the order of the class indices; None for regression

    def encode(self, items: list[Any]) -> tuple[torch.Tensor, ...]:
        """A request's inputs (`request_model(...).items()`) -> the model's input tensors, batch first."""
        raise NotImplementedError

    def concatenate(self, parts: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
        """Several requests' inputs -> one batch (the server's micro-batches): each input concatenated on axis 0."""
        return tuple(torch.cat(tensors) for tensors in zip(*parts, strict=True))

    def decoded_pixels(self, items: list[Any]) -> int:
        """The pixels that encoding these inputs decodes, read from the files' headers (0 when the inputs are not
        image files): what the server counts against its budget before it decodes any (a ValueError as `encode`)."""
        if self.file_field and items and isinstance(items[0], str):
            return sum(image.width * image.height for image in open_images(items))
        return 0

    def sample_inputs(self, count: int) -> tuple[torch.Tensor, ...] | None:
        """`count` valid model inputs made without data, where the codec can make them (a generator's noise), for
        int8 calibration; None: they come from the training data."""
        return None

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        """The model inputs of `example_request`: what export traces and checks, and /health predicts on."""
        return self.encode(self.request_model(**self.example_request).items())

    def to_dict(self) -> dict[str, Any]:
        """What rebuilds this codec: its class and its fields, as JSON-ready values."""
        cls = type(self)
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": dataclasses.asdict(self)}

    @staticmethod
    def from_dict(saved: dict[str, Any]) -> Codec:
        module, name = saved["class_path"].rsplit(".", 1)
        cls = getattr(importlib.import_module(module), name)
        if not (isinstance(cls, type) and issubclass(cls, Codec)):
            raise TypeError(f"{saved['class_path']} is not a Codec")
        return cls(**saved["init_args"])


def open_images(items: list[str]) -> list[Image.Image]:
    """Base64-encoded image files -> images opened but not decoded; a ValueError says which one is wrong and how.

    The sizes are read from the files' headers: an image over MAX_IMAGE_PIXELS, or a request over
    MAX_REQUEST_PIXELS in all, is refused before a single pixel is decoded.
    """
    opened: list[Image.Image] = []
    for number, item in enumerate(items, start=1):
        try:
            image = Image.open(io.BytesIO(base64.b64decode(item, validate=True)))
        except binascii.Error:
            raise ValueError(f"image {number} is not base64-encoded") from None
        except Image.DecompressionBombError:  # PIL's own limit, far above ours
            raise ValueError(f"image {number} is over the limit of {MAX_IMAGE_PIXELS} pixels") from None
        except (UnidentifiedImageError, OSError):
            raise ValueError(f"image {number} is not an image file PIL reads (PNG, JPEG, ...)") from None
        if image.width * image.height > MAX_IMAGE_PIXELS:
            size = f"{image.width}x{image.height}"
            raise ValueError(f"image {number} has {size} pixels, over the limit of {MAX_IMAGE_PIXELS}")
        opened.append(image)
    total = sum(each.width * each.height for each in opened)
    if total > MAX_REQUEST_PIXELS:
        raise ValueError(f"the images hold {total} pixels together, over the limit of {MAX_REQUEST_PIXELS}")
    return opened


def read_images(items: list[str]) -> list[Image.Image]:
    """Base64-encoded image files -> decoded images, once `open_images` has checked their sizes."""
    opened = open_images(items)
    for number, each in enumerate(opened, start=1):
        try:
            each.load()
        except OSError as err:  # truncated, or corrupt inside
            raise ValueError(f"image {number} is damaged: {err}") from None
    return opened
