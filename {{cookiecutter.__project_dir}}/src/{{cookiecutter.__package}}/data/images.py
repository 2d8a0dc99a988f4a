"""Images a user actually has: a folder with one sub-folder per class, or a torchvision dataset by name.

    --data.root photos                   # photos/<class>/*.jpg, or photos/{train,val,test}/<class>/*.jpg
    --data.dataset CIFAR10 --data.root data   # a torchvision dataset, downloaded into data/ when online

Any size and any format PIL reads; grayscale images become 3 channels. Without train/val/test
sub-folders, a seeded share of the images becomes the validation and the test split. `classes` keeps
only some classes (in that order), and `per_class` caps the labelled training images of each class:
a few-shot budget. Evaluation, `predict` and serving read an image through the codec (`ImageCodec`):
the shorter side resized to `resize`, the centre cropped to `image_size`, then normalised with `mean`
and `std` (by default ImageNet's, what torchvision's pretrained weights expect). Training adds the usual
augmentation: a random resized crop and, unless `flip` is false, a horizontal flip.

Every image file is decoded once before training starts, so an empty, cut-short or misnamed file is
named then, with all the others, rather than a traceback when a batch first reaches it (seconds for
thousands of photos); `--data.skip_bad_images true` trains without them.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import tempfile
from pathlib import Path
from typing import Annotated, Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image, UnidentifiedImageError
from pydantic import Field
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.transforms import v2

from .. import ConfigError, require_positive
from .base import SplitDataModule
from .codec import Codec, Request, read_images

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SPLITS = ("train", "val", "test")
NAMED = 5  # bad files named in a message; the rest are counted, and listed in a file


def unreadable(path: str) -> str | None:
    """Why the image file at `path` cannot be read, or None. It is decoded in full, as training would: PIL's
    `verify()` passes a JPEG cut short. A JPEG decodes at its smallest draft scale, which is quick."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (1, 1))
            image.load()
    except UnidentifiedImageError:
        return "an empty file" if Path(path).stat().st_size == 0 else "not an image"
    except Exception as err:  # cut short (OSError), or any other way a decoder fails on damaged bytes
        return f"damaged or cut short: {err or type(err).__name__}"
    return None


def named(bad: dict[str, str]) -> str:
    """The first few bad files and why, and where the whole list is when it is longer."""
    shown = ", ".join(f"{path} ({why})" for path, why in list(bad.items())[:NAMED])
    if len(bad) <= NAMED:
        return shown
    with tempfile.NamedTemporaryFile("w", prefix="bad_images_", suffix=".txt", delete=False) as listing:
        listing.writelines(f"{path}\t{why}\n" for path, why in bad.items())
    return f"{shown} and {len(bad) - NAMED} more (all listed in {listing.name})"


class PhotoRequest(Request):
    image: str | Annotated[list[str], Field(min_length=1)] = Field(
        description="a PNG, JPEG or other image file, base64-encoded, or a list of them"
    )

    def items(self) -> list[str]:
        return self.image if isinstance(self.image, list) else [self.image]


