"""What every data module here shares: a train/val/test split and the DataLoaders over it.

A subclass builds `self.train_set`, `self.val_set` and `self.test_set` in `setup()`; `predict` runs
over the test split, so its predictions can be compared with the targets.

For serving and export, a subclass also says what a request looks like (`request_model`, a pydantic
body, and `example_request`) and turns a request's inputs into the model's inputs (`request_inputs`)
with the same preprocessing as training; `response_rows` says how predictions are answered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from .. import ConfigError, require_positive
from ..serve.schemas import PredictRequest


class SplitDataModule(LightningDataModule):
    train_set: Dataset
    val_set: Dataset
    test_set: Dataset
    request_model: ClassVar[type[PredictRequest]]  # the body of POST /predict
    example_request: ClassVar[dict[str, Any]]  # a valid body with two inputs: for /health, the docs, export
    file_field: ClassVar[str | None] = None  # the request field that takes files (base64): POST /predict/file fills it

    def __init__(self, batch_size: int, num_workers: int = 0) -> None:
        super().__init__()
        require_positive(self, batch_size=batch_size)
        if num_workers < 0:
            raise ConfigError(f"{type(self).__name__}: num_workers must be >= 0, got {num_workers}")
        self.batch_size = batch_size
        self.num_workers = num_workers

    def collate(self) -> Callable | None:
        """How a list of examples becomes a batch; None is the DataLoader's default (stack tensors)."""
        return None

    def _loader(self, dataset: Dataset, shuffle: bool = False) -> DataLoader:
        return DataLoader(
            dataset,
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

    def request_inputs(self, items: list[Any]) -> tuple[torch.Tensor, ...]:
        """A request's inputs (`request_model(...).items()`) -> the model's input tensors, batch first.

        Raises ValueError with a message for the client when an input cannot be read.
        """
        raise NotImplementedError(f"{type(self).__name__} does not say how to read a served request")

    def response_rows(self, outputs: dict[str, torch.Tensor], labels: list[str] | None) -> list[dict[str, Any]]:
        """A batch of predictions (the task's `predict` outputs, batch first) -> one JSON object per input: what
        POST /predict answers. Here each output's value, and a class index's label name; a task that answers
        with something else (a generator's images, as base64 PNG) overrides this."""
        columns = {name: tensor.tolist() for name, tensor in outputs.items()}
        rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
        if labels and "prediction" in columns:
            for row in rows:
                row["label"] = labels[row["prediction"]]
        return rows
