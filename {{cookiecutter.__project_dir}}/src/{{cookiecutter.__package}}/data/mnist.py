"""MNIST handwritten digits through torchvision: 60,000 training and 10,000 test images of 28x28 pixels,
or the datasets made in its image: Fashion-MNIST (clothes) and KMNIST (Japanese characters).

    --data.dataset FashionMNIST    # its own label names and pixel statistics come with it

`prepare_data` downloads the IDX files into `data_dir/<dataset>/raw` (or finds a copy already there);
`setup` decodes them once into tensors in memory and keeps a seeded 5,000-image validation split
apart from training. The codec's `preprocess` is the one place that turns raw pixels into model
input, used by training, `predict` and serving alike.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Annotated, Literal, cast

import numpy as np
import torch
from PIL import Image
from pydantic import ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import JsonDict, SkipJsonSchema
from torch.utils.data import Subset, TensorDataset, random_split
from torchvision.datasets import KMNIST, MNIST, FashionMNIST

from .. import ConfigError, require_positive
from .base import SplitDataModule, check_fold, fold_split
from .codec import Codec, Request, read_images

MEAN, STD = 0.1307, 0.3081  # of the MNIST training pixels, scaled to [0, 1]


@dataclasses.dataclass(frozen=True)
class Kind:
    """One of the MNIST-shaped datasets: torchvision's class, its class names, and its training pixels' statistics."""

    dataset: type[MNIST]
    labels: tuple[str, ...]
    mean: float
    std: float


KINDS = {
    "MNIST": Kind(MNIST, tuple(str(digit) for digit in range(10)), MEAN, STD),
    "FashionMNIST": Kind(
        FashionMNIST,
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        0.2860,
        0.3530,
    ),
    "KMNIST": Kind(KMNIST, ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"), 0.1918, 0.3483),
}
SIZE = 28  # pixels per side
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

Pixel = Annotated[float, Field(ge=0, le=255, allow_inf_nan=False, strict=True)]
Pixels = Annotated[
    list[Annotated[list[Pixel], Field(min_length=SIZE, max_length=SIZE)]], Field(min_length=SIZE, max_length=SIZE)
]


def pixels_or_image(schema: JsonDict) -> None:
    """The JSON schema of ImageRequest says what `one_form` checks: one of the two fields, neither with a default."""
    schema["oneOf"] = [{"required": ["pixels"]}, {"required": ["image"]}]
    properties = cast(dict[str, JsonDict], schema["properties"])
    for field in ("pixels", "image"):
        properties[field].pop("default")


class ImageRequest(Request):
    """Either `pixels` or `image`, never both and never null."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=pixels_or_image)

    pixels: Pixels | Annotated[list[Pixels], Field(min_length=1)] | SkipJsonSchema[None] = Field(
        None, description="a 28x28 grayscale image as 28 rows of 0-255 values (white on black), or a list of them"
    )
    image: str | Annotated[list[str], Field(min_length=1)] | SkipJsonSchema[None] = Field(
        None, description="a PNG or JPEG file, base64-encoded (made grayscale and resized to 28x28), or a list of them"
    )

    @field_validator("pixels", "image", mode="before")
    @classmethod
    def not_null(cls, value: object) -> object:
        if value is None:  # only a null sent: a field left out keeps its default without validation
            raise ValueError("null is not an input; leave the field out")
        return value

    @model_validator(mode="after")
    def one_form(self) -> ImageRequest:
        if (self.pixels is None) == (self.image is None):
            raise ValueError("give either pixels or image, not both or neither")
        return self

    def items(self) -> list:
        if self.image is not None:
            return self.image if isinstance(self.image, list) else [self.image]
        assert self.pixels is not None  # one_form
        return self.pixels if isinstance(self.pixels[0][0], list) else [self.pixels]


