"""Random noise in, images out: the codec of a generator, which reads no data to make its pictures.

A request names a seed and a count, `{"seed": 7, "count": 3}`; the inputs are `count` noise vectors
drawn from that seed, one per image (the generator's images are answered as PNG files: outputs.ImageOutputs).
Image `i` of a seed is the same whatever the count, so `{"seed": 7, "count": 1}` answers the first image of
`{"seed": 7, "count": 3}`; `predict` writes the same images for the same seed, byte for byte.

A class-conditional generator (the GAN's `--model.conditional true`) also reads the class each image is to be:
`{"seed": 7, "count": 4, "digit": 3}` draws four 3s (a class index: for Fashion-MNIST, 3 is a dress); without
`digit`, image `i` is of class `i mod num_classes`, every class in turn. Its inputs are the noise and the classes.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, ClassVar

import torch
from pydantic import BeforeValidator, Field

from .codec import Codec, Request

MAX_SEED = 2**31 - 1
MAX_COUNT = 64  # images per request; the server's max_batch_size may allow fewer
MAX_INDEX = 2**20  # images per seed (predict may draw more than a request)


def whole(value: object) -> object:
    """JSON Schema's integer: 7 and 7.0 are both 7; `true`, "7" and 7.5 stay what they are, and the strict int refuses
    them."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class NoiseRequest(Request):
    seed: Annotated[int, Field(ge=0, le=MAX_SEED, strict=True), BeforeValidator(whole)] = Field(
        description="which images: the same seed gives the same images"
    )
    count: Annotated[int, Field(ge=1, le=MAX_COUNT, strict=True), BeforeValidator(whole)] = Field(
        1, description="how many images"
    )

    def items(self) -> list[tuple[int, int, int | None]]:
        return [(self.seed, i, None) for i in range(self.count)]

    @classmethod
    def json_schema(cls, max_inputs: int) -> dict[str, Any]:
        schema = super().json_schema(max_inputs)
        schema["properties"]["count"]["maximum"] = min(MAX_COUNT, max_inputs)  # the inputs are counted by `count`
        return schema


class ConditionalNoiseRequest(NoiseRequest):
    digit: Annotated[int, Field(ge=0, strict=True), BeforeValidator(whole)] | None = Field(
        None, description="the class of every image (a digit of MNIST); none: every class in turn"
    )

    def items(self) -> list[tuple[int, int, int | None]]:
        return [(self.seed, i, self.digit) for i in range(self.count)]


def noise(seed: int, index: int, latent_dim: int) -> torch.Tensor:
    """The noise vector of image `index` of `seed`: its own generator, so it never depends on the count."""
    generator = torch.Generator().manual_seed(seed * MAX_INDEX + index)
    return torch.randn(latent_dim, generator=generator)


@dataclasses.dataclass(kw_only=True)
class NoiseCodec(Codec):
    """(seed, index, class) -> (N, latent_dim) noise; the class is not read."""

    request_model: ClassVar[type[Request]] = NoiseRequest
    playground = "generate"
    example_request = {"seed": 0, "count": 2}
    latent_dim: int

    def encode(self, items: list[tuple[int, int, int | None]]) -> tuple[torch.Tensor, ...]:
        return (torch.stack([noise(seed, index, self.latent_dim) for seed, index, _ in items]),)

    def sample_inputs(self, count: int) -> tuple[torch.Tensor, ...]:
        return self.encode([(0, index, None) for index in range(count)])  # the images of seed 0, every class in turn


@dataclasses.dataclass(kw_only=True)
class ConditionalNoiseCodec(NoiseCodec):
    """(seed, index, class) -> (N, latent_dim) noise and (N,) class indices: a class-conditional generator's inputs.
    No class given: image `index` is of class `index mod num_classes`."""

    request_model = ConditionalNoiseRequest
    example_request = {"seed": 0, "count": 2, "digit": 1}
    num_classes: int

    def encode(self, items: list[tuple[int, int, int | None]]) -> tuple[torch.Tensor, ...]:
        classes = [index % self.num_classes if digit is None else digit for _, index, digit in items]
        if max(classes, default=0) >= self.num_classes:
            raise ValueError(f"digit {max(classes)}: this generator draws classes 0 to {self.num_classes - 1}")
        return (*super().encode(items), torch.tensor(classes, dtype=torch.long))
