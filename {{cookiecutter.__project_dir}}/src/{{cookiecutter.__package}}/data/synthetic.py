"""Data made by a formula, with a seed: noisy points on a line, and the four XOR points.

Nothing is downloaded; the same seed gives the same data on every machine and every rank.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import torch
from pydantic import Field
from torch.utils.data import TensorDataset

from .. import ConfigError, require_positive
from .base import SplitDataModule, check_fold, fold_split
from .codec import Codec, Request

# Served inputs are bounded far beyond any the models are trained on (|x| of a few units), and well inside
# where float32 arithmetic stays finite: an answer must be a number that JSON can carry.
MAX_ABS_INPUT = 1e6
Number = Annotated[float, Field(ge=-MAX_ABS_INPUT, le=MAX_ABS_INPUT, allow_inf_nan=False, strict=True)]  # not `true`


class LineRequest(Request):
    x: Number | Annotated[list[Number], Field(min_length=1)] = Field(description="one x, or a list of them")

    def items(self) -> list[float]:
        return self.x if isinstance(self.x, list) else [self.x]


class PairRequest(Request):
    x: (
        Annotated[list[Number], Field(min_length=2, max_length=2)]
        | Annotated[list[Annotated[list[Number], Field(min_length=2, max_length=2)]], Field(min_length=1)]
    ) = Field(description="one point [a, b], or a list of them")

    def items(self) -> list[list[float]]:
        return self.x if isinstance(self.x[0], list) else [self.x]


@dataclasses.dataclass(kw_only=True)
class NumberCodec(Codec):
    """x -> (N, 1) for the line; answers the predicted y."""

    request_model = LineRequest
    playground = "number"
    example_request = {"x": [0.5, -1.0]}

    def encode(self, items: list[float]) -> tuple[torch.Tensor, ...]:
        return (torch.tensor(items, dtype=torch.float32).unsqueeze(1),)  # (N, 1)


@dataclasses.dataclass(kw_only=True)
class PairCodec(Codec):
    """[a, b] -> (N, 2) for XOR; answers the class, its probability and its label."""

    request_model = PairRequest
    playground = "pair"
    example_request = {"x": [[0, 1], [1, 1]]}
    labels: list[str] | None = dataclasses.field(default_factory=lambda: ["0", "1"])

    def encode(self, items: list[list[float]]) -> tuple[torch.Tensor, ...]:
        return (torch.tensor(items, dtype=torch.float32),)  # (N, 2)


class LineDataModule(SplitDataModule):
    """Points (x, y) with y = slope * x + intercept + noise, x uniform in [-x_range, x_range]."""

    def __init__(
        self,
        slope: float = 2.0,
        intercept: float = -1.0,
        noise_std: float = 0.1,
        x_range: float = 2.0,
        num_samples: int = 4000,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        batch_size: int = 64,
        seed: int = 0,
        folds: int | None = None,
        fold: int = 0,
    ) -> None:
        """`folds`: the points outside the test split are cut into that many parts, and part `fold` validates (in
        place of `val_fraction`)."""
        super().__init__(batch_size)
        self.save_hyperparameters()
        require_positive(self, x_range=x_range, num_samples=num_samples)
        check_fold(self, folds, fold)
        self.folds, self.fold = folds, fold
        if noise_std < 0 or not 0 < val_fraction + test_fraction < 1:
            raise ConfigError(
                "LineDataModule: need noise_std >= 0 and 0 < val_fraction + test_fraction < 1, got "
                f"noise_std={noise_std}, val_fraction={val_fraction}, test_fraction={test_fraction}"
            )
        self.slope, self.intercept, self.noise_std, self.x_range = slope, intercept, noise_std, x_range
        self.num_samples, self.val_fraction, self.test_fraction, self.seed = (
            num_samples,
            val_fraction,
            test_fraction,
            seed,
        )
        self.codec = NumberCodec()

    def setup(self, stage: str | None = None) -> None:
        n = self.num_samples
        generator = torch.Generator().manual_seed(self.seed)
        x = (torch.rand(n, 1, generator=generator) * 2 - 1) * self.x_range  # (N, 1)
        y = self.slope * x + self.intercept + self.noise_std * torch.randn(n, 1, generator=generator)
        n_val, n_test = int(n * self.val_fraction), int(n * self.test_fraction)
        n_train = n - n_val - n_test
        self.train_set = TensorDataset(x[:n_train], y[:n_train])
        self.val_set = TensorDataset(x[n_train : n_train + n_val], y[n_train : n_train + n_val])
        self.test_set = TensorDataset(x[n_train + n_val :], y[n_train + n_val :])
        if self.folds is not None:
            train, val = fold_split(n_train + n_val, self.folds, self.fold, self.seed)
            self.train_set, self.val_set = TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val])


class XORDataModule(SplitDataModule):
    """The truth table of XOR. Training repeats the four points so that an epoch holds several steps."""

    num_classes = 2
    input_shape = (2,)

    def __init__(self, repeats: int = 64, batch_size: int = 16) -> None:
        super().__init__(batch_size)
        self.save_hyperparameters()
        require_positive(self, repeats=repeats)
        self.repeats = repeats
        self.codec = PairCodec()

    def setup(self, stage: str | None = None) -> None:
        x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])  # (4, 2)
        y = torch.tensor([0, 1, 1, 0])
        self.train_set = TensorDataset(x.repeat(self.repeats, 1), y.repeat(self.repeats))
        self.val_set = self.test_set = TensorDataset(x, y)