def png_base64(size: tuple[int, int], color: tuple[int, int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@dataclasses.dataclass(kw_only=True)
class ImageCodec(Codec):
    """RGB images of any size: resize the shorter side, crop the centre, normalise -> (N, 3, size, size)."""

    request_model = PhotoRequest
    playground = "image"
    file_field = "image"  # `curl -F files=@photo.jpg .../predict/file`
    example_request = {"image": [png_base64((64, 48), (200, 30, 30)), png_base64((30, 40), (20, 60, 220))]}
    image_size: int = 224
    resize: int = 256
    mean: list[float] = dataclasses.field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = dataclasses.field(default_factory=lambda: list(IMAGENET_STD))

    def evaluation(self) -> v2.Compose:
        """An RGB image -> the model's input (3, image_size, image_size): what evaluation and serving read."""
        return v2.Compose([v2.Resize(self.resize), v2.CenterCrop(self.image_size), *self._to_tensor()])

    def training(self, flip: bool, scale: tuple[float, float]) -> v2.Compose:
        """The same with augmentation: a random crop of `scale` of the image's area, and a horizontal flip."""
        flips = [v2.RandomHorizontalFlip()] if flip else []
        return v2.Compose([v2.RandomResizedCrop(self.image_size, scale=scale), *flips, *self._to_tensor()])

    def _to_tensor(self) -> list[Any]:
        return [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(self.mean, self.std)]

    def encode(self, items: list[str]) -> tuple[torch.Tensor, ...]:
        evaluation = self.evaluation()
        return (torch.stack([evaluation(image.convert("RGB")) for image in read_images(items)]),)


class Examples(Dataset):
    """(image, class index) pairs, each read when asked for (a file, or a dataset's image) and transformed."""

    def __init__(self, samples: list[tuple[Any, int]], transform: v2.Compose) -> None:
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        source, label = self.samples[index]
        if isinstance(source, str):  # a file's path
            with Image.open(source) as image:
                return self.transform(image.convert("RGB")), label
        return self.transform(source.convert("RGB")), label


class ImageFolderDataModule(SplitDataModule):
    codec: ImageCodec

    def __init__(
        self,
        root: str = "data/images",
        dataset: str | None = None,
        classes: list[str] | None = None,
        per_class: int | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        image_size: int = 224,
        resize: int = 256,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        flip: bool = True,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        download: bool = True,
        skip_bad_images: bool = False,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 42,
    ) -> None:
        """`root`: the image folder, or where `dataset` (a torchvision dataset's class name: CIFAR10) is kept.

        Args:
            image_size: the side, in pixels, of the square the model sees: evaluation's centre crop and training's
                random one. 224 suits photos and ImageNet weights, but scales 32-pixel images up 7 times (49 times the
                compute): set it near their size, `resize` a little larger: --data.image_size 32 --data.resize 36.
            resize: the shorter side, in pixels, an image is scaled to before evaluation's centre crop of
                `image_size`; a little larger than it (256 for 224).
            skip_bad_images: train without the files that do not read as images (empty, cut short, not an image),
                saying how many; by default they are named, all of them, and the run refused.
        """
        super().__init__(batch_size, num_workers)
        self.save_hyperparameters()
        require_positive(self, image_size=image_size, resize=resize)
        if per_class is not None:
            require_positive(self, per_class=per_class)
        if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
            raise ConfigError(f"val_fraction + test_fraction must be below 1, got {val_fraction} + {test_fraction}")
        if dataset is not None and not hasattr(datasets, dataset):
            raise ConfigError(f"--data.dataset {dataset}: torchvision.datasets has no such dataset (CIFAR10, ...)")
        if classes is not None and len(classes) < 2:
            raise ConfigError(f"--data.classes {classes}: a classifier needs at least 2 classes")
        self.root, self.dataset, self.keep, self.per_class = Path(root), dataset, classes, per_class
        self.val_fraction, self.test_fraction, self.download, self.seed = val_fraction, test_fraction, download, seed
        self.flip, self.crop_scale, self.skip_bad_images = flip, crop_scale, skip_bad_images
        self.codec = ImageCodec(image_size=image_size, resize=resize, mean=list(mean), std=list(std))
        self.input_shape = (3, image_size, image_size)
        self.samples: dict[str, list[tuple[Any, int]]] = {}

    @property
    def num_classes(self) -> int:
        """Linked to the model when it is built, so the images are listed then (a torchvision dataset is downloaded
        then, if it must be)."""
        self.list_images()
        return len(self.codec.labels or [])

    def prepare_data(self) -> None:
        if self.dataset is not None:
            for train in (True, False):
                self._torchvision(train)

    def setup(self, stage: str | None = None) -> None:
        self.list_images()
        evaluation = self.codec.evaluation()
        self.train_set = Examples(self.samples["train"], self.codec.training(self.flip, self.crop_scale))
        self.val_set = Examples(self.samples["val"], evaluation)
        self.test_set = Examples(self.samples["test"], evaluation)

    # ---- listing the images, once ----------------------------------------------------------------

    def list_images(self) -> None:
        """Each split's (image, class index) pairs: the dataset's, the split folders', or a seeded split of one."""
        if self.samples:
            return
        if self.dataset is not None:
            train, test = self._torchvision(train=True), self._torchvision(train=False)
            names, splits = list(train.classes), {"train": list(train), "test": list(test)}
        else:
            names, splits = self._folders()
        names, splits = self._keep_classes(names, splits)
        if self.dataset is None:
            splits = self._readable(splits)
        splits = self._split_off_missing(splits)
        if self.per_class is not None:
            splits["train"] = self._cap(splits["train"], self.per_class)
        if not splits["train"]:
            raise ConfigError(f"no training images left in {self.root} (classes {names})")
        self.codec.labels = names
        self.samples = splits

    def _torchvision(self, train: bool) -> Any:
        try:
            return getattr(datasets, str(self.dataset))(str(self.root), train=train, download=self.download)
        except (RuntimeError, OSError) as err:  # "Dataset not found or corrupted", no network (URLError), no space
            why = " ".join(f"{type(err).__name__}: {err}".split()) if self.download else "--data.download is false"
            raise ConfigError(
                f"--data.dataset {self.dataset}: not in {self.root}, and it could not be downloaded ({why}); copy "
                f"the files torchvision.datasets.{self.dataset} downloads into {self.root}, or train on your own "
                "images: --data.dataset null --data.root <a folder with one sub-folder of images per class>"
            ) from None

    def _folders(self) -> tuple[list[str], dict[str, list[tuple[Any, int]]]]:
        if not self.root.is_dir():
            raise ConfigError(
                f"--data.root {self.root}: no such folder; give a folder with one sub-folder of images per class "
                "(or train/, val/, test/ holding them), or --data.dataset CIFAR10"
            )
        found = [split for split in SPLITS if (self.root / split).is_dir()]
        folders = {split: self.root / split for split in found} if "train" in found else {"train": self.root}
        try:
            listed = {split: datasets.ImageFolder(str(folder)) for split, folder in folders.items()}
        except FileNotFoundError as err:  # no class folder, or one without images
            raise ConfigError(f"--data.root {self.root}: {err} Give it one sub-folder of images per class") from None
        names = listed["train"].classes
        if len(names) == 1:
            raise ConfigError(f"{folders['train']} has one class folder ({names[0]}); a classifier needs at least 2")
        for split, folder in listed.items():
            if folder.classes != names:
                raise ConfigError(f"{self.root / split} has the classes {folder.classes}; train/ has {names}")
        return names, {
            split: [(str(path), label) for path, label in folder.samples] for split, folder in listed.items()
        }

    def _keep_classes(self, names: list[str], splits: dict) -> tuple[list[str], dict]:
        if self.keep is None:
            return names, splits
        unknown = [name for name in self.keep if name not in names]
        if unknown:
            raise ConfigError(f"--data.classes: {unknown} not among the classes {names}")
        new_index = {names.index(name): index for index, name in enumerate(self.keep)}
        kept = {split: [(x, new_index[y]) for x, y in rows if y in new_index] for split, rows in splits.items()}
        return list(self.keep), kept

    def _readable(self, splits: dict) -> dict:
        """The splits without the files that do not read: refused, all of them named, unless `skip_bad_images`."""
        paths = sorted({path for rows in splits.values() for path, _ in rows})
        bad = {path: why for path in paths if (why := unreadable(path))}
        if not bad:
            return splits
        if not self.skip_bad_images:
            raise ConfigError(
                f"--data.root {self.root}: {len(bad)} of {len(paths)} image files do not read: {named(bad)}; "
                "delete or replace them, or pass --data.skip_bad_images true to train without them"
            )
        rank_zero_warn(
            f"--data.root {self.root}: skipped {len(bad)} of {len(paths)} image files that do not read: {named(bad)}"
        )
        return {split: [(path, y) for path, y in rows if path not in bad] for split, rows in splits.items()}

    def _split_off_missing(self, splits: dict) -> dict:
        """Validation and test images taken from the training ones where the data has none: a seeded share."""
        train = splits["train"]
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.seed)).tolist()
        taken = 0
        for split, fraction in (("val", self.val_fraction), ("test", self.test_fraction)):
            if split not in splits:
                count = max(1, round(fraction * len(train)))
                splits[split] = [train[i] for i in order[taken : taken + count]]
                taken += count
        splits["train"] = [train[i] for i in sorted(order[taken:])]
        return splits

    def _cap(self, rows: list[tuple[Any, int]], per_class: int) -> list[tuple[Any, int]]:
        """At most `per_class` training images of each class, picked with the seed."""
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(self.seed + 1)).tolist()
        counts: dict[int, int] = {}
        kept = []
        for i in order:
            label = rows[i][1]
            if counts.get(label, 0) < per_class:
                counts[label] = counts.get(label, 0) + 1
                kept.append(i)
        return [rows[i] for i in sorted(kept)]
