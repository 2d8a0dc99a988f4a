"""MNIST handwritten digits through torchvision: 60,000 training and 10,000 test images of 28x28 pixels.

`prepare_data` downloads the IDX files into `data_dir/MNIST/raw` (or finds a copy already there);
`setup` decodes them once into tensors in memory and keeps a seeded 5,000-image validation split
apart from training. `preprocess` is the one place that turns raw pixels into model input, used by
training, `predict` and serving alike.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import TensorDataset, random_split
from torchvision.datasets import MNIST

from .. import ConfigError, require_positive
from .base import SplitDataModule

MEAN, STD = 0.1307, 0.3081  # of the MNIST training pixels, scaled to [0, 1]


class MNISTDataModule(SplitDataModule):
    num_classes = 10
    input_shape = (1, 28, 28)
    labels = [str(digit) for digit in range(10)]

    def __init__(
        self,
        data_dir: str = "data",
        download: bool = True,
        batch_size: int = 128,
        val_size: int = 5000,
        num_workers: int = 0,
        seed: int = 42,
    ) -> None:
        super().__init__(batch_size, num_workers)
        self.save_hyperparameters()
        require_positive(self, val_size=val_size)

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        """uint8 pixels (N, 28, 28) in 0..255 -> normalised float (N, 1, 28, 28)."""
        return ((images.float() / 255 - MEAN) / STD).unsqueeze(1)

    def _dataset(self, train: bool, download: bool = False) -> MNIST:
        try:
            return MNIST(self.hparams.data_dir, train=train, download=download)
        except RuntimeError as err:  # torchvision's "Dataset not found" or a failed download
            raw = Path(self.hparams.data_dir, "MNIST", "raw")
            raise ConfigError(
                f"data_dir {self.hparams.data_dir!r} has no MNIST files ({raw} needs the four IDX files) and "
                f"{'the download failed: ' + str(err) if download else 'download is off'}; pass --data.download true "
                f"when online, or copy train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
                f"t10k-labels-idx1-ubyte into {raw}"
            ) from None

    def prepare_data(self) -> None:
        for train in (True, False):
            self._dataset(train, download=self.hparams.download)

    def setup(self, stage: str | None = None) -> None:
        train, test = self._dataset(train=True), self._dataset(train=False)
        if not 0 < self.hparams.val_size < len(train):
            raise ConfigError(f"val_size must be between 1 and {len(train) - 1}, got {self.hparams.val_size}")
        full = TensorDataset(self.preprocess(train.data), train.targets)
        n_val = self.hparams.val_size
        generator = torch.Generator().manual_seed(self.hparams.seed)
        self.train_set, self.val_set = random_split(full, [len(full) - n_val, n_val], generator=generator)
        self.test_set = TensorDataset(self.preprocess(test.data), test.targets)