@dataclasses.dataclass(kw_only=True)
class GrayImageCodec(Codec):
    """28x28 grayscale images (MNIST and its kin): pixel rows or image files -> normalised (N, 1, 28, 28)."""

    request_model = ImageRequest
    playground = "digit"
    file_field = "image"  # `curl -F files=@digit.png .../predict/file`
    # Two made-up digits: a vertical bar (a 1) and a ring (a 0).
    example_request = {
        "pixels": [
            [[255 if 12 <= col <= 15 and 4 <= row <= 23 else 0 for col in range(SIZE)] for row in range(SIZE)],
            [
                [255 if 49 <= (row - 14) ** 2 + (col - 14) ** 2 <= 100 else 0 for col in range(SIZE)]
                for row in range(SIZE)
            ],
        ]
    }
    mean: float = MEAN
    std: float = STD

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 pixels (N, 28, 28) in 0..255 -> normalised float (N, 1, 28, 28)."""
        return ((images.float() / 255 - self.mean) / self.std).unsqueeze(1)

    def encode(self, items: list) -> tuple[torch.Tensor, ...]:
        """Pixel rows, or image files made grayscale and resized to 28x28 (MNIST digits are white on black)."""
        if items and isinstance(items[0], str):
            small = [image.convert("L").resize((SIZE, SIZE), Image.Resampling.BILINEAR) for image in read_images(items)]
            pixels = torch.stack([torch.from_numpy(np.array(image)) for image in small])
        else:
            pixels = torch.tensor(items)
        return (self.preprocess(pixels),)  # (N, 1, 28, 28), as in training


def shifted(images: torch.Tensor, most: int, background: float) -> torch.Tensor:
    """(N, C, H, W) images, each moved by its own whole number of pixels in -most..most across and down; what
    moves in from the edge is `background`."""
    n, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (most, most, most, most), value=background)
    down, across = torch.randint(0, 2 * most + 1, (2, n, 1), device=images.device)
    rows = (torch.arange(height, device=images.device) + down)[:, :, None]  # (N, H, 1)
    cols = (torch.arange(width, device=images.device) + across)[:, None, :]  # (N, 1, W)
    picked = padded.permute(0, 2, 3, 1)[torch.arange(n, device=images.device)[:, None, None], rows, cols]
    return picked.permute(0, 3, 1, 2)  # (N, H, W, C) back to (N, C, H, W)


class MNISTDataModule(SplitDataModule):
    codec: GrayImageCodec
    num_classes = 10
    input_shape = (1, SIZE, SIZE)

    def __init__(
        self,
        data_dir: str = "data",
        dataset: Literal["MNIST", "FashionMNIST", "KMNIST"] = "MNIST",
        download: bool = True,
        batch_size: int = 128,
        val_size: int = 5000,
        normalize: bool = True,
        num_workers: int = 0,
        seed: int = 42,
        folds: int | None = None,
        fold: int = 0,
        shift: int = 0,
    ) -> None:
        """`normalize`: pixels to mean 0 and std 1 with the training set's statistics, as classifiers like them;
        false keeps them in [0, 1], as a generator draws them. `folds`: the training images are cut into that many
        parts, and part `fold` validates (in place of `val_size`). `shift`: each training image moved by up to that
        many pixels across and down, drawn afresh every time it is seen (data augmentation: where a digit sits
        does not change which digit it is); validation, test and serving see the images as they are."""
        super().__init__(batch_size, num_workers)
        self.save_hyperparameters()
        require_positive(self, val_size=val_size)
        if not 0 <= shift < SIZE // 2:
            raise ConfigError(f"shift must be between 0 and {SIZE // 2 - 1} pixels, got {shift}")
        self.shift = shift
        check_fold(self, folds, fold)
        self.folds, self.fold = folds, fold
        self.data_dir, self.download, self.val_size, self.seed = data_dir, download, val_size, seed
        self.kind, self.dataset = KINDS[dataset], dataset
        mean, std = (self.kind.mean, self.kind.std) if normalize else (0.0, 1.0)
        self.codec = GrayImageCodec(labels=list(self.kind.labels), mean=mean, std=std)
        self._decoded = False

    def _dataset(self, train: bool, download: bool = False) -> MNIST:
        raw = Path(self.data_dir, self.dataset, "raw")
        made = [folder for folder in (raw.parent.parent, raw.parent, raw) if not folder.exists()]
        try:
            return self.kind.dataset(self.data_dir, train=train, download=download)
        except (RuntimeError, ValueError) as err:  # torchvision's "Dataset not found", a failed download, bad bytes
            if made:  # the folders a failed download made, and what it left in them
                shutil.rmtree(made[0], ignore_errors=True)
            elif all((raw / name).is_file() for name in FILES):
                raise ConfigError(
                    f"the {self.dataset} files in {raw} are there but do not read ({err}): one is damaged or cut "
                    "short. Delete them and pass --data.download true, or copy intact ones there"
                ) from None
            raise ConfigError(
                f"data_dir {self.data_dir!r} has no {self.dataset} files ({raw} needs the four IDX files) and "
                f"{'the download failed: ' + ' '.join(str(err).split()) if download else 'download is off'}; pass "
                "--data.download true when online, or copy train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                f"t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte into {raw}"
            ) from None

    def on_after_batch_transfer(self, batch: tuple[torch.Tensor, ...], dataloader_idx: int) -> tuple[torch.Tensor, ...]:
        if self.shift and self.trainer is not None and self.trainer.training:
            images, *rest = batch
            return (shifted(images, self.shift, background=self.codec.preprocess(torch.zeros(1, 1, 1)).item()), *rest)
        return batch

    def prepare_data(self) -> None:
        for train in (True, False):
            self._dataset(train, download=self.download)

    def setup(self, stage: str | None = None) -> None:
        if self._decoded:  # fit, validate, test and export's calibration share the splits of one process
            return
        train, test = self._dataset(train=True), self._dataset(train=False)
        if not 0 < self.val_size < len(train):
            raise ConfigError(f"val_size must be between 1 and {len(train) - 1}, got {self.val_size}")
        full = TensorDataset(self.codec.preprocess(train.data), train.targets)
        if self.folds is None:
            generator = torch.Generator().manual_seed(self.seed)
            n_val = self.val_size
            self.train_set, self.val_set = random_split(full, [len(full) - n_val, n_val], generator=generator)
        else:
            train_indices, val_indices = fold_split(len(full), self.folds, self.fold, self.seed)
            self.train_set, self.val_set = Subset(full, train_indices), Subset(full, val_indices)
        self.test_set = TensorDataset(self.codec.preprocess(test.data), test.targets)
        self._decoded = True
