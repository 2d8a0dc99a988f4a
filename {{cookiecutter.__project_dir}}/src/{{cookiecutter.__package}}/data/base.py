"""What every data module here shares: a train/val/test split, the DataLoaders over it, and a codec.

A subclass builds `self.train_set`, `self.val_set` and `self.test_set` in `setup()`; `predict` runs
over the test split, so its predictions can be compared with the targets. Its `codec` (codec.py) is
the preprocessing that training uses and serving repeats; it is saved in every checkpoint through
`state_dict`, and restored from it by `load_state_dict`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, cast

import torch
from lightning.pytorch import LightningDataModule, Trainer
from torch.utils.data import DataLoader, Dataset

from .. import ConfigError, require_positive
from .codec import Codec


def data_module_of(trainer: Trainer) -> SplitDataModule | None:
    """The run's data module (Lightning sets `trainer.datamodule` when a run starts, but does not declare it)."""
    datamodule = trainer.datamodule  # type: ignore[attr-defined]
    return datamodule if isinstance(datamodule, SplitDataModule) else None


def check_fold(owner: object, folds: int | None, fold: int) -> None:
    """Refuse a fold that does not exist: `folds` None (no folds), or 2 or more with 0 <= fold < folds."""
    if folds is not None and (folds < 2 or not 0 <= fold < folds):
        raise ConfigError(
            f"{type(owner).__name__}: need folds >= 2 and 0 <= fold < folds, got folds={folds}, fold={fold}"
        )


def fold_split(n: int, folds: int, fold: int, seed: int) -> tuple[list[int], list[int]]:
    """(training, validation) indices of fold `fold` of `folds` over n examples (k-fold cross-validation): a seeded
    shuffle cut into `folds` parts, the fold-th for validation, so that across the folds each example is validated
    once. `repeat --folds` sets `folds` and `fold` on the data modules whose validation split is cut from training."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    val = order[fold::folds]
    held = set(val)
    return [i for i in order if i not in held], val


class Examples(Protocol):
    """A map-style dataset: a torch Dataset with a length, or a plain list of examples."""

    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> Any: ...


class SplitDataModule(LightningDataModule):
    train_set: Examples
    val_set: Examples
    test_set: Examples
    codec: Codec

    def __init__(self, batch_size: int, num_workers: int = 0) -> None:
        super().__init__()
        require_positive(self, batch_size=batch_size)
        if num_workers < 0:
            raise ConfigError(f"{type(self).__name__}: num_workers must be >= 0, got {num_workers}")
        self.batch_size = batch_size
        self.num_workers = num_workers

    @property
    def labels(self) -> list[str] | None:
        return self.codec.labels

    def collate(self) -> Callable | None:
        """How a list of examples becomes a batch; None is the DataLoader's default (stack tensors)."""
        return None

    def _loader(self, dataset: Examples, shuffle: bool = False) -> DataLoader:
        return DataLoader(
            cast(Dataset, dataset),  # a list works as well: DataLoader indexes it
            batch_size=self.batch_size,
            shuffle=shuffle,
            collate_fn=self.collate(),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_set)

    def shown_inputs(self) -> list[str] | None:
        """Raw inputs that `predict` prints beside its predictions (the texts given with --text); None: none."""
        return None

    # ---- the codec travels in the checkpoint ---------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        # A text module has no codec until its tokenizer is trained (setup) or restored (load_state_dict).
        return {"codec": self.codec.to_dict()} if hasattr(self, "codec") else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "codec" in state_dict:
            self.codec = Codec.from_dict(state_dict["codec"])
